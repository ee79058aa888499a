//! CIFAR-10, binary version: 60,000 32x32 colour images of 10 classes in `data_batch_1.bin`
//! .. `data_batch_5.bin` (train, 10,000 each) and `test_batch.bin`. Each record is one label
//! byte then 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, each row-major).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{open_data_file, Split};
use crate::tensor::{Error, Result, Tensor};

const WHERE: &str = "CIFAR-10 (binary version) is at https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz; \
                     pass the directory cifar-10-batches-bin that it unpacks to";

/// The bytes of one record: a label and a 3x32x32 image.
pub const RECORD_BYTES: usize = 1 + 3 * 32 * 32;

/// The class names, indexed by label.
pub const CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The batch files of a split.
pub fn files(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    }
}

/// `dir` itself, or `dir/cifar-10-batches-bin` when the files are there (the archive's layout).
fn resolve_dir(dir: &Path, first_file: &str) -> PathBuf {
    let nested = dir.join("cifar-10-batches-bin");
    if !dir.join(first_file).exists() && nested.join(first_file).exists() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Appends the records of one batch file to `pixels` (u8) and `labels`.
fn read_file_into(path: &Path, pixels: &mut Vec<u8>, labels: &mut Vec<i64>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        return Err(Error::Msg(format!("cannot find CIFAR-10 at {}: the directory does not exist ({WHERE})", parent.display())));
    }
    let mut bytes = Vec::new();
    open_data_file(path, "a CIFAR-10 batch file", WHERE)?
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Io { context: format!("cannot read {}", path.display()), source: e })?;
    if bytes.is_empty() {
        return Err(Error::Msg(format!("{}: the file is empty (expected {RECORD_BYTES}-byte records)", path.display())));
    }
    if bytes.len() % RECORD_BYTES != 0 {
        return Err(Error::Msg(format!(
            "{}: {} bytes is not a whole number of {RECORD_BYTES}-byte records (1 label byte + 3072 pixel bytes): \
             {} whole records and {} bytes left over (truncated or not a CIFAR-10 binary batch?)",
            path.display(),
            bytes.len(),
            bytes.len() / RECORD_BYTES,
            bytes.len() % RECORD_BYTES
        )));
    }
    pixels.reserve(bytes.len());
    labels.reserve(bytes.len() / RECORD_BYTES);
    for (i, rec) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if rec[0] >= 10 {
            return Err(Error::Msg(format!(
                "{}: record {i} has label {}, outside 0..10 (not a CIFAR-10 file? CIFAR-100's records are 3074 bytes)",
                path.display(),
                rec[0]
            )));
        }
        labels.push(rec[0] as i64);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(())
}

fn to_tensors(pixels: Vec<u8>, labels: Vec<i64>, scale: bool) -> (Tensor, Tensor) {
    let n = labels.len();
    let images = if scale {
        Tensor::from_vec(pixels.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect::<Vec<f32>>(), &[n, 3, 32, 32])
    } else {
        Tensor::from_vec(pixels, &[n, 3, 32, 32])
    };
    (images, Tensor::from_vec(labels, &[n]))
}

fn load_impl(dir: &Path, split: Split, scale: bool) -> Result<(Tensor, Tensor)> {
    let names = files(split);
    let dir = resolve_dir(dir, &names[0]);
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for name in &names {
        read_file_into(&dir.join(name), &mut pixels, &mut labels)?;
    }
    Ok(to_tensors(pixels, labels, scale))
}

/// Loads a split from `dir` (or `dir/cifar-10-batches-bin`): images f32 `[N, 3, 32, 32]`
/// scaled to [0, 1], labels i64 `[N]`.
pub fn load(dir: impl AsRef<Path>, split: Split) -> Result<(Tensor, Tensor)> {
    load_impl(dir.as_ref(), split, true)
}

/// Like [`load`] with the pixels left as u8 (0..=255).
pub fn load_raw(dir: impl AsRef<Path>, split: Split) -> Result<(Tensor, Tensor)> {
    load_impl(dir.as_ref(), split, false)
}

/// Loads one batch file: images f32 `[N, 3, 32, 32]` in [0, 1], labels i64 `[N]`.
pub fn load_file(path: impl AsRef<Path>) -> Result<(Tensor, Tensor)> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    read_file_into(path.as_ref(), &mut pixels, &mut labels)?;
    Ok(to_tensors(pixels, labels, true))
}
