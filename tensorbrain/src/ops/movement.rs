//! Shape and layout ops. Most are views: they share storage and only change the layout.

use tensorbrain_kernels::index::copy_strided;
use tensorbrain_kernels::strided::copy_into;

use super::{any_dispatch, ok, panicking};
use crate::autograd::record;
use crate::tensor::layout::{checked_numel, normalize_dim, Layout};
use crate::tensor::{try_filled, try_zeroed, Element, Error, Result, StorageElement, Tensor};

impl Tensor {
    /// Resolves a shape that may hold one `-1` against this tensor's element count.
    fn infer_shape(&self, op: &'static str, shape: &[isize]) -> Result<Vec<usize>> {
        let numel = self.numel();
        let mut infer = None;
        let mut known = 1usize;
        for (i, &d) in shape.iter().enumerate() {
            match d {
                -1 if infer.is_none() => infer = Some(i),
                -1 => return Err(Error::invalid(op, self.shape(), format!("only one dimension can be -1 in {shape:?}"))),
                d if d < 0 => return Err(Error::invalid(op, self.shape(), format!("invalid size {d} in {shape:?}"))),
                d => {
                    known = known.checked_mul(d as usize).ok_or_else(|| {
                        Error::invalid(op, self.shape(), format!("shape {shape:?} has too many elements: the product of its sizes overflows a {}-bit usize", usize::BITS))
                    })?
                }
            }
        }
        let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        if let Some(i) = infer {
            if known == 0 || numel % known != 0 {
                return Err(Error::invalid(op, self.shape(), format!("cannot infer -1 in {shape:?} for {numel} elements")));
            }
            out[i] = numel / known;
        } else if known != numel {
            return Err(Error::invalid(
                op,
                self.shape(),
                format!("shape {shape:?} has {known} elements but the input has {numel}"),
            ));
        }
        Ok(out)
    }

    /// The same elements in a new shape (one dim may be `-1`). A view when the layout allows,
    /// else a copy, like `torch.reshape`.
    pub fn try_reshape(&self, shape: &[isize]) -> Result<Tensor> {
        let new_shape = self.infer_shape("reshape", shape)?;
        if new_shape == self.shape() {
            return Ok(self.clone());
        }
        let out = match self.layout().reshape_view(&new_shape) {
            Some(l) => self.view_with(l),
            None => self.try_contiguous_copy()?.view_with(Layout::contiguous(&new_shape)),
        };
        let old: Vec<isize> = self.shape().iter().map(|&d| d as isize).collect();
        Ok(record("reshape", out, &[self], move |g, _| Ok(vec![Some(g.try_reshape(&old)?)])))
    }

    /// Like [`Tensor::try_reshape`] but never copies: errors if the layout cannot be viewed so.
    pub fn try_view(&self, shape: &[isize]) -> Result<Tensor> {
        let new_shape = self.infer_shape("view", shape)?;
        if self.layout().reshape_view(&new_shape).is_none() {
            return Err(Error::invalid(
                "view",
                self.shape(),
                format!("strides {:?} cannot be viewed as {shape:?} without a copy; use reshape", self.strides()),
            ));
        }
        self.try_reshape(shape)
    }

    /// Merges dims `start_dim..=end_dim` into one.
    pub fn try_flatten(&self, start_dim: isize, end_dim: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.try_reshape(&[1]);
        }
        let s = normalize_dim("flatten", start_dim, self.rank())?;
        let e = normalize_dim("flatten", end_dim, self.rank())?;
        if s > e {
            return Err(Error::invalid("flatten", self.shape(), format!("start_dim {start_dim} comes after end_dim {end_dim}")));
        }
        let sh = self.shape();
        let mut shape: Vec<isize> = sh[..s].iter().map(|&d| d as isize).collect();
        shape.push(sh[s..=e].iter().product::<usize>() as isize);
        shape.extend(sh[e + 1..].iter().map(|&d| d as isize));
        self.try_reshape(&shape)
    }

    /// Removes `dim` if it has size 1 (no-op otherwise), or every size-1 dim for `None`.
    pub fn try_squeeze(&self, dim: Option<isize>) -> Result<Tensor> {
        let shape: Vec<isize> = match dim {
            None => self.shape().iter().filter(|&&d| d != 1).map(|&d| d as isize).collect(),
            Some(dim) => {
                let d = normalize_dim("squeeze", dim, self.rank())?;
                self.shape()
                    .iter()
                    .enumerate()
                    .filter(|&(i, &s)| !(i == d && s == 1))
                    .map(|(_, &s)| s as isize)
                    .collect()
            }
        };
        self.try_reshape(&shape)
    }

    /// Inserts a size-1 dim at `dim` (which may be `rank`, to append).
    pub fn try_unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = normalize_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut shape: Vec<isize> = self.shape().iter().map(|&d| d as isize).collect();
        shape.insert(d, 1);
        self.try_reshape(&shape)
    }

    /// Swaps two dims (a view).
    pub fn try_transpose(&self, dim0: isize, dim1: isize) -> Result<Tensor> {
        let a = normalize_dim("transpose", dim0, self.rank())?;
        let b = normalize_dim("transpose", dim1, self.rank())?;
        if a == b || self.rank() < 2 {
            return Ok(self.clone());
        }
        let out = self.view_with(self.layout().transpose(a, b));
        Ok(record("transpose", out, &[self], move |g, _| Ok(vec![Some(g.try_transpose(a as isize, b as isize)?)])))
    }

    /// The transpose of a matrix (`.T` of a 2-D tensor; 0-D and 1-D tensors are returned as is).
    pub fn try_t(&self) -> Result<Tensor> {
        if self.rank() > 2 {
            return Err(Error::invalid("t", self.shape(), "t() expects a tensor with at most 2 dims; use transpose"));
        }
        self.try_transpose(0, -1)
    }

    /// Reorders dims: output dim `i` is input dim `dims[i]` (a view).
    pub fn try_permute(&self, dims: &[isize]) -> Result<Tensor> {
        if dims.len() != self.rank() {
            return Err(Error::invalid("permute", self.shape(), format!("{} dims given for a tensor of rank {}", dims.len(), self.rank())));
        }
        let perm: Vec<usize> = dims.iter().map(|&d| normalize_dim("permute", d, self.rank())).collect::<Result<_>>()?;
        let mut seen = vec![false; perm.len()];
        for &p in &perm {
            if std::mem::replace(&mut seen[p], true) {
                return Err(Error::invalid("permute", self.shape(), format!("dims {dims:?} repeat a dimension")));
            }
        }
        let out = self.view_with(self.layout().permute(&perm));
        let mut inverse = vec![0isize; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i as isize;
        }
        Ok(record("permute", out, &[self], move |g, _| Ok(vec![Some(g.try_permute(&inverse)?)])))
    }

    /// Broadcasts to `shape` without copying (`-1` keeps a dim); new dims go in front.
    pub fn try_expand(&self, shape: &[isize]) -> Result<Tensor> {
        if shape.len() < self.rank() {
            return Err(Error::invalid("expand", self.shape(), format!("target {shape:?} has fewer dims than the input")));
        }
        let extra = shape.len() - self.rank();
        let mut target = Vec::with_capacity(shape.len());
        for (i, &s) in shape.iter().enumerate() {
            let cur = if i >= extra { Some(self.shape()[i - extra]) } else { None };
            let t = match (s, cur) {
                (-1, Some(c)) => c,
                (s, _) if s < 0 => return Err(Error::invalid("expand", self.shape(), format!("invalid size {s} in {shape:?}"))),
                (s, Some(c)) if c != 1 && c != s as usize => {
                    return Err(Error::invalid("expand", self.shape(), format!("dim {i} of size {c} cannot expand to {s} (only size-1 dims can)")))
                }
                (s, _) => s as usize,
            };
            target.push(t);
        }
        if target == self.shape() {
            return Ok(self.clone());
        }
        checked_numel("expand", &target)?;
        let out = self.view_with(self.layout().broadcast_to(&target));
        let orig = self.shape().to_vec();
        Ok(record("expand", out, &[self], move |g, _| Ok(vec![Some(g.sum_to_shape(&orig)?)])))
    }

    /// `expand` to another tensor's shape.
    pub fn try_expand_as(&self, other: &Tensor) -> Result<Tensor> {
        self.try_expand(&other.shape().iter().map(|&d| d as isize).collect::<Vec<_>>())
    }

    /// A contiguous copy (no graph edge).
    pub(crate) fn try_contiguous_copy(&self) -> Result<Tensor> {
        if super::on_device(self) {
            return super::device_unary("copy", self);
        }
        let l = self.layout();
        Ok(any_dispatch!(self.dtype(), T => Tensor::from_storage(T::wrap(self.try_contiguous_vec::<T>("contiguous")?), &l.shape)))
    }

    /// This tensor with a row-major dense layout (copied only if needed).
    pub fn try_contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let out = self.try_contiguous_copy()?;
        Ok(record("contiguous", out, &[self], |g, _| Ok(vec![Some(g.clone())])))
    }

    /// Elements `start, start + step, ...` before `end` along `dim` (a view). Negative `start`
    /// and `end` count from the end and are clamped, like Python slicing.
    pub fn try_slice(&self, dim: isize, start: isize, end: isize, step: usize) -> Result<Tensor> {
        let d = normalize_dim("slice", dim, self.rank())?;
        if self.rank() == 0 {
            return Err(Error::invalid("slice", self.shape(), "cannot slice a 0-d tensor"));
        }
        if step == 0 {
            return Err(Error::invalid("slice", self.shape(), "slice step must be positive"));
        }
        let n = self.shape()[d] as isize;
        let clamp = |i: isize| if i < 0 { (i + n).max(0) } else { i.min(n) } as usize;
        let (s, e) = (clamp(start), clamp(end).max(clamp(start)));
        let out = self.view_with(self.layout().slice(d, s, e, step));
        let shape = self.shape().to_vec();
        Ok(record("slice", out, &[self], move |g, _| Ok(vec![Some(g.try_slice_backward(&shape, d, s, e, step)?)])))
    }

    /// `len` elements from `start` along `dim` (a view), like `torch.narrow`.
    pub fn try_narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = normalize_dim("narrow", dim, self.rank())?;
        let size = self.shape().get(d).copied().unwrap_or(0);
        if start + len > size {
            return Err(Error::invalid("narrow", self.shape(), format!("range {start}..{} exceeds dim {d} of size {size}", start + len)));
        }
        self.try_slice(dim, start as isize, (start + len) as isize, 1)
    }

    /// Concatenates tensors along `dim` (`torch.cat`). Sizes must match except in `dim`; like
    /// PyTorch, 1-D empty tensors (shape `[0]`) are skipped whatever the others' shapes.
    #[track_caller]
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Tensor {
        ok(Tensor::try_cat(tensors, dim))
    }

    pub fn try_cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        const OP: &str = "cat";
        let Some(&first) = tensors.first() else {
            return Err(Error::invalid(OP, &[], "expected a non-empty list of tensors"));
        };
        let skipped = |t: &Tensor| t.rank() == 1 && t.numel() == 0;
        for (i, t) in tensors.iter().enumerate() {
            if t.rank() == 0 {
                return Err(Error::invalid(OP, t.shape(), format!("zero-dimensional tensor (at position {i}) cannot be concatenated")));
            }
            if t.dtype() != first.dtype() {
                return Err(Error::invalid(
                    OP,
                    t.shape(),
                    format!("tensor {i} has dtype {} but tensor 0 has dtype {}; convert with to_dtype first", t.dtype(), first.dtype()),
                ));
            }
            if t.device() != first.device() {
                return Err(Error::invalid(OP, t.shape(), format!("tensor {i} is on {} but tensor 0 is on {}", t.device(), first.device())));
            }
        }
        let ri = tensors.iter().position(|t| !skipped(t)).unwrap_or(0);
        let reference = tensors[ri];
        let rank = reference.rank();
        let d = normalize_dim(OP, dim, rank)?;
        let mut ranges = Vec::with_capacity(tensors.len());
        let mut total = 0;
        for (i, t) in tensors.iter().enumerate() {
            if skipped(t) && i != ri {
                ranges.push(None);
                continue;
            }
            let same = t.rank() == rank && (0..rank).all(|k| k == d || t.shape()[k] == reference.shape()[k]);
            if !same {
                return Err(Error::invalid(
                    OP,
                    t.shape(),
                    format!(
                        "tensor {i} has shape {:?} but tensor {ri} has shape {:?}; sizes must match except in dim {d}",
                        t.shape(),
                        reference.shape()
                    ),
                ));
            }
            ranges.push(Some((total, t.shape()[d])));
            total = usize::checked_add(total, t.shape()[d]).ok_or_else(|| Error::invalid(OP, t.shape(), format!("the sizes along dim {d} add up to more than a {}-bit usize: the sum overflows", usize::BITS)))?;
        }
        let mut out_shape = reference.shape().to_vec();
        out_shape[d] = total;
        let full = Layout::contiguous(&out_shape);
        let out = any_dispatch!(first.dtype(), T => {
            let mut buf = try_zeroed::<T>(OP, &out_shape)?;
            for (t, r) in tensors.iter().zip(&ranges) {
                let Some((start, n)) = *r else { continue };
                let view = full.slice(d, start, start + n, 1);
                let (s, l) = (t.storage(), t.layout());
                copy_strided(s.cpu()?.as_slice::<T>(), l.offset, &l.strides, &mut buf, view.offset, &view.strides, &l.shape);
            }
            Tensor::from_storage(T::wrap(buf), &out_shape)
        });
        Ok(record(OP, out, tensors, move |g, need| {
            ranges
                .iter()
                .zip(need)
                .map(|(r, &need)| match (need, r) {
                    (false, _) => Ok(None),
                    (true, Some((start, n))) => Ok(Some(g.try_narrow(d as isize, *start, *n)?)),
                    (true, None) => Ok(Some(Tensor::zeros(&[0], g.dtype()))),
                })
                .collect()
        }))
    }

    /// Stacks equal-shaped tensors along a new dim `dim` (`torch.stack`).
    #[track_caller]
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Tensor {
        ok(Tensor::try_stack(tensors, dim))
    }

    pub fn try_stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        const OP: &str = "stack";
        let Some(&first) = tensors.first() else {
            return Err(Error::invalid(OP, &[], "expected a non-empty list of tensors"));
        };
        let d = normalize_dim(OP, dim, first.rank() + 1)?;
        for (i, t) in tensors.iter().enumerate() {
            if t.shape() != first.shape() {
                return Err(Error::invalid(
                    OP,
                    t.shape(),
                    format!("tensor {i} has shape {:?} but tensor 0 has shape {:?}; stack needs equal shapes", t.shape(), first.shape()),
                ));
            }
        }
        let parts: Vec<Tensor> = tensors.iter().map(|t| t.try_unsqueeze(d as isize)).collect::<Result<_>>()?;
        Tensor::try_cat(&parts.iter().collect::<Vec<_>>(), d as isize)
    }

    /// Splits into views of `split_size` along `dim`; the last piece may be smaller
    /// (`torch.split` with an int).
    pub fn try_split(&self, split_size: usize, dim: isize) -> Result<Vec<Tensor>> {
        const OP: &str = "split";
        if self.rank() == 0 {
            return Err(Error::invalid(OP, self.shape(), "split expects at least a 1-dimensional tensor"));
        }
        let d = normalize_dim(OP, dim, self.rank())?;
        let n = self.shape()[d];
        if split_size == 0 && n != 0 {
            return Err(Error::invalid(OP, self.shape(), format!("split_size can only be 0 if dim {d} has size 0, it has {n}")));
        }
        let pieces = if split_size == 0 { 1 } else { n.div_ceil(split_size).max(1) };
        (0..pieces)
            .map(|i| {
                let start = i * split_size;
                self.try_narrow(d as isize, start, split_size.min(n - start))
            })
            .collect()
    }

    /// Splits into `chunks` views along `dim`, each of size `ceil(n / chunks)` (the last smaller);
    /// may return fewer than `chunks` pieces, like `torch.chunk`.
    pub fn try_chunk(&self, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
        const OP: &str = "chunk";
        if chunks == 0 {
            return Err(Error::invalid(OP, self.shape(), "chunks must be greater than 0"));
        }
        if self.rank() == 0 {
            return Err(Error::invalid(OP, self.shape(), "chunk expects at least a 1-dimensional tensor"));
        }
        let d = normalize_dim(OP, dim, self.rank())?;
        let n = self.shape()[d];
        if n == 0 {
            // PyTorch keeps the count here: `chunks` empty pieces.
            return (0..chunks).map(|_| self.try_narrow(d as isize, 0, 0)).collect();
        }
        self.try_split(n.div_ceil(chunks), dim)
    }

    /// Constant padding, `F.pad(x, pad, value=value)`: `pad` holds (before, after) pairs
    /// starting from the last dim.
    pub fn try_pad(&self, pad: &[usize], value: f64) -> Result<Tensor> {
        const OP: &str = "pad";
        if !pad.len().is_multiple_of(2) {
            return Err(Error::invalid(OP, self.shape(), format!("padding {pad:?} must have an even length (before, after pairs)")));
        }
        let rank = self.rank();
        if pad.len() / 2 > rank {
            return Err(Error::invalid(
                OP,
                self.shape(),
                format!("padding {pad:?} covers {} dims but the input has only {rank}", pad.len() / 2),
            ));
        }
        // (dim, before, size) for each padded dim.
        let padded: Vec<(usize, usize, usize)> = pad.chunks(2).enumerate().map(|(k, p)| (rank - 1 - k, p[0], self.shape()[rank - 1 - k])).collect();
        let mut out_shape = self.shape().to_vec();
        for (k, p) in pad.chunks(2).enumerate() {
            let d = rank - 1 - k;
            out_shape[d] = out_shape[d].checked_add(p[0]).and_then(|n| n.checked_add(p[1])).ok_or_else(|| {
                Error::invalid(OP, self.shape(), format!("padding {pad:?} makes dim {d} larger than a {}-bit usize: the sum overflows", usize::BITS))
            })?;
        }
        checked_numel(OP, &out_shape)?;
        let full = Layout::contiguous(&out_shape);
        let offset: usize = padded.iter().map(|&(d, before, _)| before * full.strides[d]).sum();
        let out = any_dispatch!(self.dtype(), T => {
            let mut buf = try_filled(OP, &out_shape, <T as Element>::from_f64(value))?;
            let (s, l) = (self.storage(), self.layout());
            copy_strided(s.cpu()?.as_slice::<T>(), l.offset, &l.strides, &mut buf, offset, &full.strides, &l.shape);
            Tensor::from_storage(T::wrap(buf), &out_shape)
        });
        Ok(record(OP, out, &[self], move |g, _| {
            let mut g = g.clone();
            for &(d, before, size) in &padded {
                g = g.try_narrow(d as isize, before, size)?;
            }
            Ok(vec![Some(g)])
        }))
    }

    /// The gradient of a slice: zeros of the input's shape with `self` written into the slice.
    fn try_slice_backward(&self, shape: &[usize], d: usize, s: usize, e: usize, step: usize) -> Result<Tensor> {
        let view = Layout::contiguous(shape).slice(d, s, e, step);
        let out = any_dispatch!(self.dtype(), T => {
            let mut buf = vec![T::default(); shape.iter().product()];
            self.with_contiguous::<T, _>(|src| copy_into(src, &mut buf, view.offset, &view.shape, &view.strides))?;
            Tensor::from_storage(T::wrap(buf), shape)
        });
        Ok(record("slice_backward", out, &[self], move |g, _| {
            Ok(vec![Some(g.try_slice(d as isize, s as isize, e as isize, step)?)])
        }))
    }
}

panicking! {
    /// Reshapes (one dim may be -1); a view when possible, a copy otherwise.
    fn reshape / try_reshape(&self, shape: &[isize]) -> Tensor;
    /// Reshapes without copying; panics if the layout cannot be viewed so.
    fn view / try_view(&self, shape: &[isize]) -> Tensor;
    fn flatten / try_flatten(&self, start_dim: isize, end_dim: isize) -> Tensor;
    fn squeeze / try_squeeze(&self, dim: Option<isize>) -> Tensor;
    fn unsqueeze / try_unsqueeze(&self, dim: isize) -> Tensor;
    fn transpose / try_transpose(&self, dim0: isize, dim1: isize) -> Tensor;
    fn t / try_t(&self) -> Tensor;
    fn permute / try_permute(&self, dims: &[isize]) -> Tensor;
    fn expand / try_expand(&self, shape: &[isize]) -> Tensor;
    fn expand_as / try_expand_as(&self, other: &Tensor) -> Tensor;
    fn contiguous / try_contiguous(&self) -> Tensor;
    /// `self[.., start:end:step, ..]` along `dim`.
    fn slice / try_slice(&self, dim: isize, start: isize, end: isize, step: usize) -> Tensor;
    fn narrow / try_narrow(&self, dim: isize, start: usize, len: usize) -> Tensor;
    /// Splits into views of `split_size` along `dim` (the last may be smaller).
    fn split / try_split(&self, split_size: usize, dim: isize) -> Vec<Tensor>;
    /// Splits into at most `chunks` views along `dim`.
    fn chunk / try_chunk(&self, chunks: usize, dim: isize) -> Vec<Tensor>;
    /// Constant padding in `F.pad` order (last dim first).
    fn pad / try_pad(&self, pad: &[usize], value: f64) -> Tensor;
}
