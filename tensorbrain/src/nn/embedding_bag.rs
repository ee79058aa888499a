//! `torch.nn.EmbeddingBag`: a table of `V` vectors of size `D`, looked up in bags that are
//! reduced (sum, mean or max) to one vector each, without materialising the per-index rows
//! of a plain `Embedding` followed by a reduction.

use std::marker::PhantomData;

use super::functional::{try_embedding_bag, BagMode};
use super::{join, Forward, Module};
use crate::ops::Generator;
use crate::shape::{Const, Size};
use crate::tensor::{DType, Result, Tensor};

/// Bags over a table of `V` embeddings of size `D` (`nn.EmbeddingBag(V, D)`; mode mean).
pub type EmbeddingBag<const V: usize, const D: usize> = EmbeddingBagOf<Const<V>, Const<D>>;

/// [`EmbeddingBag`] with its sizes as types.
pub struct EmbeddingBagOf<V: Size, D: Size> {
    /// `[V, D]`, initialised from N(0, 1) as in PyTorch.
    pub weight: Tensor,
    /// How each bag is reduced (PyTorch's default: mean).
    pub mode: BagMode,
    /// Indices equal to this are left out of every bag (and their row is zero at init).
    pub padding_idx: Option<i64>,
    _sizes: PhantomData<(V, D)>,
}

impl<V: Size, D: Size> EmbeddingBagOf<V, D> {
    /// The layer reducing bags with `mode`.
    pub fn with_mode(mut self, mode: BagMode) -> Self {
        self.mode = mode;
        self
    }

    /// Leaves index `padding_idx` (negative counts from the end) out of every bag and zeroes
    /// its row, as PyTorch's constructor does.
    pub fn with_padding_idx(mut self, padding_idx: i64) -> Self {
        let v = V::N as i64;
        assert!((-v..v).contains(&padding_idx), "EmbeddingBag<{v}, {}>: padding_idx {padding_idx} must be within the {v} embeddings", D::N);
        let row = if padding_idx < 0 { padding_idx + v } else { padding_idx };
        crate::autograd::no_grad(|| {
            let zeroed = self.weight.index_fill(0, &Tensor::from_vec(vec![row], &[1]), 0.0);
            self.weight.detach().copy_from(&zeroed);
        });
        self.padding_idx = Some(row);
        self
    }

    /// Reduces the bags of `indices`: `[B, L]` without `offsets` (one bag per row), or 1-D
    /// with i64 `offsets` (bag `b` starts at `offsets[b]`). Gives `[B, D]`.
    pub fn forward_bags(&self, indices: &Tensor, offsets: Option<&Tensor>) -> Result<Tensor> {
        try_embedding_bag(indices, &self.weight, offsets, self.mode, None, self.padding_idx)
    }

    /// Like [`EmbeddingBagOf::forward_bags`], each row scaled by its per-sample weight (the
    /// indices' shape; mode sum only, as in PyTorch).
    pub fn forward_weighted(&self, indices: &Tensor, offsets: Option<&Tensor>, per_sample_weights: &Tensor) -> Result<Tensor> {
        try_embedding_bag(indices, &self.weight, offsets, self.mode, Some(per_sample_weights), self.padding_idx)
    }

    /// Reduces each row of a `[B, L]` index tensor to one vector: `[B, D]`.
    pub fn forward(&self, indices: &Tensor) -> Result<Tensor> {
        self.forward_bags(indices, None)
    }
}

impl<V: Size, D: Size> Module for EmbeddingBagOf<V, D> {
    fn init_with(gen: &mut Generator) -> Self {
        EmbeddingBagOf {
            weight: Tensor::randn_with(&[V::N, D::N], DType::F32, gen).set_requires_grad(true),
            mode: BagMode::Mean,
            padding_idx: None,
            _sizes: PhantomData,
        }
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        f(&join(prefix, "weight"), &mut self.weight);
    }
    fn kind(&self) -> String {
        format!("EmbeddingBag<{}, {}>", V::N, D::N)
    }
}

impl<V: Size, D: Size> Forward for EmbeddingBagOf<V, D> {
    fn forward(&self, indices: &Tensor) -> Result<Tensor> {
        EmbeddingBagOf::forward(self, indices)
    }
}
