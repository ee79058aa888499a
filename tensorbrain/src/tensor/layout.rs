//! Shape, strides and offset: how a tensor's elements sit in its storage.

use smallvec::SmallVec;

use super::{Error, Result};

/// Dimension sizes or strides. Six dims fit inline, which covers almost every tensor.
pub type Dims = SmallVec<[usize; 6]>;

/// The number of elements of `shape`, or an error naming `op` if the product of its sizes does
/// not fit in a `usize` (it would wrap around to a small or zero count). Every place that builds
/// a shape from user input checks it here.
///
/// Size-0 dims count as 1 in the check, so that the strides of a contiguous layout (products
/// of the sizes to their right) fit too: `[0, 2^40, 2^40]` is rejected like `[2^40, 2^40]`.
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    let span = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d.max(1)));
    match span {
        Some(_) if shape.contains(&0) => Ok(0),
        Some(n) => Ok(n),
        None => Err(Error::ShapeOverflow { op, shape: shape.to_vec() }),
    }
}

/// Row-major strides of a contiguous tensor with this shape.
pub fn contiguous_strides(shape: &[usize]) -> Dims {
    let mut strides: Dims = smallvec::smallvec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i].max(1);
    }
    strides
}

/// Where a tensor's elements are: element `idx` lives at `offset + sum(idx[i] * strides[i])`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Dims,
    pub strides: Dims,
    pub offset: usize,
}

impl Layout {
    pub fn contiguous(shape: &[usize]) -> Layout {
        Layout { shape: shape.into(), strides: contiguous_strides(shape), offset: 0 }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Row-major and dense, so the elements are `storage[offset..offset + numel]` in order.
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != acc {
                return false;
            }
            acc *= self.shape[i];
        }
        true
    }

    /// The range of storage this layout may touch (empty tensors touch nothing).
    pub fn storage_span(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset + self.shape.iter().zip(&self.strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>() + 1
    }

    pub fn transpose(&self, a: usize, b: usize) -> Layout {
        let mut l = self.clone();
        l.shape.swap(a, b);
        l.strides.swap(a, b);
        l
    }

    pub fn permute(&self, dims: &[usize]) -> Layout {
        Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        }
    }

    /// Elements `start, start + step, ...` below `end` along `dim`.
    pub fn slice(&self, dim: usize, start: usize, end: usize, step: usize) -> Layout {
        let mut l = self.clone();
        let len = if end > start { (end - start).div_ceil(step) } else { 0 };
        l.shape[dim] = len;
        // An empty result keeps its offset: `start` may lie past the end of an empty storage
        // (`zeros([5, 0]).narrow(0, 4, 1)`), and an empty view reads nothing anyway.
        if l.numel() > 0 {
            l.offset += start * self.strides[dim];
        }
        l.strides[dim] *= step;
        l
    }

    /// Broadcast to `shape` (already validated) by giving new and size-1 dims stride 0.
    pub fn broadcast_to(&self, shape: &[usize]) -> Layout {
        let extra = shape.len() - self.rank();
        let mut strides: Dims = smallvec::smallvec![0; shape.len()];
        for i in 0..self.rank() {
            strides[extra + i] = if self.shape[i] == 1 && shape[extra + i] != 1 { 0 } else { self.strides[i] };
        }
        Layout { shape: shape.into(), strides, offset: self.offset }
    }

    /// The layout of `reshape(shape)` without a copy, if one exists. Follows PyTorch's rule:
    /// each group of old dims that merges or splits into new dims must itself be dense.
    pub fn reshape_view(&self, shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() {
            return Some(Layout { shape: shape.into(), strides: contiguous_strides(shape), offset: self.offset });
        }
        if self.numel() == 0 {
            // Like PyTorch, any shape with no elements is a view of an empty tensor.
            return Some(Layout { shape: shape.into(), strides: contiguous_strides(shape), offset: 0 });
        }
        // Walk old dims (skipping size 1) in chunks whose elements are equally spaced.
        let old: Vec<(usize, usize)> =
            self.shape.iter().zip(&self.strides).filter(|(&d, _)| d != 1).map(|(&d, &s)| (d, s)).collect();
        let mut new_strides: Dims = smallvec::smallvec![0; shape.len()];
        let mut oi = 0;
        let mut ni = 0;
        while ni < shape.len() {
            if shape[ni] == 1 {
                new_strides[ni] = 1;
                ni += 1;
                continue;
            }
            if oi >= old.len() {
                return None;
            }
            // Merge old dims until the chunk size is reached by new dims.
            let chunk_start = oi;
            let mut old_size = old[oi].0;
            let mut new_size = shape[ni];
            let mut new_dims = vec![ni];
            oi += 1;
            ni += 1;
            while old_size != new_size {
                if old_size < new_size {
                    if oi >= old.len() || old[oi - 1].1 != old[oi].0 * old[oi].1 {
                        return None;
                    }
                    old_size *= old[oi].0;
                    oi += 1;
                } else {
                    while ni < shape.len() && shape[ni] == 1 {
                        new_strides[ni] = 1;
                        ni += 1;
                    }
                    if ni >= shape.len() {
                        return None;
                    }
                    new_size *= shape[ni];
                    new_dims.push(ni);
                    ni += 1;
                }
            }
            // The chunk is dense with innermost stride old[oi-1].1; split it among new dims.
            let mut stride = old[oi - 1].1;
            let _ = chunk_start;
            for &d in new_dims.iter().rev() {
                new_strides[d] = stride;
                stride *= shape[d];
            }
        }
        if oi != old.len() {
            return None;
        }
        Some(Layout { shape: shape.into(), strides: new_strides, offset: self.offset })
    }
}

/// Normalises a possibly negative dim against `rank`.
pub fn normalize_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    // Like PyTorch, a scalar accepts dims -1 and 0.
    let span = r.max(1);
    if dim < -span || dim >= span {
        return Err(Error::DimOutOfRange { op, dim, rank });
    }
    Ok(if dim < 0 { (dim + span) as usize } else { dim as usize })
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Dims> {
    let rank = a.len().max(b.len());
    let mut out: Dims = smallvec::smallvec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(op, a, b, "do not broadcast"));
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_view_of_transposed_needs_copy() {
        let l = Layout::contiguous(&[2, 3]).transpose(0, 1);
        assert!(l.reshape_view(&[6]).is_none());
        assert!(l.reshape_view(&[3, 2, 1]).is_some());
    }

    #[test]
    fn reshape_view_splits_dense_dims_of_a_permuted_tensor() {
        // [4, 6] transposed to [6, 4]; splitting dim 0 (stride 1) into [2, 3] is a view.
        let l = Layout::contiguous(&[4, 6]).transpose(0, 1);
        let v = l.reshape_view(&[2, 3, 4]).unwrap();
        assert_eq!(v.strides.as_slice(), &[3, 1, 6]);
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes("add", &[3, 1, 4], &[2, 4]).unwrap().as_slice(), &[3, 2, 4]);
        assert!(broadcast_shapes("add", &[3], &[4]).is_err());
        assert_eq!(broadcast_shapes("add", &[0, 1], &[1, 5]).unwrap().as_slice(), &[0, 5]);
    }
}
