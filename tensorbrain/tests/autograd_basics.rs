//! The tape's contract: accumulation, retain_grad, detach, no_grad, explicit gradients,
//! double backward.

use tensorbrain::autograd::{grad, no_grad};
use tensorbrain::{DType, Tensor};

fn t(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape)
}

#[test]
fn broadcasting_mul_add_gradients() {
    let a = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]).set_requires_grad(true);
    let b = t(&[10., 20., 30.], &[3]).set_requires_grad(true);
    let y = (&(&a * &b) + &a).sum_all();
    y.backward();
    // dy/da = b + 1 (broadcast over rows); dy/db = column sums of a.
    assert_eq!(a.grad().unwrap().to_vec::<f32>(), [11., 21., 31., 11., 21., 31.]);
    assert_eq!(b.grad().unwrap().to_vec::<f32>(), [5., 7., 9.]);
}

#[test]
fn gradients_accumulate_until_zeroed() {
    let x = t(&[2.0], &[1]).set_requires_grad(true);
    for _ in 0..3 {
        (&x * &x).sum_all().backward();
    }
    assert_eq!(x.grad().unwrap().to_vec::<f32>(), [12.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn retain_grad_keeps_a_non_leaf_gradient() {
    let x = t(&[1., 2.], &[2]).set_requires_grad(true);
    let h = &x * 3.0;
    h.retain_grad();
    let y = (&h * &h).sum_all();
    y.backward();
    assert_eq!(h.grad().unwrap().to_vec::<f32>(), [6., 12.]);
    assert_eq!(x.grad().unwrap().to_vec::<f32>(), [18., 36.]);
}

#[test]
fn detach_and_no_grad_cut_the_graph() {
    let x = t(&[1., 2.], &[2]).set_requires_grad(true);
    assert!(!x.detach().requires_grad());
    let y = no_grad(|| &x * 2.0);
    assert!(!y.requires_grad());
    assert!(y.sum_all().try_backward().is_err());
}

#[test]
fn non_scalar_backward_needs_a_gradient() {
    let x = t(&[1., 2., 3.], &[3]).set_requires_grad(true);
    let y = &x * &x;
    let err = y.try_backward().unwrap_err().to_string();
    assert!(err.contains("scalar"), "{err}");
    y.backward_with(&t(&[1., 0., 2.], &[3]));
    assert_eq!(x.grad().unwrap().to_vec::<f32>(), [2., 0., 12.]);
}

#[test]
fn double_backward_of_a_cube() {
    let x = Tensor::from_slice(&[1.5f64, -2.0], &[2]).set_requires_grad(true);
    let y = (&(&x * &x) * &x).sum_all();
    let g = grad(&y, &[x.clone()], None, true).unwrap()[0].clone().unwrap();
    assert_eq!(g.to_vec::<f64>(), [3.0 * 1.5 * 1.5, 12.0]);
    let gg = grad(&g.sum_all(), &[x.clone()], None, false).unwrap()[0].clone().unwrap();
    assert_eq!(gg.to_vec::<f64>(), [9.0, -12.0]);
}

#[test]
fn int_tensors_cannot_require_grad() {
    assert!(Tensor::zeros(&[2], DType::I64).try_set_requires_grad(true).is_err());
}

#[test]
fn gradcheck_passes_for_div_and_catches_a_wrong_rule() {
    use tensorbrain::autograd::{gradcheck, gradgradcheck, GradcheckOptions};
    let a = Tensor::from_slice(&[1.0f64, -2.0, 3.0, 0.5, 1.5, 2.5], &[2, 3]);
    let b = Tensor::from_slice(&[1.5f64, -0.7, 2.0], &[3]);
    let opts = GradcheckOptions::default();
    gradcheck(|x| x[0].try_div(&x[1]), &[a.clone(), b.clone()], opts).unwrap();
    gradgradcheck(|x| x[0].try_div(&x[1]), &[a.clone(), b.clone()], opts).unwrap();
    // detach() hides the dependence on b, so the analytic gradient is wrong and must be caught.
    assert!(gradcheck(|x| x[0].try_mul(&x[1].detach()), &[a, b], opts).is_err());
}
