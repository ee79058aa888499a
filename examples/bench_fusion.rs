//! The graph compiler: fused against unfused interpretation of the same IR graph, and against
//! the dynamic tape running the same ops eagerly. Forward (inference) and forward+backward
//! (the backward graph from `autodiff::backward`, then the passes) per step, best of N, with
//! kernel launches and bytes moved per step (each kernel's input + output bytes).
//! The `#[model] generated` rows run the code the macro emitted at compile time for the MLP
//! (same fusion, kernels as Rust, no interpreter).
//!
//!     cargo run --release --example bench_fusion
//!
//! `benches/bench_fusion_pytorch.py` measures the same models in PyTorch eager.

use tensorbrain::compile::{compile, freeze, param_training_graph, training_graph, CompiledGraph, Options, Params};
use tensorbrain::ir::autodiff::backward;
use tensorbrain::ir::Graph;
use tensorbrain::nn::{GradReady, StaticModel};
use tensorbrain::prelude::*;

#[path = "common/bench.rs"]
mod bench;
use bench::{best_ms, conv_block, conv_block_params, elementwise_block, elementwise_eager, tape_step};

#[model]
pub struct Mlp {
    fc1: Linear<784, 256>,
    fc2: Linear<256, 10>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {
        self.fc2(self.fc1(x).relu()).log_softmax(1)
    }
}

const THREADS: usize = 2;

fn header() {
    println!(
        "{:<34}{:>10}{:>10}{:>10}{:>9}{:>9}{:>16}{:>16}",
        "model (best ms per step)", "fused", "unfused", "tape", "f/unf", "f/tape", "kernels f/unf", "MB moved f/unf"
    );
}

/// One table row: the fused and unfused interpreters on `g`, and the tape.
fn row(name: &str, reps: usize, g: &Graph, inputs: &[Tensor], params: &Params, tape: impl FnMut()) {
    let fused = compile(g, &Options::default()).unwrap();
    let unfused = compile(g, &Options::unfused()).unwrap();
    row_compiled(name, reps, &fused, &unfused, inputs, params, params, tape);
}

#[allow(clippy::too_many_arguments)]
fn row_compiled(name: &str, reps: usize, fused: &CompiledGraph, unfused: &CompiledGraph, inputs: &[Tensor], fp: &Params, up: &Params, tape: impl FnMut()) {
    let (_, sf) = fused.profile(inputs, fp).unwrap();
    let (_, su) = unfused.profile(inputs, up).unwrap();
    let f = best_ms(reps, || {
        std::hint::black_box(fused.run(inputs, fp).unwrap());
    });
    let u = best_ms(reps, || {
        std::hint::black_box(unfused.run(inputs, up).unwrap());
    });
    let t = best_ms(reps, tape);
    let mb = |b: usize| b as f64 / 1e6;
    println!(
        "{name:<34}{f:>10.3}{u:>10.3}{t:>10.3}{:>8.2}x{:>8.2}x{:>16}{:>16}",
        u / f,
        t / f,
        format!("{}/{}", sf.kernels, su.kernels),
        format!("{:.1}/{:.1}", mb(sf.bytes), mb(su.bytes)),
    );
}

fn conv_eager(p: &Params, x: &Tensor) -> Tensor {
    let h = x.conv2d(&p["conv.weight"], Some(&p["conv.bias"]), [1, 1], [1, 1], [1, 1], 1);
    (h * &p["bn.scale"] + &p["bn.shift"]).relu()
}

/// The code `#[model]` generated at compile time (fused kernels as Rust, no interpreter):
/// inference, and a training step (forward keeping what the backward reads, then the
/// parameter-gradient backward).
fn generated_rows(mlp: &Mlp, x: &Tensor, go: &Tensor) {
    let c = mlp.kernel_counts();
    let f = best_ms(200, || {
        std::hint::black_box(mlp.forward_infer(std::slice::from_ref(x)).unwrap());
    });
    let t = best_ms(100, || {
        let (_, saved) = mlp.forward_train(std::slice::from_ref(x), false).unwrap();
        std::hint::black_box(<Mlp as StaticModel>::backward(&saved, go, &mut GradReady::none()).unwrap());
    });
    println!("{:<34}{f:>10.3}{:>54}", "  #[model] generated forward", format!("{}/{}", c.forward, c.forward_unfused));
    let (k, ku) = (c.train_forward + c.backward, c.train_forward_unfused + c.backward_unfused);
    println!("{:<34}{t:>10.3}{:>54}", "  #[model] generated fwd+bwd", format!("{k}/{ku}"));
}

fn main() {
    tensorbrain::set_num_threads(THREADS);
    manual_seed(0);
    println!("TensorBrain graph compiler, {} threads; fused = passes + fusion, unfused = one kernel per IR node", tensorbrain::num_threads());
    header();

    // ---- MLP 784-256-10, batch 64 ----
    let mlp = Mlp::init(0);
    let mp: Params = mlp.named_parameters().into_iter().collect();
    let pl = mlp.parameters();
    let x = Tensor::randn(&[64, 784], DType::F32);
    let graph = mlp.graph();
    let fwd = tensorbrain::compile::forward_graph(&graph);
    row("MLP 784-256-10 b64 forward", 200, &fwd, &[x.clone()], &mp, || {
        no_grad(|| std::hint::black_box(mlp.fc2.forward(&mlp.fc1.forward(&x).unwrap().relu()).unwrap().log_softmax(1)));
    });
    let go = Tensor::full(&[64, 10], 1.0 / 640.0, DType::F32);
    // Parameter gradients only, as the tape step computes.
    let tg = param_training_graph(&graph);
    row("MLP 784-256-10 b64 fwd+bwd", 100, &tg, &[x.clone(), go.clone()], &mp, || {
        tape_step(mlp.fc2.forward(&mlp.fc1.forward(&x).unwrap().relu()).unwrap().log_softmax(1), &pl)
    });
    generated_rows(&mlp, &x, &go);

    // ---- conv + per-channel affine + relu ----
    let g = conv_block();
    let p = conv_block_params();
    let x = Tensor::randn(&[32, 16, 32, 32], DType::F32);
    row("conv+affine+relu b32 forward", 20, &g, &[x.clone()], &p, || {
        no_grad(|| std::hint::black_box(conv_eager(&p, &x)));
    });
    let (frozen, fp) = freeze(&g, &p).unwrap();
    let fc = compile(&frozen, &Options::default()).unwrap();
    let uc = compile(&g, &Options::unfused()).unwrap();
    row_compiled("  frozen (affine in conv) fwd", 20, &fc, &uc, &[x.clone()], &fp, &p, || {
        no_grad(|| std::hint::black_box(conv_eager(&p, &x)));
    });
    let tg = training_graph(&backward(&g).unwrap());
    let go = Tensor::full(&[32, 32, 32, 32], 1.0 / (32.0 * 32.0 * 32.0 * 32.0), DType::F32);
    let pt: Params = p.iter().map(|(k, v)| (k.clone(), v.detach().set_requires_grad(true))).collect();
    let leaves: Vec<Tensor> = ["conv.weight", "conv.bias", "bn.scale", "bn.shift"].iter().map(|k| pt[*k].clone()).collect();
    let xg = x.detach().set_requires_grad(true);
    let mut wrt = vec![xg.clone()];
    wrt.extend(leaves);
    row("conv+affine+relu b32 fwd+bwd", 10, &tg, &[x.clone(), go], &p, || tape_step(conv_eager(&pt, &xg), &wrt));

    // ---- elementwise-heavy block ----
    let (r, c) = (256, 2048);
    let g = elementwise_block(r, c);
    let x = Tensor::randn(&[r, c], DType::F32);
    row("3x (x*sig(x)*.5+tanh x) fwd", 20, &g, &[x.clone()], &Params::new(), || {
        no_grad(|| std::hint::black_box(elementwise_eager(&x)));
    });
    let tg = training_graph(&backward(&g).unwrap());
    let go = Tensor::full(&[r, c], 1.0 / (r * c) as f64, DType::F32);
    let xg = x.detach().set_requires_grad(true);
    row("3x (x*sig(x)*.5+tanh x) fwd+bwd", 10, &tg, &[x.clone(), go], &Params::new(), || {
        tape_step(elementwise_eager(&xg), std::slice::from_ref(&xg))
    });

    if std::env::args().any(|a| a == "--show") {
        let c = compile(&tg, &Options::default()).unwrap();
        println!("\n{}", c.report());
    }
}
