//! Helpers shared by the tests that hold a `#[model]`'s generated backward against the tape.

use tensorbrain::autograd::grad;
use tensorbrain::prelude::*;

/// Elementwise closeness, |static − tape| ≤ 1e-6 + 1e-5·|tape|, naming the first bad index.
pub fn close(name: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{name}: sizes");
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        assert!((p - q).abs() <= 1e-6 + 1e-5 * q.abs(), "{name}[{i}]: static {p} vs tape {q}");
    }
}

/// Output and gradients of `sum(out * w)`, with `w` drawn from `seed`, for the input (when it
/// requires grad) and every parameter.
pub fn output_and_grads<M: ModuleExt>(model: &M, x: &Tensor, seed: u64, fwd: impl Fn(&Tensor) -> Tensor) -> (Vec<f32>, Vec<Vec<f32>>) {
    let out = fwd(x);
    manual_seed(seed);
    let w = Tensor::randn(out.shape(), DType::F32);
    let mut wrt: Vec<Tensor> = if x.requires_grad() { vec![x.clone()] } else { vec![] };
    wrt.extend(model.parameters());
    let grads = grad(&out.mul(&w).sum_all(), &wrt, None, false).unwrap();
    (out.to_vec::<f32>(), grads.into_iter().map(|g| g.expect("every parameter gets a gradient").to_vec::<f32>()).collect())
}
