//! Running metrics over an epoch: mean loss, accuracy and top-k accuracy.

use crate::autograd::no_grad;
use crate::tensor::{Error, Result, Tensor};

/// Sums kept in f64 so that long epochs do not drift.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    loss_sum: f64,
    samples: usize,
    correct: usize,
    correct_top_k: usize,
    scored: usize,
    top_k: usize,
}

impl Metrics {
    /// `top_k` of 0 or 1 turns top-k accuracy off.
    pub fn new(top_k: usize) -> Metrics {
        Metrics { top_k, ..Metrics::default() }
    }

    /// Adds a batch's mean loss, weighted by its size.
    pub fn add_loss(&mut self, mean_loss: f64, batch: usize) {
        self.loss_sum += mean_loss * batch as f64;
        self.samples += batch;
    }

    /// Scores a batch of class scores `[N, C]` against labels `[N]`.
    pub fn add_predictions(&mut self, logits: &Tensor, labels: &Tensor) -> Result<()> {
        let (correct, top_k) = no_grad(|| count_correct(logits, labels, self.top_k))?;
        self.correct += correct;
        self.correct_top_k += top_k;
        self.scored += labels.numel();
        Ok(())
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }

    /// Fraction of scored samples whose top class is the label, if any were scored.
    pub fn accuracy(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.correct as f64 / self.scored as f64)
    }

    /// Fraction whose label is among the `top_k` highest scores, if top-k is on.
    pub fn top_k_accuracy(&self) -> Option<f64> {
        (self.scored > 0 && self.top_k > 1).then(|| self.correct_top_k as f64 / self.scored as f64)
    }
}

/// (top-1 hits, top-k hits) of `logits: [N, C]` against `labels: [N]`.
pub fn count_correct(logits: &Tensor, labels: &Tensor, top_k: usize) -> Result<(usize, usize)> {
    let [n, c] = logits.shape() else {
        return Err(Error::Msg(format!("accuracy: expected logits [N, C], got {:?}", logits.shape())));
    };
    if labels.shape() != [*n] {
        return Err(Error::Msg(format!("accuracy: logits {:?} need labels [{n}], got {:?}", logits.shape(), labels.shape())));
    }
    let scores = logits.try_to_dtype(crate::DType::F32)?.to_vec::<f32>();
    let labels = labels.try_to_dtype(crate::DType::I64)?.to_vec::<i64>();
    let (mut top1, mut topk) = (0, 0);
    for (row, &label) in scores.chunks(*c).zip(&labels) {
        if label < 0 || label as usize >= *c {
            continue;
        }
        let target = row[label as usize];
        // A NaN score is never a correct prediction: it says nothing about the classes (and
        // would compare neither higher nor lower than anything, so it would rank first).
        if target.is_nan() {
            continue;
        }
        // The label's rank in argmax's order: higher scores first, ties by class index, and a
        // NaN anywhere outranks every number (torch.argmax picks NaN).
        let outranks = |(j, &v): &(usize, &f32)| v.is_nan() || v > target || (v == target && *j < label as usize);
        let higher = row.iter().enumerate().filter(outranks).count();
        top1 += (higher == 0) as usize;
        topk += (higher < top_k.max(1)) as usize;
    }
    Ok((top1, topk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_top1_and_topk() {
        let logits = Tensor::from_vec(vec![0.1f32, 0.7, 0.2, 0.5, 0.3, 0.2, 0.2, 0.3, 0.5], &[3, 3]);
        let labels = Tensor::from_vec(vec![1i64, 1, 0], &[3]);
        // Row 0: label 1 is top. Row 1: label 1 is second. Row 2: label 0 is last.
        assert_eq!(count_correct(&logits, &labels, 2).unwrap(), (1, 2));
        let mut m = Metrics::new(2);
        m.add_predictions(&logits, &labels).unwrap();
        m.add_loss(2.0, 3);
        m.add_loss(1.0, 1);
        assert_eq!(m.accuracy(), Some(1.0 / 3.0));
        assert_eq!(m.top_k_accuracy(), Some(2.0 / 3.0));
        assert!((m.mean_loss() - 7.0 / 4.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_mismatched_labels() {
        let logits = Tensor::zeros(&[4, 3], crate::DType::F32);
        let err = count_correct(&logits, &Tensor::zeros(&[3], crate::DType::I64), 1).unwrap_err();
        assert!(err.to_string().contains("labels [4]"), "{err}");
    }
}
