//! The kernels `#[model]` fuses and generates at compile time compute what the unfused
//! interpreter computes (one kernel per IR node, no passes), forward and every gradient, with
//! fewer kernel launches. Tolerance: 1e-6 absolute + 1e-5 relative (fusion reorders no
//! arithmetic, but epilogues run the GEMM in blocks).

use tensorbrain::compile::{compile_model, Options};
use tensorbrain::nn::{GradReady, StaticModel};
use tensorbrain::prelude::*;

fn close(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{name}: shapes");
    let (a, b) = (got.to_dtype(DType::F64).to_vec::<f64>(), want.to_dtype(DType::F64).to_vec::<f64>());
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        assert!((p - q).abs() <= 1e-6 + 1e-5 * q.abs(), "{name}[{i}]: {p} vs {q}");
    }
}

#[model]
pub struct Mlp {
    fc1: Linear<20, 32>,
    fc2: Linear<32, 5>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 20]) -> tb![B, 5] {
        self.fc2(self.fc1(x).relu()).log_softmax(1)
    }
}

/// A residual block whose elementwise tail (gelu, scale, residual add, tanh, square) fuses.
#[model]
pub struct Residual {
    norm: LayerNorm<8>,
    fc: Linear<8, 8>,
}

#[model]
impl Residual {
    pub fn forward(&self, x: tb![B, 8]) -> tb![B, 8] {
        let h = self.fc(self.norm(x)).gelu() * 0.5;
        let y = x + h;
        y.tanh() * y.sigmoid() + y * 0.25
    }
}

/// Generated (fused) forward, training forward and backward against the unfused interpreter of
/// the same graph, with the input gradient too.
fn check<M: StaticModel + ModuleExt>(name: &str, m: &M, graph: &tensorbrain::ir::autodiff::Backward, x: Tensor) {
    let slow = compile_model(m, graph, &Options::unfused()).unwrap();
    let y = m.forward_infer(&[x.clone()]).unwrap();
    close(&format!("{name} forward"), &y, &slow.forward(&[x.clone()]).unwrap());

    let w = Tensor::randn(y.shape(), DType::F32);
    let want = slow.forward_backward(&[x.clone()], &w).unwrap();
    for input_grads in [false, true] {
        let (out, saved) = m.forward_train(&[x.clone()], input_grads).unwrap();
        close(&format!("{name} training output"), &out, &want.output);
        let (gi, gp) = M::backward(&saved, &w, &mut GradReady::none()).unwrap();
        if input_grads {
            close(&format!("{name} d input"), gi[0].as_ref().expect("input gradient"), want.input_grads[0].as_ref().unwrap());
        }
        assert_eq!(gp.len(), want.param_grads.len(), "{name}: parameter gradient count");
        for (g, (path, wg)) in gp.iter().zip(&want.param_grads) {
            close(&format!("{name} d {path} (input grads {input_grads})"), g.as_ref().expect("parameter gradient"), wg.as_ref().unwrap());
        }
    }
}

#[test]
fn generated_mlp_matches_the_unfused_interpreter() {
    let m = Mlp::init(1);
    check("mlp", &m, &m.graph(), Tensor::randn(&[6, 20], DType::F32));
    let c = m.kernel_counts();
    // Two matmul epilogues (bias + relu, bias) and the log_softmax.
    assert_eq!(c.forward, 3, "{c}\n{}", m.fusion_report());
    assert!(c.forward < c.forward_unfused && c.backward < c.backward_unfused, "{c}\n{}", m.fusion_report());
    assert!(m.fusion_report().contains("epilogue"), "{}", m.fusion_report());
}

#[test]
fn generated_residual_block_matches_the_unfused_interpreter() {
    let m = Residual::init(3);
    // Large enough that the generated kernel splits its work across threads.
    check("residual", &m, &m.graph(), Tensor::randn(&[4096, 8], DType::F32));
    check("residual small", &m, &m.graph(), Tensor::randn(&[3, 8], DType::F32));
    let c = m.kernel_counts();
    assert!(c.forward < c.forward_unfused && c.train_forward <= c.train_forward_unfused && c.backward < c.backward_unfused, "{c}\n{}", m.fusion_report());
    assert!(m.fusion_report().contains("generated kernel"), "{}", m.fusion_report());
}

#[test]
fn generated_kernels_fall_back_for_strided_inputs() {
    // A transposed (non-contiguous) input reaches the fused tail through the interpreter.
    let m = Residual::init(5);
    let xt = Tensor::randn(&[8, 7], DType::F32).transpose(0, 1);
    let slow = compile_model(&m, &m.graph(), &Options::unfused()).unwrap();
    close("strided forward", &m.forward_infer(&[xt.clone()]).unwrap(), &slow.forward(&[xt.contiguous()]).unwrap());
}
