//! chrF (Popović 2015) as `sacrebleu.corpus_chrf` computes it by default: character n-grams
//! of orders 1 to 6 with whitespace removed, counts summed over the corpus, recall weighted by
//! beta = 2, averaged over the orders that occur.

use std::collections::HashMap;

use super::check_lengths;
use crate::tensor::Result;

const CHAR_ORDER: usize = 6;
const BETA: f64 = 2.0;

fn char_ngrams(chars: &[char], n: usize) -> HashMap<&[char], usize> {
    let mut counts = HashMap::new();
    if chars.len() >= n {
        for w in chars.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// Corpus chrF (0-100) of `hypotheses` against one reference each.
pub fn corpus_chrf(hypotheses: &[&str], references: &[&str]) -> Result<f64> {
    check_lengths("corpus_chrf", hypotheses.len(), references.len())?;
    // [hyp, ref, match] counts per order.
    let mut stats = [[0usize; 3]; CHAR_ORDER];
    for (h, r) in hypotheses.iter().zip(references) {
        let h: Vec<char> = h.split_whitespace().flat_map(str::chars).collect();
        let r: Vec<char> = r.split_whitespace().flat_map(str::chars).collect();
        for n in 1..=CHAR_ORDER {
            let (hc, rc) = (char_ngrams(&h, n), char_ngrams(&r, n));
            let hyp_count: usize = hc.values().sum();
            let matched: usize = hc.iter().map(|(g, &c)| c.min(rc.get(g).copied().unwrap_or(0))).sum();
            // sacrebleu counts no hypothesis n-grams of an order the reference lacks.
            stats[n - 1][0] += if rc.is_empty() { 0 } else { hyp_count };
            stats[n - 1][1] += rc.values().sum::<usize>();
            stats[n - 1][2] += matched;
        }
    }
    let factor = BETA * BETA;
    let (mut avg_prec, mut avg_rec, mut orders) = (0.0, 0.0, 0);
    for [n_hyp, n_ref, n_match] in stats {
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            orders += 1;
        }
    }
    if orders == 0 {
        return Ok(0.0);
    }
    let (p, r) = (avg_prec / orders as f64, avg_rec / orders as f64);
    if p + r == 0.0 {
        return Ok(0.0);
    }
    Ok(100.0 * (1.0 + factor) * p * r / (factor * p + r))
}
