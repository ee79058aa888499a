//! Fashion-MNIST: 70,000 28x28 grey images of 10 kinds of clothing, in the same IDX files as
//! MNIST (`train-images-idx3-ubyte(.gz)`, ...).

use std::path::Path;

use super::idx::{IdxFile, IdxSet};
use super::Split;
use crate::tensor::{Result, Tensor};

pub(crate) const SET: IdxSet = IdxSet {
    name: "Fashion-MNIST",
    dir_name: "fashion-mnist",
    where_to_get: "https://github.com/zalandoresearch/fashion-mnist (its data/fashion/ folder), \
                   or the Debian package dataset-fashion-mnist (installed in /usr/share/datasets/fashion-mnist/)",
    classes: 10,
    files: [
        IdxFile {
            name: "train-images-idx3-ubyte",
            sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            gz_sha256: "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        },
        IdxFile {
            name: "train-labels-idx1-ubyte",
            sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            gz_sha256: "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        },
        IdxFile {
            name: "t10k-images-idx3-ubyte",
            sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            gz_sha256: "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        },
        IdxFile {
            name: "t10k-labels-idx1-ubyte",
            sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            gz_sha256: "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        },
    ],
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
