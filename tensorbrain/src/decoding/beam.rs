//! Beam search with a length penalty, batched: every sequence keeps `beam_size` hypotheses as
//! rows of one state, reordered after each step.

use super::{log_probs, IncrementalDecoder, SearchOptions};
use crate::tensor::{Error, Result, Tensor};

/// Beam width and length normalisation on top of [`SearchOptions`].
#[derive(Clone, Copy, Debug)]
pub struct BeamOptions {
    pub search: SearchOptions,
    pub beam_size: usize,
    /// Finished hypotheses are ranked by `sum(log p) / len^length_penalty` (`len` counts the
    /// generated tokens with EOS), as Hugging Face's `length_penalty`: 0 ranks by total
    /// log-probability (favouring short outputs), 1 by the mean per token.
    pub length_penalty: f64,
}

/// A hypothesis still being extended.
#[derive(Clone, Debug)]
struct Beam {
    tokens: Vec<i64>,
    score: f64,
}

/// The finished hypotheses of one sequence.
#[derive(Default)]
struct Finished {
    hyps: Vec<(f64, Vec<i64>)>,
}

impl Finished {
    fn add(&mut self, tokens: Vec<i64>, normalised: f64, keep: usize) {
        self.hyps.push((normalised, tokens));
        self.hyps.sort_by(|a, b| b.0.total_cmp(&a.0));
        self.hyps.truncate(keep);
    }

    fn worst(&self) -> f64 {
        self.hyps.last().map_or(f64::NEG_INFINITY, |h| h.0)
    }
}

/// Beam search for `batch` sequences whose state has one row per sequence. Returns the best
/// hypothesis of each (tokens without BOS and EOS). With `beam_size` 1 it is greedy search.
pub fn beam_search<M: IncrementalDecoder>(model: &M, state: &mut M::State, batch: usize, opts: &BeamOptions) -> Result<Vec<Vec<i64>>> {
    let k = opts.beam_size;
    if k == 0 {
        return Err(Error::Msg("beam_search: beam_size must be at least 1".into()));
    }
    let SearchOptions { bos, eos, max_len } = opts.search;
    let penalty = |len: usize| (len.max(1) as f64).powf(opts.length_penalty);
    // Row b*k + i is beam i of sequence b; all start as copies of the sequence's row.
    let expand: Vec<i64> = (0..batch * k).map(|r| (r / k) as i64).collect();
    model.reorder(state, &Tensor::from_vec(expand, &[batch * k]))?;
    // Only beam 0 is live at first, so the k copies do not fill the beam with duplicates.
    let mut beams: Vec<Vec<Beam>> = (0..batch).map(|_| vec![Beam { tokens: Vec::new(), score: 0.0 }]).collect();
    let mut finished: Vec<Finished> = (0..batch).map(|_| Finished::default()).collect();
    let mut done = vec![false; batch];
    let mut last = vec![bos; batch * k];

    for step in 0..max_len {
        let logp = log_probs(&model.step(state, &Tensor::from_vec(last.clone(), &[batch * k, 1]))?, batch * k)?;
        let mut source = Vec::with_capacity(batch * k);
        for b in 0..batch {
            if done[b] {
                // Keep the rows' shape; their results are ignored.
                source.extend((0..k).map(|i| (b * k + i) as i64));
                (0..k).for_each(|i| last[b * k + i] = eos);
                continue;
            }
            // The best 2k extensions of the live beams: enough to refill k after EOS ones.
            let mut cand: Vec<(f64, usize, i64)> = Vec::new();
            for (i, beam) in beams[b].iter().enumerate() {
                for (t, &lp) in logp[b * k + i].iter().enumerate() {
                    cand.push((beam.score + lp as f64, i, t as i64));
                }
            }
            let keep = (2 * k).min(cand.len());
            if keep < cand.len() {
                cand.select_nth_unstable_by(keep, |a, c| c.0.total_cmp(&a.0));
                cand.truncate(keep);
            }
            cand.sort_by(|a, c| c.0.total_cmp(&a.0));
            let mut next = Vec::with_capacity(k);
            for (score, i, t) in cand {
                let mut tokens = beams[b][i].tokens.clone();
                if t == eos {
                    finished[b].add(tokens.clone(), score / penalty(tokens.len() + 1), k);
                    continue;
                }
                tokens.push(t);
                next.push((Beam { tokens, score }, i));
                if next.len() == k {
                    break;
                }
            }
            // Done when k hypotheses are finished and no live one can beat the worst of them
            // at its current length (Hugging Face's default stopping rule).
            let best_live = next.first().map_or(f64::NEG_INFINITY, |(bm, _)| bm.score / penalty(step + 1));
            if next.is_empty() || (finished[b].hyps.len() >= k && best_live <= finished[b].worst()) {
                done[b] = true;
            }
            for i in 0..k {
                let (src, tok) = match next.get(i) {
                    Some((bm, from)) => (b * k + from, *bm.tokens.last().expect("extended")),
                    None => (b * k, eos),
                };
                source.push(src as i64);
                last[b * k + i] = tok;
            }
            beams[b] = next.into_iter().map(|(bm, _)| bm).collect();
        }
        if done.iter().all(|&d| d) {
            break;
        }
        model.reorder(state, &Tensor::from_vec(source, &[batch * k]))?;
    }
    // Sequences that hit max_len: their live beams count as finished.
    Ok((0..batch)
        .map(|b| {
            let mut f = std::mem::take(&mut finished[b]);
            if !done[b] {
                for bm in &beams[b] {
                    f.add(bm.tokens.clone(), bm.score / penalty(bm.tokens.len()), k);
                }
            }
            f.hyps.into_iter().next().map(|h| h.1).unwrap_or_default()
        })
        .collect())
}
