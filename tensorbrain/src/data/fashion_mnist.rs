//! Fashion-MNIST: 70,000 28x28 grey images of 10 kinds of clothing, in the same IDX files as
//! MNIST (`train-images-idx3-ubyte(.gz)`, ...).

use std::path::Path;

use super::idx::IdxSet;
use super::Split;
use crate::tensor::{Result, Tensor};

pub(crate) const SET: IdxSet = IdxSet {
    name: "Fashion-MNIST",
    where_to_get: "the Debian package dataset-fashion-mnist (installed in /usr/share/datasets/fashion-mnist/)",
    classes: 10,
};

/// The class names, indexed by label.
pub const CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Loads a split from `dir`: images f32 `[N, 1, 28, 28]` scaled to [0, 1], labels i64 `[N]`.
pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<(Tensor, Tensor)> {
    SET.load(dir.as_ref(), split)
}

/// Like [`load`] with the pixels left as u8 (0..=255).
pub fn load_raw(dir: impl AsRef<Path>, split: Split) -> Result<(Tensor, Tensor)> {
    SET.load_raw(dir.as_ref(), split)
}
