//! Autoregressive decoding: greedy and beam search over any model that produces next-token
//! logits one step at a time from a state it keeps (an encoder's output, a KV cache), for a
//! batch of sequences at once.

mod beam;

pub use beam::{beam_search, BeamOptions};

use crate::tensor::{DType, Error, Result, Tensor};

/// A model decoded step by step. `State` holds everything per sequence (one row per
/// hypothesis): its cache, the encoder memory it attends to, ...
pub trait IncrementalDecoder {
    type State;

    /// Next-token logits `[rows, vocab]` after feeding `tokens` (`[rows, 1]`, i64), which
    /// extends every row's cache by one position.
    fn step(&self, state: &mut Self::State, tokens: &Tensor) -> Result<Tensor>;

    /// Keeps state rows `indices` (1-D i64), in that order: beam search duplicates and drops
    /// hypotheses through this.
    fn reorder(&self, state: &mut Self::State, indices: &Tensor) -> Result<()>;
}

/// Start and stop rules shared by the searches.
#[derive(Clone, Copy, Debug)]
pub struct SearchOptions {
    /// The token every sequence starts from.
    pub bos: i64,
    /// The token that ends a sequence (not included in the output).
    pub eos: i64,
    /// At most this many tokens are generated per sequence (EOS included).
    pub max_len: usize,
}

/// The most likely next token at every step, for `batch` sequences at once. Returns each
/// sequence's tokens without BOS and EOS.
pub fn greedy_search<M: IncrementalDecoder>(model: &M, state: &mut M::State, batch: usize, opts: &SearchOptions) -> Result<Vec<Vec<i64>>> {
    let mut out = vec![Vec::new(); batch];
    let mut done = vec![false; batch];
    let mut tokens = vec![opts.bos; batch];
    for _ in 0..opts.max_len {
        let logits = model.step(state, &Tensor::from_vec(tokens.clone(), &[batch, 1]))?;
        let next = argmax_rows(&logits, batch)?;
        for (b, &t) in next.iter().enumerate() {
            if done[b] {
                continue;
            }
            if t == opts.eos {
                done[b] = true;
            } else {
                out[b].push(t);
            }
            tokens[b] = t;
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    Ok(out)
}

fn argmax_rows(logits: &Tensor, rows: usize) -> Result<Vec<i64>> {
    if logits.rank() != 2 || logits.shape()[0] != rows {
        return Err(Error::Msg(format!("decoding: the model's step must return logits [{rows}, vocab], got {:?}", logits.shape())));
    }
    Ok(logits.try_argmax(Some(-1), false)?.to_vec::<i64>())
}

/// Log-probabilities `[rows, vocab]` of a step's logits, as f32 rows.
pub(crate) fn log_probs(logits: &Tensor, rows: usize) -> Result<Vec<Vec<f32>>> {
    if logits.rank() != 2 || logits.shape()[0] != rows {
        return Err(Error::Msg(format!("decoding: the model's step must return logits [{rows}, vocab], got {:?}", logits.shape())));
    }
    Ok(logits.try_to_dtype(DType::F32)?.try_log_softmax(-1)?.to_vec2::<f32>())
}
