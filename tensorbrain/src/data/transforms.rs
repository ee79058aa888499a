//! Per-sample transforms for image data `[..., C, H, W]` (torchvision's `transforms`).
//!
//! Random transforms draw from the [`Generator`] they are given; the [`DataLoader`]
//! passes one seeded from its seed, the epoch and the sample index, so augmentation is
//! reproducible. Apply them with [`DatasetExt::with_transform`].
//!
//! [`DataLoader`]: super::DataLoader
//! [`DatasetExt::with_transform`]: super::DatasetExt::with_transform

use rand::Rng;

use crate::ops::{any_dispatch, float_dispatch, Generator};
use crate::tensor::{Element, Error, Result, StorageElement, Tensor};

/// A function of one tensor, possibly random.
pub trait Transform: Send + Sync {
    /// Transforms `x`, drawing any randomness from `rng`.
    fn apply(&self, x: &Tensor, rng: &mut Generator) -> Result<Tensor>;
}

impl<F> Transform for F
where
    F: Fn(&Tensor, &mut Generator) -> Result<Tensor> + Send + Sync,
{
    fn apply(&self, x: &Tensor, rng: &mut Generator) -> Result<Tensor> {
        self(x, rng)
    }
}

impl Transform for Box<dyn Transform> {
    fn apply(&self, x: &Tensor, rng: &mut Generator) -> Result<Tensor> {
        (**self).apply(x, rng)
    }
}

/// Transforms applied one after the other.
#[derive(Default)]
pub struct Compose(pub Vec<Box<dyn Transform>>);

impl Compose {
    /// An empty composition (the identity).
    pub fn new() -> Compose {
        Compose(Vec::new())
    }

    /// Appends `t`: it runs after the transforms already there.
    pub fn then(mut self, t: impl Transform + 'static) -> Compose {
        self.0.push(Box::new(t));
        self
    }
}

impl Transform for Compose {
    fn apply(&self, x: &Tensor, rng: &mut Generator) -> Result<Tensor> {
        let mut x = x.clone();
        for t in &self.0 {
            x = t.apply(&x, rng)?;
        }
        Ok(x)
    }
}

/// Splits a shape `[..., H, W]` into (number of planes, H, W).
fn planes(op: &'static str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    let r = shape.len();
    if r < 2 {
        return Err(Error::invalid(op, shape, "expected an image of shape [..., H, W] (at least 2 dimensions)"));
    }
    Ok((shape[..r - 2].iter().product(), shape[r - 2], shape[r - 1]))
}

/// `(x - mean[c]) / std[c]` for each channel `c` (dimension -3); `mean` and `std` have one
/// value per channel, or one for all. Float images only.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    /// Per-channel (or single) mean and standard deviation.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Normalize {
        Normalize { mean, std }
    }
}

impl Transform for Normalize {
    fn apply(&self, x: &Tensor, _rng: &mut Generator) -> Result<Tensor> {
        const OP: &str = "Normalize";
        let shape = x.shape().to_vec();
        let r = shape.len();
        if r < 3 {
            return Err(Error::invalid(OP, &shape, "expected an image of shape [..., C, H, W] (at least 3 dimensions)"));
        }
        let c = shape[r - 3];
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != c && v.len() != 1 {
                return Err(Error::invalid(OP, &shape, format!("{name} has {} values but the image has {c} channels", v.len())));
            }
        }
        if let Some(s) = self.std.iter().find(|s| **s == 0.0 || !s.is_finite()) {
            return Err(Error::invalid(OP, &shape, format!("std {s} would divide by zero or give non-finite values (std = {:?})", self.std)));
        }
        let plane = shape[r - 2] * shape[r - 1];
        let at = |v: &[f32], ch: usize| v[if v.len() == 1 { 0 } else { ch }] as f64;
        float_dispatch!(OP, x.dtype(), T => {
            let out: Vec<T> = x.with_contiguous::<T, _>(|src| {
                let mut out = Vec::with_capacity(src.len());
                for (p, chunk) in src.chunks(plane.max(1)).enumerate() {
                    let ch = p % c.max(1);
                    let (m, inv) = (at(&self.mean, ch), 1.0 / at(&self.std, ch));
                    out.extend(chunk.iter().map(|&v| T::from_f64((v.to_f64() - m) * inv)));
                }
                out
            })?;
            Ok(Tensor::from_storage(T::wrap(out), &shape))
        })
    }
}

/// A random `size` window of the image padded with `padding` zeros on every side (dims -2
/// and -1); the window's corner is uniform over all positions that fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomCrop {
    /// Output (height, width).
    pub size: (usize, usize),
    pub padding: usize,
}

impl RandomCrop {
    /// A square crop of `size` after padding by `padding` (CIFAR's usual `RandomCrop(32, 4)`).
    pub fn new(size: usize, padding: usize) -> RandomCrop {
        RandomCrop { size: (size, size), padding }
    }
}

impl Transform for RandomCrop {
    fn apply(&self, x: &Tensor, rng: &mut Generator) -> Result<Tensor> {
        const OP: &str = "RandomCrop";
        let shape = x.shape().to_vec();
        let (n, h, w) = planes(OP, &shape)?;
        let (oh, ow) = self.size;
        let p = self.padding;
        if oh > h + 2 * p || ow > w + 2 * p {
            return Err(Error::invalid(
                OP,
                &shape,
                format!("crop size ({oh}, {ow}) is larger than the padded image ({}, {})", h + 2 * p, w + 2 * p),
            ));
        }
        // The window's corner in padded coordinates.
        let top = rng.rng.gen_range(0..=h + 2 * p - oh);
        let left = rng.rng.gen_range(0..=w + 2 * p - ow);
        let mut out_shape = shape.clone();
        let r = out_shape.len();
        out_shape[r - 2] = oh;
        out_shape[r - 1] = ow;
        // Output columns [x0, x1) come from input columns starting at left + x0 - p.
        let x0 = p.saturating_sub(left).min(ow);
        let x1 = (w + p).saturating_sub(left).min(ow).max(x0);
        any_dispatch!(x.dtype(), T => {
            let out: Vec<T> = x.with_contiguous::<T, _>(|src| {
                let mut out = vec![T::default(); n * oh * ow];
                for k in 0..n {
                    for y in 0..oh {
                        let sy = top + y;
                        if sy < p || sy >= h + p || x1 == x0 {
                            continue;
                        }
                        let src_row = &src[(k * h + sy - p) * w..][..w];
                        let sx = left + x0 - p;
                        out[(k * oh + y) * ow + x0..(k * oh + y) * ow + x1].copy_from_slice(&src_row[sx..sx + (x1 - x0)]);
                    }
                }
                out
            })?;
            Ok(Tensor::from_storage(T::wrap(out), &out_shape))
        })
    }
}

/// Mirrors the image left-right (dim -1) with probability `p`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomHorizontalFlip {
    pub p: f64,
}

impl RandomHorizontalFlip {
    /// Flips with probability `p`.
    pub fn new(p: f64) -> RandomHorizontalFlip {
        RandomHorizontalFlip { p }
    }
}

impl Default for RandomHorizontalFlip {
    /// Flips half the time, as in torchvision.
    fn default() -> Self {
        RandomHorizontalFlip { p: 0.5 }
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, x: &Tensor, rng: &mut Generator) -> Result<Tensor> {
        const OP: &str = "RandomHorizontalFlip";
        let shape = x.shape().to_vec();
        let (_, _, w) = planes(OP, &shape)?;
        if !(0.0..=1.0).contains(&self.p) {
            return Err(Error::invalid(OP, &shape, format!("probability p = {} is outside [0, 1]", self.p)));
        }
        // One draw per sample whatever the outcome, so later draws do not depend on it.
        if rng.rng.gen::<f64>() >= self.p {
            return Ok(x.clone());
        }
        any_dispatch!(x.dtype(), T => {
            let out: Vec<T> = x.with_contiguous::<T, _>(|src| {
                let mut out = src.to_vec();
                if w > 0 {
                    out.chunks_mut(w).for_each(|row| row.reverse());
                }
                out
            })?;
            Ok(Tensor::from_storage(T::wrap(out), &shape))
        })
    }
}
