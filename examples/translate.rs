//! English→Italian translation with a transformer encoder-decoder, trained from scratch on the
//! Debian gettext catalogue pairs in `../shared/data/en-it` (see `../shared/data/README.md`).
//!
//! ```sh
//! cargo run --release --example translate                      # multi-head attention, sinusoidal positions
//! cargo run --release --example translate -- --attention mla   # latent attention + RoPE in self-attention
//! cargo run --release --example translate -- --minutes 25      # stop training after 25 minutes
//! python3 benches/translate_check.py runs/translate-mha        # sacrebleu on the same output
//! ```
//!
//! A joint byte-level BPE is trained on the training split, the model (pre-norm, tied
//! embeddings) with label-smoothed cross-entropy, AdamW and linear warm-up then cosine decay.
//! Each epoch prints a line, shows a progress bar, writes `runs/translate-<attn>.csv` and
//! `.png` (loss and next-token accuracy curves) and a checkpoint (`model.safetensors`, PyTorch
//! names). At the end the test split is translated with beam search and scored (BLEU and chrF
//! as sacrebleu, CER and WER as jiwer); the report names the KV cache size per token.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tensorbrain::decoding::{beam_search, BeamOptions, IncrementalDecoder, SearchOptions};
use tensorbrain::nn::attention::{AttentionMasks, KvCache, MlaConfig, SinusoidalPositionalEncoding};
use tensorbrain::nn::runtime::DynEmbedding;
use tensorbrain::nn::transformer::{Activation, TransformerConfig, TransformerDecoder, TransformerEncoder};
use tensorbrain::nn::{join, CrossEntropyLoss, Module, ModuleExt};
use tensorbrain::optim::lr_scheduler::{LinearWarmupCosine, LrScheduler};
use tensorbrain::optim::{AdamW, AdamWOptions, Optimizer};
use tensorbrain::text::metrics::{cer, corpus_bleu, corpus_chrf, wer};
use tensorbrain::text::{BpeOptions, Tokenizer};
use tensorbrain::train::{EpochRecord, History};
use tensorbrain::{Generator, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Attn {
    Mha,
    Mla,
}

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "../shared/data/en-it")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "mha")]
    attention: Attn,
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    /// Stop training after this many minutes (the schedule still spans --epochs).
    #[arg(long)]
    minutes: Option<f64>,
    #[arg(long, default_value_t = 192)]
    d_model: usize,
    #[arg(long, default_value_t = 4)]
    heads: usize,
    #[arg(long, default_value_t = 3)]
    layers: usize,
    #[arg(long, default_value_t = 768)]
    ff: usize,
    #[arg(long, default_value_t = 6000)]
    vocab: usize,
    /// Sentence pairs per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 600)]
    warmup: usize,
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Pairs with more tokens on either side are skipped in training.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    #[arg(long, default_value_t = 4)]
    beam: usize,
    #[arg(long, default_value_t = 1.0)]
    length_penalty: f64,
    /// Evaluate on this many test pairs (0: all).
    #[arg(long, default_value_t = 0)]
    test_limit: usize,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long)]
    out: Option<PathBuf>,
}

const PAD: i64 = 0;
const BOS: i64 = 1;
const EOS: i64 = 2;

fn read_pairs(path: &Path) -> Result<Vec<(String, String)>> {
    let file = std::fs::File::open(path).map_err(|e| tensorbrain::Error::Io { context: format!("opening {}", path.display()), source: e })?;
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut pairs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| tensorbrain::Error::Io { context: format!("reading {}", path.display()), source: e })?;
        if i == 0 {
            continue; // header: en it source
        }
        let mut cols = line.split('\t');
        if let (Some(en), Some(it)) = (cols.next(), cols.next()) {
            pairs.push((en.to_string(), it.to_string()));
        }
    }
    Ok(pairs)
}

/// Embedding (shared by both languages and the output layer), encoder and decoder.
struct Translator {
    embed: DynEmbedding,
    encoder: TransformerEncoder,
    decoder: TransformerDecoder,
    /// Sinusoidal positions for multi-head attention; latent attention uses RoPE instead.
    positions: Option<SinusoidalPositionalEncoding>,
    scale: f64,
}

impl Translator {
    fn new(args: &Args, vocab: usize, gen: &mut Generator) -> Result<Self> {
        let mut cfg = TransformerConfig::new(args.d_model, args.heads).dim_feedforward(args.ff).dropout(args.dropout).activation(Activation::Gelu).norm_first(true);
        if args.attention == Attn::Mla {
            let head = args.d_model / args.heads;
            let mla = MlaConfig { kv_lora_rank: args.d_model / 3, qk_nope_head_dim: head / 2, qk_rope_head_dim: head / 2, v_head_dim: head, dropout: args.dropout, ..MlaConfig::for_width(args.d_model, args.heads) };
            cfg = cfg.latent_attention(mla);
        }
        let embed = DynEmbedding::new(vocab, args.d_model, gen);
        tensorbrain::autograd::no_grad(|| embed.weight.copy_from(&embed.weight.mul_scalar(1.0 / (args.d_model as f64).sqrt())));
        Ok(Translator {
            embed,
            encoder: TransformerEncoder::new(&cfg, args.layers, true, gen)?,
            decoder: TransformerDecoder::new(&cfg, args.layers, true, gen)?,
            positions: (args.attention == Attn::Mha).then(|| SinusoidalPositionalEncoding::new(args.d_model)),
            scale: (args.d_model as f64).sqrt(),
        })
    }

    fn embed_at(&self, ids: &Tensor, offset: usize) -> Result<Tensor> {
        let x = self.embed.forward(ids)?.try_mul_scalar(self.scale)?;
        match &self.positions {
            Some(p) => p.forward(&x, offset),
            None => Ok(x),
        }
    }

    fn encode(&self, src: &Tensor, src_pad: &Tensor) -> Result<Tensor> {
        self.encoder.forward(&self.embed_at(src, 0)?, &AttentionMasks::key_padding(src_pad))
    }

    fn logits(&self, h: &Tensor) -> Result<Tensor> {
        h.try_matmul(&self.embed.weight.try_t()?)
    }

    /// Teacher-forced logits `[B, T, V]` for `tgt_in` given the source.
    fn forward(&self, src: &Tensor, src_pad: &Tensor, tgt_in: &Tensor) -> Result<Tensor> {
        let memory = self.encode(src, src_pad)?;
        let h = self.decoder.forward(&self.embed_at(tgt_in, 0)?, &memory, &AttentionMasks::causal(), &AttentionMasks::key_padding(src_pad))?;
        self.logits(&h)
    }
}

impl Module for Translator {
    /// The default command line's model over a 6000-token vocabulary.
    fn init_with(gen: &mut Generator) -> Self {
        Translator::new(&Args::parse_from(["translate"]), 6000, gen).expect("valid defaults")
    }
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.embed.visit_params(&join(prefix, "embed"), f);
        self.encoder.visit_params(&join(prefix, "encoder"), f);
        self.decoder.visit_params(&join(prefix, "decoder"), f);
    }
    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        self.embed.visit_params_mut(&join(prefix, "embed"), f);
        self.encoder.visit_params_mut(&join(prefix, "encoder"), f);
        self.decoder.visit_params_mut(&join(prefix, "decoder"), f);
    }
    fn set_training(&mut self, training: bool) {
        self.encoder.set_training(training);
        self.decoder.set_training(training);
    }
}

/// Decoding state: the KV cache, the encoder's keys and values, the source padding.
struct DecodeState {
    cache: KvCache,
    memory_kv: Vec<(Tensor, Tensor)>,
    src_pad: Tensor,
}

impl IncrementalDecoder for Translator {
    type State = DecodeState;

    fn step(&self, s: &mut DecodeState, tokens: &Tensor) -> Result<Tensor> {
        let x = self.embed_at(tokens, s.cache.len())?;
        let h = self.decoder.forward_cached(&x, &s.memory_kv, &mut s.cache, &AttentionMasks::causal(), &AttentionMasks::key_padding(&s.src_pad))?;
        self.logits(&h)?.try_reshape(&[tokens.shape()[0] as isize, -1])
    }

    fn reorder(&self, s: &mut DecodeState, idx: &Tensor) -> Result<()> {
        s.cache.reorder(idx)?;
        s.src_pad = s.src_pad.try_index_select(0, idx)?;
        s.memory_kv = s.memory_kv.iter().map(|(k, v)| Ok((k.try_index_select(0, idx)?, v.try_index_select(0, idx)?))).collect::<Result<_>>()?;
        Ok(())
    }
}

/// Pads id lists into `[B, T]` and the padding mask (1 = padding).
fn pad_batch(seqs: &[Vec<i64>]) -> (Tensor, Tensor) {
    let t = seqs.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut ids = vec![PAD; seqs.len() * t];
    let mut pad = vec![1u8; seqs.len() * t];
    for (i, s) in seqs.iter().enumerate() {
        ids[i * t..i * t + s.len()].copy_from_slice(s);
        pad[i * t..i * t + s.len()].iter_mut().for_each(|p| *p = 0);
    }
    (Tensor::from_vec(ids, &[seqs.len(), t]), Tensor::from_vec(pad, &[seqs.len(), t]))
}

struct Example {
    src: Vec<i64>,
    tgt: Vec<i64>,
}

fn encode_pairs(tok: &Tokenizer, pairs: &[(String, String)], max_tokens: usize) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (en, it) in pairs {
        let src: Vec<i64> = tok.encode(en, false)?.into_iter().map(i64::from).collect();
        let tgt: Vec<i64> = tok.encode(it, false)?.into_iter().map(i64::from).collect();
        if src.len() <= max_tokens && tgt.len() < max_tokens && !src.is_empty() {
            out.push(Example { src, tgt });
        }
    }
    Ok(out)
}

/// Batches of similar source length (less padding), in a seeded random order.
fn batches(data: &[Example], batch: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    order.shuffle(&mut rng);
    // Sort within windows of 50 batches by length, then cut.
    for w in order.chunks_mut(batch * 50) {
        w.sort_by_key(|&i| data[i].src.len() + data[i].tgt.len());
    }
    let mut out: Vec<Vec<usize>> = order.chunks(batch).map(|c| c.to_vec()).collect();
    out.shuffle(&mut rng);
    out
}

/// Loss (mean over target tokens) and next-token accuracy counts of one batch.
fn batch_loss(model: &Translator, data: &[Example], idx: &[usize], loss_fn: &CrossEntropyLoss) -> Result<(Tensor, usize, usize)> {
    let srcs: Vec<Vec<i64>> = idx.iter().map(|&i| data[i].src.clone()).collect();
    let tin: Vec<Vec<i64>> = idx.iter().map(|&i| std::iter::once(BOS).chain(data[i].tgt.iter().copied()).collect()).collect();
    let tout: Vec<Vec<i64>> = idx.iter().map(|&i| data[i].tgt.iter().copied().chain(std::iter::once(EOS)).collect()).collect();
    let (src, src_pad) = pad_batch(&srcs);
    let (tgt_in, _) = pad_batch(&tin);
    let (tgt_out, _) = pad_batch(&tout);
    let logits = model.forward(&src, &src_pad, &tgt_in)?;
    let v = logits.shape()[2] as isize;
    let flat = logits.try_reshape(&[-1, v])?;
    let target = tgt_out.try_reshape(&[-1])?;
    let loss = loss_fn.forward(&flat, &target)?;
    let pred = tensorbrain::autograd::no_grad(|| flat.try_argmax(Some(-1), false))?.to_vec::<i64>();
    let tgt = target.to_vec::<i64>();
    let tokens = tgt.iter().filter(|&&t| t != PAD).count();
    let correct = pred.iter().zip(&tgt).filter(|(p, t)| **t != PAD && p == t).count();
    Ok((loss, correct, tokens))
}

fn translate(model: &Translator, tok: &Tokenizer, sources: &[&str], args: &Args) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(sources.len());
    for chunk in sources.chunks(32) {
        let srcs: Vec<Vec<i64>> = chunk.iter().map(|s| Ok(tok.encode(s, false)?.into_iter().map(i64::from).collect())).collect::<Result<_>>()?;
        let (src, src_pad) = pad_batch(&srcs);
        let ids = tensorbrain::autograd::no_grad(|| -> Result<Vec<Vec<i64>>> {
            let memory = model.encode(&src, &src_pad)?;
            let mut state = DecodeState { cache: model.decoder.new_cache(), memory_kv: model.decoder.memory_kv(&memory)?, src_pad: src_pad.clone() };
            let max_len = srcs.iter().map(Vec::len).max().unwrap_or(1) * 2 + 10;
            let opts = BeamOptions { search: SearchOptions { bos: BOS, eos: EOS, max_len }, beam_size: args.beam, length_penalty: args.length_penalty };
            beam_search(model, &mut state, chunk.len(), &opts)
        })?;
        for seq in ids {
            let u: Vec<u32> = seq.iter().map(|&t| t as u32).collect();
            out.push(tok.decode(&u, true)?);
        }
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    tensorbrain::set_num_threads(args.threads);
    let name = format!("translate-{}", if args.attention == Attn::Mha { "mha" } else { "mla" });
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&name));
    std::fs::create_dir_all(&out).map_err(|e| tensorbrain::Error::Io { context: format!("creating {}", out.display()), source: e })?;
    let train_pairs = read_pairs(&args.data.join("train.tsv.gz"))?;
    let valid_pairs = read_pairs(&args.data.join("valid.tsv.gz"))?;
    let test_pairs = read_pairs(&args.data.join("test.tsv.gz"))?;
    println!("{} train, {} valid, {} test pairs from {}", train_pairs.len(), valid_pairs.len(), test_pairs.len(), args.data.display());

    let tok_path = out.join("tokenizer.json");
    let tok = if tok_path.exists() {
        Tokenizer::from_file(&tok_path)?
    } else {
        let t0 = Instant::now();
        let texts = train_pairs.iter().flat_map(|(e, i)| [e.as_str(), i.as_str()]);
        let specials = ["<pad>", "<s>", "</s>"].map(String::from).to_vec();
        let tok = Tokenizer::train_bpe(texts, &BpeOptions { vocab_size: args.vocab, min_frequency: 2, special_tokens: specials })?;
        tok.save(&tok_path)?;
        println!("trained a {}-token byte-level BPE in {:.1} s", tok.vocab_size(), t0.elapsed().as_secs_f64());
        tok
    };
    let train = encode_pairs(&tok, &train_pairs, args.max_tokens)?;
    let valid = encode_pairs(&tok, &valid_pairs, usize::MAX)?;

    let mut gen = Generator::new(0);
    tensorbrain::manual_seed(0);
    let mut model = Translator::new(&args, tok.vocab_size(), &mut gen)?;
    println!("{name}: {} parameters, d_model {}, {} + {} layers, {} heads; KV cache {} floats per target token (all decoder layers)",
        model.num_parameters(), args.d_model, args.layers, args.layers, args.heads, model.decoder.cache_floats_per_token());

    let mut opt = AdamW::new(model.parameters(), AdamWOptions { lr: args.lr, weight_decay: 0.01, betas: (0.9, 0.98), ..Default::default() })?;
    let steps_per_epoch = train.len().div_ceil(args.batch);
    let total = steps_per_epoch * args.epochs;
    let mut sched = LinearWarmupCosine::new(&mut opt, args.warmup.min(total - 1), total, 0.01, args.lr * 0.02)?;
    let loss_fn = CrossEntropyLoss::new().label_smoothing(0.1).ignore_index(PAD);
    let eval_loss_fn = CrossEntropyLoss::new().ignore_index(PAD);
    let mut history = History::default();
    let started = Instant::now();
    let deadline = args.minutes.map(|m| m * 60.0);
    'epochs: for epoch in 1..=args.epochs {
        model.train();
        let t0 = Instant::now();
        let order = batches(&train, args.batch, epoch as u64);
        let bar = ProgressBar::new(order.len() as u64);
        bar.set_style(ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches, {elapsed} < {eta}").expect("valid template"));
        bar.set_message(epoch.to_string());
        let (mut loss_sum, mut correct, mut tokens, mut steps) = (0.0, 0, 0, 0);
        for idx in &order {
            let (loss, c, n) = batch_loss(&model, &train, idx, &loss_fn)?;
            opt.zero_grad();
            loss.try_backward()?;
            tensorbrain::optim::clip_grad_norm(&model.parameters(), 1.0, 2.0)?;
            opt.step()?;
            sched.try_step(&mut opt)?;
            loss_sum += loss.item::<f32>() as f64 * n as f64;
            (correct, tokens, steps) = (correct + c, tokens + n, steps + 1);
            bar.inc(1);
            if deadline.is_some_and(|d| started.elapsed().as_secs_f64() > d) {
                bar.finish_and_clear();
                println!("time limit reached after {steps} batches of epoch {epoch}");
                record_epoch(&mut history, epoch, loss_sum / tokens as f64, correct as f64 / tokens as f64, &model, &valid, &eval_loss_fn, &opt, t0, tokens)?;
                break 'epochs;
            }
        }
        bar.finish_and_clear();
        record_epoch(&mut history, epoch, loss_sum / tokens as f64, correct as f64 / tokens as f64, &model, &valid, &eval_loss_fn, &opt, t0, tokens)?;
        history.write_csv(&out.with_extension("csv"))?;
        history.write_plot(&out.with_extension("png"))?;
        model.save(out.join("model.safetensors"))?;
    }
    history.write_csv(&out.with_extension("csv"))?;
    history.write_plot(&out.with_extension("png"))?;
    model.save(out.join("model.safetensors"))?;
    let train_secs = started.elapsed().as_secs_f64();

    model.eval();
    let limit = if args.test_limit == 0 { test_pairs.len() } else { args.test_limit.min(test_pairs.len()) };
    let sources: Vec<&str> = test_pairs[..limit].iter().map(|p| p.0.as_str()).collect();
    let refs: Vec<&str> = test_pairs[..limit].iter().map(|p| p.1.as_str()).collect();
    let t0 = Instant::now();
    let hyps = translate(&model, &tok, &sources, &args)?;
    let decode_secs = t0.elapsed().as_secs_f64();
    let hyp_refs: Vec<&str> = hyps.iter().map(String::as_str).collect();
    let bleu = corpus_bleu(&hyp_refs, &refs)?;
    let chrf = corpus_chrf(&hyp_refs, &refs)?;
    let (c, w) = (cer(&hyp_refs, &refs)?, wer(&hyp_refs, &refs)?);
    write_lines(&out.join("test_hyps.txt"), &hyp_refs)?;
    write_lines(&out.join("test_refs.txt"), &refs)?;
    let results = serde_json::json!({
        "attention": name, "bleu": bleu.score, "chrf": chrf, "cer": c, "wer": w,
        "test_pairs": limit, "train_seconds": train_secs, "decode_seconds": decode_secs,
        "parameters": model.num_parameters(), "kv_cache_floats_per_token": model.decoder.cache_floats_per_token(),
        "beam": args.beam, "epochs_run": history.epochs.len(),
    });
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&results).expect("json")).map_err(|e| tensorbrain::Error::Io { context: "results.json".into(), source: e })?;
    println!("\n{name} on {limit} test pairs (beam {}): BLEU {:.2}  chrF {:.2}  CER {:.3}  WER {:.3}", args.beam, bleu.score, chrf, c, w);
    println!("training {:.1} min, decoding {:.1} s; KV cache {} floats per token", train_secs / 60.0, decode_secs, model.decoder.cache_floats_per_token());
    println!("\nsample translations:");
    for i in (0..limit).step_by((limit / 8).max(1)).take(8) {
        println!("  en:  {}\n  ref: {}\n  out: {}\n", sources[i], refs[i], hyps[i]);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn record_epoch(history: &mut History, epoch: usize, train_loss: f64, train_acc: f64, model: &Translator, valid: &[Example], loss_fn: &CrossEntropyLoss, opt: &AdamW, t0: Instant, tokens: usize) -> Result<()> {
    let secs = t0.elapsed().as_secs_f64();
    let (mut loss_sum, mut correct, mut n) = (0.0, 0, 0);
    let idx: Vec<usize> = (0..valid.len()).collect();
    tensorbrain::autograd::no_grad(|| -> Result<()> {
        for chunk in idx.chunks(64) {
            let (loss, c, k) = batch_loss(model, valid, chunk, loss_fn)?;
            loss_sum += loss.item::<f32>() as f64 * k as f64;
            correct += c;
            n += k;
        }
        Ok(())
    })?;
    let rec = EpochRecord {
        epoch,
        train_loss,
        train_accuracy: Some(train_acc),
        eval_loss: Some(loss_sum / n as f64),
        eval_accuracy: Some(correct as f64 / n as f64),
        eval_top_k_accuracy: None,
        lr: opt.lr(),
        seconds: secs,
        samples_per_second: tokens as f64 / secs,
        skipped_steps: 0,
    };
    println!(
        "epoch {epoch}: train loss {:.3} (smoothed) acc {:.1}% | valid loss {:.3} acc {:.1}% | lr {:.2e} | {:.0} s, {:.0} target tokens/s",
        train_loss,
        100.0 * train_acc,
        loss_sum / n as f64,
        100.0 * correct as f64 / n as f64,
        opt.lr(),
        secs,
        tokens as f64 / secs
    );
    history.epochs.push(rec);
    Ok(())
}

fn write_lines(path: &Path, lines: &[&str]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| tensorbrain::Error::Io { context: format!("creating {}", path.display()), source: e })?;
    for l in lines {
        writeln!(f, "{l}").map_err(|e| tensorbrain::Error::Io { context: format!("writing {}", path.display()), source: e })?;
    }
    Ok(())
}
