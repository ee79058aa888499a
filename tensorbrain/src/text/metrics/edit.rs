//! Word and character error rates as `jiwer` computes them: Levenshtein edits (substitutions,
//! deletions, insertions) summed over the corpus, divided by the reference length.

use super::check_lengths;
use crate::tensor::{Error, Result};

/// The minimum number of substitutions, deletions and insertions turning `a` into `b`.
pub fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(x != y)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn rate<T: PartialEq>(metric: &str, hyps: &[&str], refs: &[&str], units: impl Fn(&str) -> Vec<T>) -> Result<f64> {
    check_lengths(metric, hyps.len(), refs.len())?;
    let (mut edits, mut n) = (0, 0);
    for (h, r) in hyps.iter().zip(refs) {
        let (h, r) = (units(h), units(r));
        edits += levenshtein(&r, &h);
        n += r.len();
    }
    if n == 0 {
        return Err(Error::Msg(format!("{metric}: the references are empty, so the rate is undefined")));
    }
    Ok(edits as f64 / n as f64)
}

/// Word error rate (`jiwer.wer`): words split on whitespace.
pub fn wer(hypotheses: &[&str], references: &[&str]) -> Result<f64> {
    rate("wer", hypotheses, references, |s| s.split_whitespace().map(str::to_string).collect())
}

/// Character error rate (`jiwer.cer`): characters of the stripped text, spaces included.
pub fn cer(hypotheses: &[&str], references: &[&str]) -> Result<f64> {
    rate("cer", hypotheses, references, |s| s.trim().chars().collect())
}
