//! Datasets, data loading and the file formats of the usual public data sets.
//!
//! - [`Dataset`]: indexed samples, each a `Vec<Tensor>` (e.g. `[image, label]`);
//!   [`TensorDataset`] gives the rows of a few tensors; [`DatasetExt::map`] and
//!   [`DatasetExt::with_transform`] apply per-sample functions and [`transforms`].
//! - [`DataLoader`]: batches (shuffled, seeded per epoch), collated by stacking, produced on
//!   background worker threads.
//! - Loaders: [`mnist`], [`fashion_mnist`] (IDX files, gzipped or raw), [`cifar10`] (binary
//!   version), [`digits`] (scikit-learn's CSV).

pub mod cifar10;
pub mod digits;
pub mod fashion_mnist;
pub mod idx;
mod loader;
pub mod mnist;
pub mod transforms;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use loader::{default_collate, CollateFn, DataLoader, DataLoaderBuilder, DataLoaderIter};
pub use transforms::Transform;

use crate::ops::Generator;
use crate::tensor::{Error, Layout, Result, Tensor};

/// One sample of a dataset: its fields, e.g. `[image, label]`.
pub type Sample = Vec<Tensor>;

/// Which part of a data set to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

/// A collection of samples addressed by index (PyTorch's map-style `Dataset`).
///
/// `get` is called from the [`DataLoader`]'s worker threads, hence `Send + Sync`.
pub trait Dataset: Send + Sync {
    /// The number of samples.
    fn len(&self) -> usize;

    /// Whether the dataset has no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index` (`0..len()`).
    fn get(&self, index: usize) -> Result<Sample>;

    /// Sample `index`, drawing any randomness (random transforms) from `rng`. The loader calls
    /// this with a generator seeded from its seed, the epoch and `index`, so augmentation is
    /// reproducible whatever the number of workers. The default ignores `rng` and calls `get`.
    fn get_with(&self, index: usize, rng: &mut Generator) -> Result<Sample> {
        let _ = rng;
        self.get(index)
    }
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        (**self).get(index)
    }
    fn get_with(&self, index: usize, rng: &mut Generator) -> Result<Sample> {
        (**self).get_with(index, rng)
    }
}

impl<D: Dataset + ?Sized> Dataset for Box<D> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        (**self).get(index)
    }
    fn get_with(&self, index: usize, rng: &mut Generator) -> Result<Sample> {
        (**self).get_with(index, rng)
    }
}

/// The error for an index past the end of a dataset.
pub(crate) fn check_index(op: &'static str, index: usize, len: usize) -> Result<()> {
    if index < len {
        Ok(())
    } else {
        Err(Error::IndexOutOfBounds { op, index: index as i64, dim: 0, size: len })
    }
}

/// Rows of a few tensors that share their first dimension: sample `i` is
/// `[t[i] for t in tensors]` (PyTorch's `TensorDataset`).
///
/// Rows are views of the tensors' storage (no copy) outside any autograd graph.
#[derive(Clone)]
pub struct TensorDataset {
    tensors: Vec<Tensor>,
    len: usize,
}

impl TensorDataset {
    /// The dataset of the rows of `tensors`; each needs at least one dimension and all must
    /// have the same size along dimension 0.
    pub fn new(tensors: Vec<Tensor>) -> Result<TensorDataset> {
        let Some(first) = tensors.first() else {
            return Err(Error::Msg("TensorDataset: at least one tensor is needed".into()));
        };
        for (i, t) in tensors.iter().enumerate() {
            if t.rank() == 0 {
                return Err(Error::Msg(format!(
                    "TensorDataset: tensor {i} is a scalar (shape []); each tensor needs a first dimension to index rows along"
                )));
            }
        }
        let len = first.shape()[0];
        if let Some((i, t)) = tensors.iter().enumerate().find(|(_, t)| t.shape()[0] != len) {
            let shapes: Vec<_> = tensors.iter().map(|t| t.shape().to_vec()).collect();
            return Err(Error::Msg(format!(
                "TensorDataset: size mismatch along dimension 0: tensor 0 has {len} rows but tensor {i} has {} (shapes {shapes:?})",
                t.shape()[0]
            )));
        }
        Ok(TensorDataset { tensors, len })
    }

    /// The tensors the rows come from.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }
}

impl Dataset for TensorDataset {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index("TensorDataset::get", index, self.len)?;
        Ok(self
            .tensors
            .iter()
            .map(|t| {
                let l = t.layout();
                let row = Layout { shape: l.shape[1..].into(), strides: l.strides[1..].into(), offset: l.offset + index * l.strides[0] };
                t.view_with(row)
            })
            .collect())
    }
}

/// A dataset whose samples go through a function (see [`DatasetExt::map`]).
pub struct MapDataset<D, F> {
    inner: D,
    f: F,
}

impl<D, F> Dataset for MapDataset<D, F>
where
    D: Dataset,
    F: Fn(Sample, &mut Generator) -> Result<Sample> + Send + Sync,
{
    fn len(&self) -> usize {
        self.inner.len()
    }

    /// Sample `index` through the function, with a generator seeded from `index` alone (the
    /// loader calls [`Dataset::get_with`] instead, with per-epoch randomness).
    fn get(&self, index: usize) -> Result<Sample> {
        self.get_with(index, &mut Generator::new(sample_seed(0, 0, index)))
    }

    fn get_with(&self, index: usize, rng: &mut Generator) -> Result<Sample> {
        let sample = self.inner.get_with(index, rng)?;
        (self.f)(sample, rng)
    }
}

/// Adapters on every dataset.
pub trait DatasetExt: Dataset + Sized {
    /// Passes every sample through `f(sample, rng)` (use `rng` for random augmentation).
    fn map<F>(self, f: F) -> MapDataset<Self, F>
    where
        F: Fn(Sample, &mut Generator) -> Result<Sample> + Send + Sync,
    {
        MapDataset { inner: self, f }
    }

    /// Applies `transform` to field 0 of every sample (the input, e.g. the image).
    #[allow(clippy::type_complexity)]
    fn with_transform<T: Transform + 'static>(
        self,
        transform: T,
    ) -> MapDataset<Self, Box<dyn Fn(Sample, &mut Generator) -> Result<Sample> + Send + Sync>> {
        self.transform_field(0, transform)
    }

    /// Applies `transform` to field `field` of every sample.
    #[allow(clippy::type_complexity)]
    fn transform_field<T: Transform + 'static>(
        self,
        field: usize,
        transform: T,
    ) -> MapDataset<Self, Box<dyn Fn(Sample, &mut Generator) -> Result<Sample> + Send + Sync>> {
        MapDataset {
            inner: self,
            f: Box::new(move |mut sample: Sample, rng: &mut Generator| {
                let n = sample.len();
                let x = sample.get_mut(field).ok_or_else(|| {
                    Error::Msg(format!("transform: samples have {n} fields, so there is no field {field} to transform"))
                })?;
                *x = transform.apply(x, rng)?;
                Ok(sample)
            }),
        }
    }
}

impl<D: Dataset> DatasetExt for D {}

/// SplitMix64's finaliser: a well-mixed 64-bit function of `x`.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The seed of the generator a loader hands to `get_with` for sample `index` in `epoch`.
pub fn sample_seed(seed: u64, epoch: u64, index: usize) -> u64 {
    mix64(mix64(seed.wrapping_add(epoch)) ^ index as u64)
}

/// The environment variable naming a directory of data sets, one subdirectory each (`mnist/`,
/// `fashion-mnist/`), for programs that are not told where the data is.
pub const DATA_ENV: &str = "TENSORBRAIN_DATA";

/// Where to look for data set `name` (`"mnist"`, `"fashion-mnist"`): `explicit` when given (a
/// program's `--data DIR`), else `$TENSORBRAIN_DATA/<name>` when that variable is set, else
/// `../shared/data/<name>`, where the data sits beside a development checkout of TensorBrain.
/// The loaders' errors for missing files say what to get and where to put it.
pub fn dataset_dir(name: &str, explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    match std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        Some(root) => PathBuf::from(root).join(name),
        None => Path::new("../shared/data").join(name),
    }
}

/// Opens a data file, turning "not found" into an error that says where the data can be had.
pub(crate) fn open_data_file(path: &Path, what: &str, where_to_get: &str) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| Error::Io {
        context: format!("cannot open {what} at {} ({where_to_get})", path.display()),
        source: e,
    })
}
