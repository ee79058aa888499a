//! scikit-learn's digits (UCI optical recognition of handwritten digits): 1,797 8x8 images
//! with pixel values 0..=16, stored as gzipped CSV rows of 64 pixels then the label.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::open_data_file;
use crate::tensor::{Error, Result, Tensor};

const WHERE: &str = "it ships with scikit-learn as sklearn/datasets/data/digits.csv.gz";

/// Loads `digits.csv.gz`: images as f32 `[N, 64]` scaled to [0, 1], labels as i64 `[N]`.
pub fn load(path: impl AsRef<Path>) -> Result<(Tensor, Tensor)> {
    let path = path.as_ref();
    let mut text = String::new();
    GzDecoder::new(open_data_file(path, "the digits data", WHERE)?)
        .read_to_string(&mut text)
        .map_err(|e| Error::Io { context: format!("{} is not a readable gzipped CSV", path.display()), source: e })?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (line_no, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let bad = |msg: String| Error::Msg(format!("{} line {}: {msg}", path.display(), line_no + 1));
        if fields.len() != 65 {
            return Err(bad(format!("expected 65 comma-separated values (64 pixels and a label), found {}", fields.len())));
        }
        for f in &fields[..64] {
            let v: f32 = f.trim().parse().map_err(|_| bad(format!("pixel {f:?} is not a number")))?;
            pixels.push(v / 16.0);
        }
        let label: f64 = fields[64].trim().parse().map_err(|_| bad(format!("label {:?} is not a number", fields[64])))?;
        if !(0.0..10.0).contains(&label) {
            return Err(bad(format!("label {label} is outside 0..=9")));
        }
        labels.push(label as i64);
    }
    let n = labels.len();
    Ok((Tensor::from_vec(pixels, &[n, 64]), Tensor::from_vec(labels, &[n])))
}
