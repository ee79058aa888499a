//! What a run has done, epoch by epoch, written as a CSV log and a PNG plot.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomically;
use crate::tensor::{Error, Result};

/// One epoch's figures. Evaluation fields are `None` when there was no evaluation set.
///
/// In checkpoints (JSON) every float round-trips bit for bit, non-finite ones included (a NaN
/// mean loss from an f16 epoch with an overflowing batch), so a resumed run logs exactly what
/// an uninterrupted one would.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Counted from 1.
    pub epoch: usize,
    #[serde(with = "json_float")]
    pub train_loss: f64,
    #[serde(with = "json_float::option")]
    pub train_accuracy: Option<f64>,
    #[serde(with = "json_float::option")]
    pub eval_loss: Option<f64>,
    #[serde(with = "json_float::option")]
    pub eval_accuracy: Option<f64>,
    #[serde(with = "json_float::option")]
    pub eval_top_k_accuracy: Option<f64>,
    /// Learning rate (first group) the epoch ran with.
    #[serde(with = "json_float")]
    pub lr: f64,
    #[serde(with = "json_float")]
    pub seconds: f64,
    #[serde(with = "json_float")]
    pub samples_per_second: f64,
    /// Optimizer steps skipped because the scaled gradients overflowed (mixed precision).
    pub skipped_steps: u64,
}

/// Every epoch so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub epochs: Vec<EpochRecord>,
}

const CSV_HEADER: [&str; 10] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "eval_loss",
    "eval_accuracy",
    "eval_top_k_accuracy",
    "lr",
    "seconds",
    "samples_per_second",
    "skipped_steps",
];

impl History {
    pub fn last(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }

    /// The whole log as CSV (empty cells for figures not measured).
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let io = |e: csv::Error| Error::Msg(format!("writing the CSV log: {e}"));
        w.write_record(CSV_HEADER).map_err(io)?;
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for r in &self.epochs {
            w.write_record([
                r.epoch.to_string(),
                r.train_loss.to_string(),
                opt(r.train_accuracy),
                opt(r.eval_loss),
                opt(r.eval_accuracy),
                opt(r.eval_top_k_accuracy),
                r.lr.to_string(),
                format!("{:.3}", r.seconds),
                format!("{:.1}", r.samples_per_second),
                r.skipped_steps.to_string(),
            ])
            .map_err(io)?;
        }
        w.into_inner().map_err(|e| Error::Msg(format!("writing the CSV log: {e}")))
    }

    /// Writes the CSV log (atomically, so a reader never sees half a file), creating its
    /// directory if needed.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        create_parent(path)?;
        write_atomically(path, &self.to_csv()?)
    }

    /// Draws loss and accuracy against epochs into a PNG, creating its directory if needed.
    pub fn write_plot(&self, path: &Path) -> Result<()> {
        create_parent(path)?;
        super::plot::draw(self, path)
    }
}

/// Floats in JSON: numbers when finite (serde_json prints the shortest form that parses back
/// to the same bits, and its `float_roundtrip` feature parses exactly), and the strings `"NaN"`,
/// `"inf"`, `"-inf"` otherwise: JSON has no such numbers, and serde_json would write `null`,
/// which it then refuses to read back as a float.
mod json_float {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    fn to_repr(v: f64) -> Repr {
        if v.is_finite() {
            Repr::Number(v)
        } else {
            Repr::Text(v.to_string())
        }
    }

    fn from_repr<E: serde::de::Error>(r: Repr) -> Result<f64, E> {
        match r {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) => match t.as_str() {
                "NaN" | "inf" | "-inf" => Ok(t.parse().expect("Rust parses its own names of non-finite floats")),
                _ => Err(E::custom(format!("expected a number, \"NaN\", \"inf\" or \"-inf\", found {t:?}"))),
            },
        }
    }

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        to_repr(*v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        from_repr(Repr::deserialize(d)?)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            v.map(to_repr).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            Option::<Repr>::deserialize(d)?.map(from_repr).transpose()
        }
    }
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| Error::Io { context: format!("cannot create directory {}", dir.display()), source: e }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_row_per_epoch_and_blank_unmeasured_cells() {
        let rec = |epoch, acc| EpochRecord {
            epoch,
            train_loss: 0.5,
            train_accuracy: acc,
            eval_loss: None,
            eval_accuracy: None,
            eval_top_k_accuracy: None,
            lr: 0.1,
            seconds: 1.0,
            samples_per_second: 10.0,
            skipped_steps: 0,
        };
        let h = History { epochs: vec![rec(1, Some(0.9)), rec(2, None)] };
        let text = String::from_utf8(h.to_csv().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("epoch,train_loss,train_accuracy,eval_loss"));
        assert_eq!(lines[1], "1,0.5,0.9,,,,0.1,1.000,10.0,0");
        assert_eq!(lines[2], "2,0.5,,,,,0.1,1.000,10.0,0");
    }
}
