//! Shape ops that copy through a per-dim index map (see `kernels::remap`): `flip`, `roll`,
//! `repeat`, `tile`, `repeat_interleave` and `pad` in reflect, replicate and circular modes.
//! Their gradient scatters back through the same maps, and its gradient is the gather again.

use std::sync::Arc;

use tensorbrain_kernels::remap::{gather_axes, scatter_add_axes};

use super::{any_dispatch, float_dispatch, panicking};
use crate::autograd::record;
use crate::tensor::layout::{contiguous_strides, normalize_dim};
use crate::tensor::{Error, Result, StorageElement, Tensor};

/// How `F.pad` fills the border.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// A constant value (`mode="constant"`).
    Constant(f64),
    /// Mirror without repeating the edge: `[1 2 3]` padded by 2 is `3 2 [1 2 3] 2 1`.
    Reflect,
    /// Repeat the edge: `1 1 [1 2 3] 3 3`.
    Replicate,
    /// Wrap around: `2 3 [1 2 3] 1 2`.
    Circular,
}

impl Tensor {
    /// `out[i..] = self[maps[0][i_0], ..]`, with the gradient scattered back.
    pub(crate) fn try_remap(&self, op: &'static str, maps: Vec<Vec<usize>>) -> Result<Tensor> {
        debug_assert_eq!(maps.len(), self.rank());
        let maps = Arc::new(maps);
        let out_shape: Vec<usize> = maps.iter().map(Vec::len).collect();
        let l = self.layout();
        let out = any_dispatch!(self.dtype(), T => {
            let mut out = vec![T::default(); out_shape.iter().product()];
            let s = self.storage();
            gather_axes(s.cpu()?.as_slice::<T>(), l.offset, &l.strides, &maps, &mut out);
            Tensor::from_storage(T::wrap(out), &out_shape)
        });
        let in_shape = self.shape().to_vec();
        Ok(record(op, out, &[self], move |g, _| Ok(vec![Some(g.remap_adjoint(op, &maps, &in_shape)?)])))
    }

    /// The scatter-add adjoint of [`Tensor::try_remap`] into a tensor of `in_shape`.
    fn remap_adjoint(&self, op: &'static str, maps: &Arc<Vec<Vec<usize>>>, in_shape: &[usize]) -> Result<Tensor> {
        let strides = contiguous_strides(in_shape);
        let out = float_dispatch!(op, self.dtype(), T => {
            let mut dst = vec![T::default(); in_shape.iter().product()];
            self.with_contiguous::<T, _>(|g| scatter_add_axes(g, maps, &mut dst, &strides))?;
            Tensor::from_storage(T::wrap(dst), in_shape)
        });
        let maps = maps.clone();
        Ok(record(op, out, &[self], move |g, _| Ok(vec![Some(g.try_remap(op, maps.as_ref().clone())?)])))
    }

    fn identity_maps(&self) -> Vec<Vec<usize>> {
        self.shape().iter().map(|&n| (0..n).collect()).collect()
    }

    fn dims_of(&self, op: &'static str, dims: &[isize]) -> Result<Vec<usize>> {
        let ds: Vec<usize> = dims.iter().map(|&d| normalize_dim(op, d, self.rank())).collect::<Result<_>>()?;
        for (i, d) in ds.iter().enumerate() {
            if ds[..i].contains(d) {
                return Err(Error::invalid(op, self.shape(), format!("dim {d} appears more than once in {dims:?}")));
            }
        }
        Ok(ds)
    }

    /// Reverses the order of elements along `dims` (`torch.flip`).
    pub fn try_flip(&self, dims: &[isize]) -> Result<Tensor> {
        let ds = self.dims_of("flip", dims)?;
        if self.rank() == 0 {
            return Ok(self.clone());
        }
        let mut maps = self.identity_maps();
        for d in ds {
            maps[d].reverse();
        }
        self.try_remap("flip", maps)
    }

    /// Rolls elements along `dims` by `shifts` (pairwise), wrapping around; with no dims the
    /// flattened tensor is rolled by `shifts[0]` and reshaped back (`torch.roll`).
    pub fn try_roll(&self, shifts: &[isize], dims: &[isize]) -> Result<Tensor> {
        const OP: &str = "roll";
        if dims.is_empty() {
            if shifts.len() != 1 {
                return Err(Error::invalid(OP, self.shape(), format!("without dims, roll takes one shift, got {shifts:?}")));
            }
            let shape: Vec<isize> = self.shape().iter().map(|&d| d as isize).collect();
            return self.try_reshape(&[-1])?.try_roll(shifts, &[0])?.try_reshape(&shape);
        }
        if shifts.len() != dims.len() {
            return Err(Error::invalid(OP, self.shape(), format!("shifts {shifts:?} and dims {dims:?} must have the same length")));
        }
        let mut maps = self.identity_maps();
        for (&shift, &dim) in shifts.iter().zip(dims) {
            let d = normalize_dim(OP, dim, self.rank())?;
            let n = self.shape()[d] as isize;
            if n > 0 {
                // Compose, so a dim named twice rolls twice (as in PyTorch).
                let previous = &maps[d];
                let rolled: Vec<usize> = (0..n).map(|i| previous[(i - shift).rem_euclid(n) as usize]).collect();
                maps[d] = rolled;
            }
        }
        self.try_remap(OP, maps)
    }

    /// Tiles the tensor `repeats[i]` times along each dim (`torch.Tensor.repeat`); `repeats`
    /// may be longer than the rank, adding leading dims.
    pub fn try_repeat(&self, repeats: &[usize]) -> Result<Tensor> {
        const OP: &str = "repeat";
        if repeats.len() < self.rank() {
            return Err(Error::invalid(OP, self.shape(), format!("repeats {repeats:?} must have at least as many entries as the tensor has dims ({})", self.rank())));
        }
        let mut shape: Vec<isize> = vec![1; repeats.len() - self.rank()];
        shape.extend(self.shape().iter().map(|&d| d as isize));
        let x = self.try_reshape(&shape)?;
        let maps = x.shape().iter().zip(repeats).map(|(&n, &r)| (0..n * r).map(|i| i % n.max(1)).collect()).collect();
        x.try_remap(OP, maps)
    }

    /// `torch.tile`: like [`Tensor::try_repeat`], but a shorter `reps` is padded with leading 1s.
    pub fn try_tile(&self, reps: &[usize]) -> Result<Tensor> {
        let mut full = vec![1; self.rank().saturating_sub(reps.len())];
        full.extend_from_slice(reps);
        self.try_repeat(&full)
    }

    /// Repeats each element `repeats` times along `dim` (every element of the flattened tensor
    /// for `None`), like `torch.repeat_interleave`.
    pub fn try_repeat_interleave(&self, repeats: usize, dim: Option<isize>) -> Result<Tensor> {
        let Some(dim) = dim else {
            return self.try_reshape(&[-1])?.try_repeat_interleave(repeats, Some(0));
        };
        let d = normalize_dim("repeat_interleave", dim, self.rank())?;
        if self.rank() == 0 {
            return self.try_reshape(&[1])?.try_repeat_interleave(repeats, Some(0));
        }
        let counts = vec![repeats; self.shape()[d]];
        self.repeat_counts(d, &counts)
    }

    /// Repeats element `i` along `dim` `counts[i]` times (an i64 tensor with one count per
    /// element), like `torch.repeat_interleave(x, counts, dim)`.
    pub fn try_repeat_interleave_counts(&self, counts: &Tensor, dim: isize) -> Result<Tensor> {
        const OP: &str = "repeat_interleave";
        let d = normalize_dim(OP, dim, self.rank())?;
        let n = self.shape().get(d).copied().unwrap_or(1);
        if counts.dtype() != crate::tensor::DType::I64 || counts.rank() > 1 || counts.numel() != n {
            return Err(Error::invalid(OP, self.shape(), format!("counts must be an i64 tensor with one entry per element of dim {d} ({n}), got {} {:?}", counts.dtype(), counts.shape())));
        }
        let c = counts.to_vec::<i64>();
        if let Some(bad) = c.iter().find(|&&v| v < 0) {
            return Err(Error::invalid(OP, self.shape(), format!("counts must be non-negative, got {bad}")));
        }
        let c: Vec<usize> = c.into_iter().map(|v| v as usize).collect();
        self.repeat_counts(d, &c)
    }

    fn repeat_counts(&self, d: usize, counts: &[usize]) -> Result<Tensor> {
        let mut maps = self.identity_maps();
        maps[d] = counts.iter().enumerate().flat_map(|(i, &c)| std::iter::repeat(i).take(c)).collect();
        self.try_remap("repeat_interleave", maps)
    }

    /// `F.pad(x, pad, mode)`: `pad` holds (before, after) pairs from the last dim backwards.
    /// Constant padding works on any tensor; reflect, replicate and circular pad the last 1 to
    /// 3 dims of a tensor with one or two more leading (batch, channel) dims, as in PyTorch.
    pub fn try_pad_mode(&self, pad: &[usize], mode: PadMode) -> Result<Tensor> {
        match mode {
            PadMode::Constant(value) => self.try_pad(pad, value),
            _ => self.pad_remapped(pad, mode),
        }
    }

    fn pad_remapped(&self, pad: &[usize], mode: PadMode) -> Result<Tensor> {
        const OP: &str = "pad";
        let name = match mode {
            PadMode::Reflect => "reflect",
            PadMode::Replicate => "replicate",
            PadMode::Circular => "circular",
            PadMode::Constant(_) => unreachable!("handled by try_pad"),
        };
        if pad.len() % 2 != 0 || pad.is_empty() || pad.len() > 6 {
            return Err(Error::invalid(OP, self.shape(), format!("{name} padding takes 2, 4 or 6 values ((before, after) for the last 1 to 3 dims), got {pad:?}")));
        }
        let k = pad.len() / 2;
        if self.rank() < k + 1 || self.rank() > k + 2 {
            return Err(Error::invalid(
                OP,
                self.shape(),
                format!("{name} padding of {k} dims needs a {}-D or {}-D input (batch and channel dims first), got {}-D", k + 1, k + 2, self.rank()),
            ));
        }
        let mut maps = self.identity_maps();
        for (j, p) in pad.chunks(2).enumerate() {
            let d = self.rank() - 1 - j;
            let n = self.shape()[d];
            let (before, after) = (p[0], p[1]);
            let ok = match mode {
                PadMode::Reflect => before < n && after < n,
                PadMode::Circular => before <= n && after <= n,
                _ => n > 0,
            };
            if !ok {
                let rule = match mode {
                    PadMode::Reflect => "less than",
                    PadMode::Circular => "at most",
                    _ => "of a non-empty dim, at most",
                };
                return Err(Error::invalid(OP, self.shape(), format!("{name} padding ({before}, {after}) of dim {d} must be {rule} its size {n}")));
            }
            let (n, b) = (n as isize, before as isize);
            maps[d] = (0..(n as usize + before + after) as isize)
                .map(|i| {
                    let j = i - b;
                    (match mode {
                        PadMode::Reflect if j < 0 => -j,
                        PadMode::Reflect if j >= n => 2 * (n - 1) - j,
                        PadMode::Replicate => j.clamp(0, n - 1),
                        PadMode::Circular => j.rem_euclid(n),
                        _ => j,
                    }) as usize
                })
                .collect();
        }
        self.try_remap("pad", maps)
    }
}

panicking! {
    /// Reverses along `dims` (`torch.flip`).
    fn flip / try_flip(&self, dims: &[isize]) -> Tensor;
    /// Rolls along `dims` by `shifts`, wrapping (`torch.roll`).
    fn roll / try_roll(&self, shifts: &[isize], dims: &[isize]) -> Tensor;
    /// Tiles `repeats[i]` times along each dim (`Tensor.repeat`).
    fn repeat / try_repeat(&self, repeats: &[usize]) -> Tensor;
    /// `torch.tile`.
    fn tile / try_tile(&self, reps: &[usize]) -> Tensor;
    /// Repeats each element along `dim` (`torch.repeat_interleave`).
    fn repeat_interleave / try_repeat_interleave(&self, repeats: usize, dim: Option<isize>) -> Tensor;
    /// Repeats element `i` along `dim` `counts[i]` times.
    fn repeat_interleave_counts / try_repeat_interleave_counts(&self, counts: &Tensor, dim: isize) -> Tensor;
    /// `F.pad` with a mode.
    fn pad_mode / try_pad_mode(&self, pad: &[usize], mode: PadMode) -> Tensor;
}
