//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (two zero bytes, a type
//! code, the number of dimensions, then each dimension as a u32) followed by the elements.
//! Files may be gzipped (`.gz`) or raw.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::Split;
use crate::tensor::{Error, Result, Tensor};

/// An IDX array of bytes (type code 0x08, the only one MNIST-style sets use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn corrupt(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{}: {msg}", path.display()))
}

/// Reads a whole file, un-gzipping it when its name ends in `.gz`.
fn read_bytes(path: &Path, what: &str, where_to_get: &str) -> Result<Vec<u8>> {
    let file = super::open_data_file(path, what, where_to_get)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(std::io::BufReader::new(file)).read_to_end(&mut bytes).map_err(|e| Error::Io {
            context: format!("{} is not a readable gzip file (corrupt or truncated)", path.display()),
            source: e,
        })?;
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::Io { context: format!("cannot read {}", path.display()), source: e })?;
    }
    Ok(bytes)
}

/// Parses IDX bytes read from `path` (named in errors). `expected_rank` checks the number of
/// dimensions when given.
pub fn parse(bytes: &[u8], path: &Path, expected_rank: Option<usize>) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(corrupt(path, format!("is {} bytes long, too short for an IDX header (4 bytes of magic number)", bytes.len())));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(corrupt(path, format!("bad magic number {magic:#010x}: an IDX file starts with two zero bytes (is it an IDX file? a gzipped file whose name lacks .gz?)")));
    }
    if bytes[2] != 0x08 {
        return Err(corrupt(path, format!("IDX type code {:#04x} (magic {magic:#010x}) is not supported; only unsigned bytes (0x08) are", bytes[2])));
    }
    let rank = bytes[3] as usize;
    if let Some(r) = expected_rank {
        if rank != r {
            return Err(corrupt(
                path,
                format!("magic number {magic:#010x} says {rank} dimensions, expected {r} (magic {:#010x})", 0x0800 + r),
            ));
        }
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(corrupt(path, format!("truncated header: {rank} dimensions need {header} header bytes but the file has {}", bytes.len())));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let numel = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(numel) = numel else {
        return Err(corrupt(path, format!("dimensions {dims:?} overflow")));
    };
    let body = bytes.len() - header;
    if body < numel {
        return Err(corrupt(
            path,
            format!("truncated: the header says dimensions {dims:?} ({numel} bytes of data) but only {body} bytes follow it"),
        ));
    }
    if body > numel {
        return Err(corrupt(
            path,
            format!("{} unexpected trailing bytes after the {numel} bytes of data that dimensions {dims:?} call for", body - numel),
        ));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// Reads an IDX file (gzipped if its name ends in `.gz`).
pub fn read(path: impl AsRef<Path>, expected_rank: Option<usize>) -> Result<IdxArray> {
    let path = path.as_ref();
    let bytes = read_bytes(path, "an IDX file", "check the path")?;
    parse(&bytes, path, expected_rank)
}

/// A set stored as the four MNIST-style IDX files.
pub(crate) struct IdxSet {
    /// "MNIST", "Fashion-MNIST".
    pub name: &'static str,
    /// The set's directory under `$TENSORBRAIN_DATA`: "mnist", "fashion-mnist".
    pub dir_name: &'static str,
    /// Where users can get the files.
    pub where_to_get: &'static str,
    /// The number of classes (labels must be below it).
    pub classes: u8,
    /// Training images and labels, then test images and labels.
    pub files: [IdxFile; 4],
}

/// One file of an [`IdxSet`] and its checksums.
pub(crate) struct IdxFile {
    /// The canonical name, without `.gz`.
    pub name: &'static str,
    /// SHA-256 of the uncompressed file: the same whoever gzipped it.
    pub sha256: &'static str,
    /// SHA-256 of the gzipped copy TensorBrain's tests and benchmarks read.
    pub gz_sha256: &'static str,
}

impl IdxSet {
    /// `dir/name` or `dir/name.gz`, whichever exists (raw first).
    fn find(&self, dir: &Path, name: &str, what: &str) -> Result<PathBuf> {
        let raw = dir.join(name);
        let gz = dir.join(format!("{name}.gz"));
        if raw.is_file() {
            return Ok(raw);
        }
        if gz.is_file() {
            return Ok(gz);
        }
        let missing = if dir.is_dir() {
            format!("neither {name} nor {name}.gz is there")
        } else {
            "the directory does not exist".to_string()
        };
        Err(Error::Msg(format!("cannot find the {} {what} in {}: {missing}\n{}", self.name, dir.display(), self.how_to_get())))
    }

    /// What the set's files are (names and SHA-256s), where to get them and where to put them.
    fn how_to_get(&self) -> String {
        let mut s = format!(
            "{} is four IDX files, gzipped or not. Their SHA-256s uncompressed (any copy: check with \
             `gunzip -c FILE.gz | sha256sum`) and as gzipped in the copies TensorBrain is tested with:\n",
            self.name
        );
        for f in &self.files {
            s += &format!("  {:<27} {}  {}.gz {}\n", f.name, f.sha256, f.name, f.gz_sha256);
        }
        s += &format!(
            "Get them from {}. Put them in one directory and pass that directory to the loader (the mnist example: \
             --data DIR), or set {} to a directory that holds them in {}/.",
            self.where_to_get,
            super::DATA_ENV,
            self.dir_name
        );
        s
    }

    /// Images `[N, 1, rows, cols]` as u8 and labels `[N]` as i64.
    pub fn load_raw(&self, dir: &Path, split: Split) -> Result<(Tensor, Tensor)> {
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        let split_name = match split {
            Split::Train => "training",
            Split::Test => "test",
        };
        let img_path = self.find(dir, &format!("{prefix}-images-idx3-ubyte"), &format!("{split_name} images"))?;
        let lbl_path = self.find(dir, &format!("{prefix}-labels-idx1-ubyte"), &format!("{split_name} labels"))?;
        let images = parse(&read_bytes(&img_path, "images", self.where_to_get)?, &img_path, Some(3))?;
        let labels = parse(&read_bytes(&lbl_path, "labels", self.where_to_get)?, &lbl_path, Some(1))?;
        let (n, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
        if labels.dims[0] != n {
            return Err(Error::Msg(format!(
                "{} has {n} images but {} has {} labels",
                img_path.display(),
                lbl_path.display(),
                labels.dims[0]
            )));
        }
        if let Some((i, &l)) = labels.data.iter().enumerate().find(|(_, &l)| l >= self.classes) {
            return Err(corrupt(&lbl_path, format!("item {i} has label {l}, outside 0..{} ({} has {} classes)", self.classes, self.name, self.classes)));
        }
        let labels: Vec<i64> = labels.data.iter().map(|&l| l as i64).collect();
        Ok((Tensor::from_vec(images.data, &[n, 1, rows, cols]), Tensor::from_vec(labels, &[n])))
    }

    /// Images `[N, 1, rows, cols]` as f32 in [0, 1] and labels `[N]` as i64.
    pub fn load(&self, dir: &Path, split: Split) -> Result<(Tensor, Tensor)> {
        let (images, labels) = self.load_raw(dir, split)?;
        let shape = images.shape().to_vec();
        let pixels: Vec<f32> = images.with_contiguous::<u8, _>(|s| s.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect())?;
        Ok((Tensor::from_vec(pixels, &shape), labels))
    }
}
