//! Attention and transformer-layer speed against PyTorch, and attention memory, at
//! T = 128, 512 and 2048 (batch 2, 8 heads of 64).
//!
//! ```sh
//! cargo run --release --example bench_attention -- --bench             # TensorBrain only
//! cargo run --release --example bench_attention -- --bench --pytorch   # beside PyTorch, same threads, same run
//! ```
//!
//! Rows: `sdpa fwd+bwd` (tiled kernel; the materialised matmul-softmax-matmul reference
//! beside it), `sdpa inference` (tokens/s of the forward alone), `encoder layer fwd+bwd`
//! (d_model 512, 8 heads, ff 2048, pre-norm, dropout 0). Memory: the peak resident set of a
//! fresh process running one forward+backward at T = 2048, tiled vs materialised.

use std::process::Command;
use std::time::Instant;

use clap::Parser;
use tensorbrain::nn::attention::{scaled_dot_product_attention, scaled_dot_product_attention_reference, AttentionMasks, AttentionOptions};
use tensorbrain::nn::transformer::{TransformerConfig, TransformerEncoderLayer};
use tensorbrain::{DType, Generator, Tensor};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    bench: bool,
    /// Also run benches/bench_attention_pytorch.py with the same threads.
    #[arg(long)]
    pytorch: bool,
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Internal: one forward+backward at T = 2048 in this process, then print the peak RSS.
    #[arg(long)]
    memory: Option<String>,
}

const B: usize = 2;
const H: usize = 8;
const D: usize = 64;

fn qkv(t: usize) -> [Tensor; 3] {
    [0, 1, 2].map(|_| Tensor::randn(&[B, H, t, D], DType::F32).set_requires_grad(true))
}

/// Median seconds of `f` over enough repetitions to take about half a second.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let t0 = Instant::now();
    f();
    let once = t0.elapsed().as_secs_f64().max(1e-6);
    let reps = ((0.5 / once) as usize).clamp(1, 50);
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()).map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() {
    let args = Args::parse();
    tensorbrain::set_num_threads(args.threads);
    if let Some(mode) = &args.memory {
        let [q, k, v] = qkv(2048);
        let base = peak_rss_mib();
        let opts = AttentionOptions::new().is_causal(true);
        let out = if mode == "tiled" { scaled_dot_product_attention(&q, &k, &v, &opts) } else { scaled_dot_product_attention_reference(&q, &k, &v, &opts) };
        out.sum_all().backward();
        println!("{:.1}", peak_rss_mib() - base);
        return;
    }
    if !args.bench {
        println!("pass --bench to run the benchmark (and --pytorch to run PyTorch beside it)");
        return;
    }
    let threads = tensorbrain::num_threads();
    println!("batch {B}, {H} heads of {D}, causal, {threads} threads (timings are medians; the machine may be shared)\n");
    println!("{:<28} {:>6} {:>14} {:>14}", "what", "T", "TensorBrain", "reference");
    let opts = AttentionOptions::new().is_causal(true);
    for t in [128, 512, 2048] {
        let [q, k, v] = qkv(t);
        let fb = |f: fn(&Tensor, &Tensor, &Tensor, &AttentionOptions) -> Tensor| {
            time(|| {
                let out = f(&q, &k, &v, &opts);
                out.sum_all().backward();
            })
        };
        let (tiled, reference) = (fb(scaled_dot_product_attention), fb(scaled_dot_product_attention_reference));
        println!("{:<28} {:>6} {:>11.2} ms {:>11.2} ms", "sdpa fwd+bwd", t, tiled * 1e3, reference * 1e3);
        let infer = |f: fn(&Tensor, &Tensor, &Tensor, &AttentionOptions) -> Tensor| {
            tensorbrain::autograd::no_grad(|| time(|| drop(f(&q, &k, &v, &opts))))
        };
        let (ti, ri) = (infer(scaled_dot_product_attention), infer(scaled_dot_product_attention_reference));
        println!("{:<28} {:>6} {:>8.0} tok/s {:>8.0} tok/s", "sdpa inference", t, (B * t) as f64 / ti, (B * t) as f64 / ri);
        let cfg = TransformerConfig::new(512, 8).dropout(0.0).norm_first(true);
        let layer = TransformerEncoderLayer::new(&cfg, &mut Generator::new(0)).unwrap();
        let x = Tensor::randn(&[B, t, 512], DType::F32).set_requires_grad(true);
        let enc = time(|| layer.forward(&x, &AttentionMasks::causal()).unwrap().sum_all().backward());
        println!("{:<28} {:>6} {:>11.2} ms", "encoder layer fwd+bwd", t, enc * 1e3);
    }
    let exe = std::env::current_exe().expect("own path");
    let mem = |mode: &str| -> String {
        let out = Command::new(&exe).args(["--memory", mode, "--threads", &threads.to_string()]).output().expect("spawn");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    println!("\npeak memory of one causal fwd+bwd at T = 2048: tiled +{} MiB, materialised +{} MiB", mem("tiled"), mem("reference"));
    if args.pytorch {
        println!("\nPyTorch (benches/bench_attention_pytorch.py, {threads} threads):");
        let status = Command::new("python3").args(["benches/bench_attention_pytorch.py", "--threads", &threads.to_string()]).status();
        if !matches!(status, Ok(s) if s.success()) {
            println!("  could not run python3 benches/bench_attention_pytorch.py (needs torch)");
        }
    }
}
