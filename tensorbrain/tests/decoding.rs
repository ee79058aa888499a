//! Greedy and beam search on a Markov-chain "model" whose best sequences are known by hand,
//! batched against one-at-a-time, and on a transformer decoder with a KV cache (beam size 1
//! is greedy; the cache gives the same tokens as re-running the whole prefix).

use tensorbrain::decoding::{beam_search, greedy_search, BeamOptions, IncrementalDecoder, SearchOptions};
use tensorbrain::nn::attention::AttentionMasks;
use tensorbrain::nn::runtime::{DynEmbedding, DynLinear};
use tensorbrain::nn::transformer::{TransformerConfig, TransformerDecoder};
use tensorbrain::nn::ModuleExt;
use tensorbrain::{DType, Generator, Result, Tensor};

const BOS: i64 = 0;
const EOS: i64 = 1;
const A: i64 = 2;
const B: i64 = 3;

/// Next-token probabilities depend on the last token only; each state row is (table, history).
struct Markov {
    tables: Vec<[[f64; 4]; 4]>,
}

impl IncrementalDecoder for Markov {
    type State = Vec<(usize, Vec<i64>)>;

    fn step(&self, state: &mut Self::State, tokens: &Tensor) -> Result<Tensor> {
        let toks = tokens.to_vec::<i64>();
        let mut logits = Vec::new();
        for ((table, hist), t) in state.iter_mut().zip(toks) {
            hist.push(t);
            logits.extend(self.tables[*table][t as usize].iter().map(|p| p.max(1e-12).ln()));
        }
        Ok(Tensor::from_vec(logits, &[state.len(), 4]))
    }

    fn reorder(&self, state: &mut Self::State, indices: &Tensor) -> Result<()> {
        *state = indices.to_vec::<i64>().iter().map(|&i| state[i as usize].clone()).collect();
        Ok(())
    }
}

/// From BOS, `a` is likelier than `b`, but `b` is almost always followed by EOS while `a`
/// rambles on: greedy never stops, beam search finds `[b]`.
fn rambling() -> [[f64; 4]; 4] {
    let mut t = [[0.0; 4]; 4];
    t[BOS as usize] = [0.0, 0.0, 0.6, 0.4];
    t[A as usize] = [0.0, 0.3, 0.4, 0.3];
    t[B as usize] = [0.0, 0.9, 0.05, 0.05];
    t
}

/// Always `b` then EOS.
fn terse() -> [[f64; 4]; 4] {
    let mut t = [[0.0; 4]; 4];
    t[BOS as usize] = [0.0, 0.1, 0.1, 0.8];
    t[A as usize] = [0.0, 0.8, 0.1, 0.1];
    t[B as usize] = [0.0, 0.8, 0.1, 0.1];
    t
}

fn search(max_len: usize) -> SearchOptions {
    SearchOptions { bos: BOS, eos: EOS, max_len }
}

#[test]
fn greedy_follows_the_argmax_and_stops_at_max_len_or_eos() {
    let m = Markov { tables: vec![rambling(), terse()] };
    let mut state = vec![(0, vec![]), (1, vec![])];
    let out = greedy_search(&m, &mut state, 2, &search(5)).unwrap();
    assert_eq!(out, vec![vec![A; 5], vec![B]]);
}

#[test]
fn beam_search_beats_greedy_and_the_length_penalty_lengthens() {
    let m = Markov { tables: vec![rambling()] };
    let run = |beam_size, length_penalty| {
        let opts = BeamOptions { search: search(6), beam_size, length_penalty };
        beam_search(&m, &mut vec![(0, vec![])], 1, &opts).unwrap().remove(0)
    };
    // [b, EOS] has probability 0.36; the best path through `a` ([a, EOS]) only 0.18.
    assert_eq!(run(2, 0.0), vec![B]);
    assert_eq!(run(1, 0.0), vec![A; 6], "beam size 1 is greedy");
    // Dividing by len^2 rewards length: [a, a, a, a, b, EOS] (p = 0.0104, 6 tokens) beats
    // [b, EOS] (0.36 over 2) and the unfinished [a; 6] (0.0061 over 6).
    assert_eq!(run(3, 2.0), vec![A, A, A, A, B]);
}

#[test]
fn batched_beam_search_equals_one_sequence_at_a_time() {
    let m = Markov { tables: vec![rambling(), terse(), rambling()] };
    let opts = BeamOptions { search: search(6), beam_size: 3, length_penalty: 1.0 };
    let mut state: Vec<(usize, Vec<i64>)> = (0..3).map(|t| (t, vec![])).collect();
    let batched = beam_search(&m, &mut state, 3, &opts).unwrap();
    for (i, want) in batched.iter().enumerate() {
        assert_eq!(&beam_search(&m, &mut vec![(i, vec![])], 1, &opts).unwrap()[0], want);
    }
    // Every state row holds a real history: BOS then the tokens of its hypothesis's beam.
    assert!(state.iter().all(|(_, h)| h[0] == BOS));
}

/// A tiny decoder-only language model over a 7-token vocabulary, with its KV cache as state.
struct TinyLm {
    embed: DynEmbedding,
    decoder: TransformerDecoder,
    head: DynLinear,
    memory: Tensor,
}

struct LmState {
    cache: tensorbrain::nn::attention::KvCache,
    memory_kv: Vec<(Tensor, Tensor)>,
    /// Every token fed so far, to compare against re-running the prefix without a cache.
    fed: Vec<Vec<i64>>,
}

impl TinyLm {
    fn logits_without_cache(&self, prefix: &[i64]) -> Tensor {
        let x = self.embed.forward(&Tensor::from_vec(prefix.to_vec(), &[1, prefix.len()])).unwrap();
        let h = self.decoder.forward(&x, &self.memory, &AttentionMasks::causal(), &AttentionMasks::none()).unwrap();
        self.head.forward(&h.narrow(1, prefix.len() - 1, 1)).unwrap().reshape(&[1, -1])
    }
}

impl IncrementalDecoder for TinyLm {
    type State = LmState;

    fn step(&self, s: &mut LmState, tokens: &Tensor) -> Result<Tensor> {
        for (f, t) in s.fed.iter_mut().zip(tokens.to_vec::<i64>()) {
            f.push(t);
        }
        let x = self.embed.forward(tokens)?;
        let h = self.decoder.forward_cached(&x, &s.memory_kv, &mut s.cache, &AttentionMasks::causal(), &AttentionMasks::none())?;
        self.head.forward(&h)?.try_reshape(&[tokens.shape()[0] as isize, -1])
    }

    fn reorder(&self, s: &mut LmState, indices: &Tensor) -> Result<()> {
        s.cache.reorder(indices)?;
        s.memory_kv = s.memory_kv.iter().map(|(k, v)| Ok((k.try_index_select(0, indices)?, v.try_index_select(0, indices)?))).collect::<Result<_>>()?;
        s.fed = indices.to_vec::<i64>().iter().map(|&i| s.fed[i as usize].clone()).collect();
        Ok(())
    }
}

#[test]
fn transformer_decoding_with_a_cache() {
    tensorbrain::manual_seed(0);
    let mut gen = Generator::new(3);
    let cfg = TransformerConfig::new(16, 2).dim_feedforward(32).dropout(0.0);
    let mut lm = TinyLm {
        embed: DynEmbedding::new(7, 16, &mut gen),
        decoder: TransformerDecoder::new(&cfg, 2, false, &mut gen).unwrap(),
        head: DynLinear::new(16, 7, true, &mut gen),
        memory: Tensor::randn(&[1, 3, 16], DType::F32),
    };
    lm.decoder.eval();
    let new_state = |lm: &TinyLm| LmState { cache: lm.decoder.new_cache(), memory_kv: lm.decoder.memory_kv(&lm.memory).unwrap(), fed: vec![vec![]] };
    let opts = search(8);
    let greedy = greedy_search(&lm, &mut new_state(&lm), 1, &opts).unwrap();
    let beam1 = beam_search(&lm, &mut new_state(&lm), 1, &BeamOptions { search: opts, beam_size: 1, length_penalty: 1.0 }).unwrap();
    assert_eq!(greedy, beam1);
    // The cached step's logits equal the full forward over the prefix it was fed.
    let mut s = new_state(&lm);
    let mut token = BOS;
    for _ in 0..4 {
        let cached = lm.step(&mut s, &Tensor::from_vec(vec![token], &[1, 1])).unwrap();
        let full = lm.logits_without_cache(&s.fed[0]);
        let diff = cached.sub(&full).abs().max(&[], false).item::<f32>();
        assert!(diff < 1e-5, "cached logits differ by {diff}");
        token = cached.argmax(Some(-1), false).to_vec::<i64>()[0];
    }
    assert_eq!(s.cache.len(), 4);
    let wide = beam_search(&lm, &mut new_state(&lm), 1, &BeamOptions { search: opts, beam_size: 4, length_penalty: 1.0 }).unwrap();
    assert!(wide[0].len() <= 8);
}
