//! Embedding lookups on runtime tensors: `F.embedding` with `padding_idx` and `max_norm`,
//! `F.one_hot`, and `F.embedding_bag` (sum, mean or max over bags, optional per-sample
//! weights).

use crate::autograd::{no_grad, record};
use crate::tensor::{DType, Error, Result, Tensor};

fn err(op: &str, msg: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{op}: {msg}"))
}

/// Options of [`try_embedding`] beyond the indices and the table.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EmbeddingOptions {
    /// This row gets no gradient (its entries stay as they are through training).
    pub padding_idx: Option<i64>,
    /// Rows looked up are first renormalised in place to at most this `norm_type`-norm.
    pub max_norm: Option<f64>,
    /// The norm of `max_norm` (PyTorch's default 2).
    pub norm_type: Option<f64>,
}

/// The table's row count and the ids (read on the host, from either device), after checking
/// that every id names a row.
fn check_indices(op: &str, idx: &Tensor, weight: &Tensor) -> Result<(usize, Vec<i64>)> {
    if idx.dtype() != DType::I64 {
        return Err(err(op, format!("indices must be i64, got {}", idx.dtype())));
    }
    if weight.rank() != 2 {
        return Err(err(op, format!("weight must be a 2-D [num_embeddings, embedding_dim] table, got {:?}", weight.shape())));
    }
    let n = weight.shape()[0];
    let ids = idx.to_vec::<i64>();
    if let Some(&bad) = ids.iter().find(|&&i| i < 0 || i as usize >= n) {
        return Err(Error::IndexOutOfBounds { op: "embedding", index: bad, dim: 0, size: n });
    }
    Ok((n, ids))
}

/// Rows of `weight` (`[V, D]`) at the i64 `indices` (any shape), giving `indices.shape + [D]`
/// (`F.embedding`).
pub fn try_embedding(indices: &Tensor, weight: &Tensor, o: &EmbeddingOptions) -> Result<Tensor> {
    const OP: &str = "embedding";
    let (v, ids) = check_indices(OP, indices, weight)?;
    let padding = match o.padding_idx {
        Some(p) if p < -(v as i64) || p >= v as i64 => return Err(err(OP, format!("padding_idx {p} must be within the {v} embeddings"))),
        Some(p) if p < 0 => Some(p + v as i64),
        p => p,
    };
    if let Some(max_norm) = o.max_norm {
        renorm_rows(indices, weight, max_norm, o.norm_type.unwrap_or(2.0))?;
    }
    let flat = indices.try_reshape(&[-1])?;
    let rows = match padding {
        None => weight.try_index_select(0, &flat)?,
        Some(p) => {
            // The lookup with the padding row's gradient dropped: the gradient of the table is
            // the scatter-add of the output gradient's rows at the other positions (so the
            // padding row stays exactly zero even where the gradient is not finite).
            let out = no_grad(|| weight.try_index_select(0, &flat))?;
            let (kept_pos, kept_ids): (Vec<i64>, Vec<i64>) = ids.iter().enumerate().filter(|&(_, &i)| i != p).map(|(j, &i)| (j as i64, i)).unzip();
            let device = weight.device();
            let to = |v: Vec<i64>| {
                let n = v.len();
                Tensor::from_vec(v, &[n]).try_on(device)
            };
            let (kept_pos, kept_ids) = (to(kept_pos)?, to(kept_ids)?);
            record("embedding", out, &[weight], move |g, _| {
                let rows = g.try_index_select(0, &kept_pos)?;
                Ok(vec![Some(Tensor::try_zeros_on(&[v, g.shape()[1]], g.dtype(), g.device())?.try_index_add(0, &kept_ids, &rows)?)])
            })
        }
    };
    let mut shape: Vec<isize> = indices.shape().iter().map(|&d| d as isize).collect();
    shape.push(weight.shape()[1] as isize);
    rows.try_reshape(&shape)
}

/// Scales the rows of `weight` that `indices` names down to norm `max_norm` where larger, in
/// place and outside autograd, as PyTorch's `embedding_renorm_`.
fn renorm_rows(indices: &Tensor, weight: &Tensor, max_norm: f64, p: f64) -> Result<()> {
    no_grad(|| -> Result<()> {
        let mut rows = indices.to_vec::<i64>();
        rows.sort_unstable();
        rows.dedup();
        let idx = Tensor::from_vec(rows.clone(), &[rows.len()]);
        let picked = weight.try_index_select(0, &idx)?;
        let norms = picked.try_vector_norm(p, &[1], true)?;
        let over = norms.try_gt(&Tensor::full(&[], max_norm, norms.dtype()))?;
        let scale = Tensor::try_where_cond(&over, &norms.try_add_scalar(1e-7)?.try_reciprocal()?.try_mul_scalar(max_norm)?, &Tensor::ones(&[], norms.dtype()))?;
        let renormed = picked.try_mul(&scale)?;
        let updated = weight.detach().try_index_copy(0, &idx, &renormed)?;
        weight.detach().try_copy_from(&updated)
    })
}

/// One-hot encoding of i64 class indices (`F.one_hot`): `indices.shape + [num_classes]`, i64.
/// `num_classes = None` uses the largest index + 1.
pub fn try_one_hot(indices: &Tensor, num_classes: Option<usize>) -> Result<Tensor> {
    const OP: &str = "one_hot";
    if indices.dtype() != DType::I64 {
        return Err(err(OP, format!("indices must be i64, got {}", indices.dtype())));
    }
    let v = indices.to_vec::<i64>();
    if let Some(&bad) = v.iter().find(|&&i| i < 0) {
        return Err(err(OP, format!("class values must be non-negative, got {bad}")));
    }
    let n = match num_classes {
        Some(n) => n,
        None if v.is_empty() => return Err(err(OP, "cannot infer num_classes from an empty tensor; pass it")),
        None => v.iter().max().map_or(0, |&m| m as usize + 1),
    };
    if let Some(&bad) = v.iter().find(|&&i| i as usize >= n) {
        return Err(err(OP, format!("class value {bad} is out of range for {n} classes")));
    }
    let mut out = vec![0i64; v.len() * n];
    for (k, &i) in v.iter().enumerate() {
        out[k * n + i as usize] = 1;
    }
    let mut shape = indices.shape().to_vec();
    shape.push(n);
    Ok(Tensor::from_vec(out, &shape))
}

/// How [`try_embedding_bag`] reduces each bag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BagMode {
    Sum,
    #[default]
    Mean,
    Max,
}

/// Bags of embeddings reduced to one vector each (`F.embedding_bag`). `indices` is 2-D
/// `[B, L]` (one bag per row, `offsets` `None`) or 1-D with `offsets` (i64, bag `b` starts at
/// `offsets[b]`). `per_sample_weights` (the indices' shape) scale rows in `Sum` mode;
/// `padding_idx` rows are left out of every bag. Empty bags give zeros. Returns `[B, D]`.
pub fn try_embedding_bag(
    indices: &Tensor,
    weight: &Tensor,
    offsets: Option<&Tensor>,
    mode: BagMode,
    per_sample_weights: Option<&Tensor>,
    padding_idx: Option<i64>,
) -> Result<Tensor> {
    const OP: &str = "embedding_bag";
    let (v, idx) = check_indices(OP, indices, weight)?;
    let d = weight.shape()[1];
    let device = weight.device();
    // Index tensors made on the host go to the table's device.
    let ids = |v: Vec<i64>| {
        let n = v.len();
        Tensor::from_vec(v, &[n]).try_on(device)
    };
    // The bag of every index.
    let (bags, bag_of): (usize, Vec<i64>) = match (indices.rank(), offsets) {
        (2, None) => {
            let (b, l) = (indices.shape()[0], indices.shape()[1]);
            (b, (0..b * l).map(|k| (k / l.max(1)) as i64).collect())
        }
        (1, Some(off)) => {
            if off.dtype() != DType::I64 || off.rank() != 1 {
                return Err(err(OP, format!("offsets must be a 1-D i64 tensor, got {} {:?}", off.dtype(), off.shape())));
            }
            let o = off.to_vec::<i64>();
            let ok = o.first().is_none_or(|&f| f == 0) && o.windows(2).all(|w| w[0] <= w[1]) && o.last().is_none_or(|&l| l as usize <= idx.len());
            if !ok {
                return Err(err(OP, format!("offsets {o:?} must start at 0, not decrease, and stay within the {} indices", idx.len())));
            }
            let mut bag_of = vec![0i64; idx.len()];
            for (b, w) in o.iter().enumerate() {
                let end = o.get(b + 1).copied().unwrap_or(idx.len() as i64);
                for slot in &mut bag_of[*w as usize..end as usize] {
                    *slot = b as i64;
                }
            }
            (o.len(), bag_of)
        }
        _ => return Err(err(OP, format!("indices must be 2-D [B, L] without offsets, or 1-D with offsets; got {:?} and offsets {}", indices.shape(), offsets.is_some()))),
    };
    if per_sample_weights.is_some() && mode != BagMode::Sum {
        return Err(err(OP, "per_sample_weights are only supported with mode Sum (as in PyTorch)"));
    }
    let padding = padding_idx.map(|p| if p < 0 { p + v as i64 } else { p });
    let keep: Vec<usize> = (0..idx.len()).filter(|&k| Some(idx[k]) != padding).collect();
    let kept_idx = ids(keep.iter().map(|&k| idx[k]).collect())?;
    let kept_bag_host: Vec<i64> = keep.iter().map(|&k| bag_of[k]).collect();
    let kept_bag = ids(kept_bag_host.clone())?;
    let mut rows = weight.try_index_select(0, &kept_idx)?;
    if let Some(w) = per_sample_weights {
        if w.shape() != indices.shape() {
            return Err(err(OP, format!("per_sample_weights must have the indices' shape {:?}, got {:?}", indices.shape(), w.shape())));
        }
        let pos = ids(keep.iter().map(|&k| k as i64).collect())?;
        let wk = w.try_reshape(&[-1])?.try_index_select(0, &pos)?.try_to_dtype(weight.dtype())?;
        rows = rows.try_mul(&wk.try_unsqueeze(1)?)?;
    }
    let zeros = Tensor::try_zeros_on(&[bags, d], weight.dtype(), device)?;
    match mode {
        BagMode::Sum => zeros.try_index_add(0, &kept_bag, &rows),
        BagMode::Mean => {
            let sums = zeros.try_index_add(0, &kept_bag, &rows)?;
            let mut counts = vec![0.0f64; bags];
            for &b in &kept_bag_host {
                counts[b as usize] += 1.0;
            }
            let counts = Tensor::from_vec(counts.into_iter().map(|c: f64| c.max(1.0)).collect::<Vec<_>>(), &[bags, 1]).try_to_dtype(weight.dtype())?.try_on(device)?;
            sums.try_div(&counts)
        }
        BagMode::Max => {
            let index = kept_bag.try_unsqueeze(1)?.try_expand(&[-1, d as isize])?.try_contiguous()?;
            zeros.try_scatter_reduce(0, &index, &rows, crate::ops::scatter::Reduce::Amax, false)
        }
    }
}
