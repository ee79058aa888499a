//! Edge cases where TensorBrain disagreed with PyTorch (issue 11's seven bugs). The expected
//! values were computed with PyTorch 2.15 (`tests/parity/generate_ops.py` also commits fixtures
//! for them); each test names the PyTorch expression it mirrors.

use tensorbrain::autograd::grad;
use tensorbrain::nn::{CrossEntropyLoss, NllLoss};
use tensorbrain::{DType, Tensor};

fn leaf(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape).set_requires_grad(true)
}

/// `d sum(f(x)) / dx` as f64 values.
fn grad_of(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Vec<f64> {
    let y = f(x).sum_all();
    grad(&y, std::slice::from_ref(x), None, false).unwrap()[0].as_ref().expect("a gradient").to_vec::<f64>()
}

/// Exact comparison that treats NaN as equal to NaN and keeps the sign of infinities.
fn same(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g.is_nan() && w.is_nan()) || g == w, "got {got:?}, want {want:?}");
    }
}

// 1. clamp: torch.clamp(x, -0.5, 0.5).sum().backward() gives 0 at the bounds (x == min or
//    x == max) and 1 strictly inside, in PyTorch 2.15; a single bound behaves the same.
#[test]
fn clamp_gradient_is_zero_at_the_bounds() {
    let x = leaf(&[-1.0, -0.5, 0.0, 0.5, 1.0], &[5]);
    same(&grad_of(&x, |x| x.clamp(Some(-0.5), Some(0.5))), &[0.0, 0.0, 1.0, 0.0, 0.0]);
    same(&grad_of(&x, |x| x.clamp(Some(-0.5), None)), &[0.0, 0.0, 1.0, 1.0, 1.0]);
    same(&grad_of(&x, |x| x.clamp(None, Some(0.5))), &[1.0, 1.0, 1.0, 0.0, 0.0]);
}

// 2. F.cross_entropy / F.nll_loss with every target == ignore_index: the mean is 0/0 = NaN,
//    and the gradient is all zeros.
#[test]
fn all_ignored_targets_give_nan_loss_and_zero_gradient() {
    let logits = leaf(&[0.3, -1.2, 0.5, 2.0, 0.1, -0.4], &[2, 3]);
    let target = Tensor::from_vec(vec![-100i64, -100], &[2]);
    let loss = CrossEntropyLoss::new().forward(&logits, &target).unwrap();
    assert!(loss.item::<f64>().is_nan());
    let g = grad(&loss, std::slice::from_ref(&logits), None, false).unwrap()[0].clone().unwrap();
    same(&g.to_vec::<f64>(), &[0.0; 6]);

    let logp = leaf(&[-0.3, -1.2, -0.5, -2.0, -0.1, -0.4], &[2, 3]);
    let target = Tensor::from_vec(vec![1i64, 1], &[2]);
    let loss = NllLoss::new().ignore_index(1).forward(&logp, &target).unwrap();
    assert!(loss.item::<f64>().is_nan());
    let g = grad(&loss, std::slice::from_ref(&logp), None, false).unwrap()[0].clone().unwrap();
    same(&g.to_vec::<f64>(), &[0.0; 6]);

    // With label smoothing the smoothing term is ignored too.
    let loss = CrossEntropyLoss::new().label_smoothing(0.1).forward(&logits, &Tensor::from_vec(vec![-100i64, -100], &[2])).unwrap();
    assert!(loss.item::<f64>().is_nan());
    let g = grad(&loss, std::slice::from_ref(&logits), None, false).unwrap()[0].clone().unwrap();
    same(&g.to_vec::<f64>(), &[0.0; 6]);
}

// 3. F.cross_entropy(x, probs, ignore_index=2) raises "ignore_index is not supported for
//    floating point target"; a negative ignore_index is accepted (and ignored).
#[test]
fn probability_targets_reject_a_non_negative_ignore_index() {
    let logits = Tensor::from_vec(vec![0.3f32, -1.2, 0.5, 2.0, 0.1, -0.4], &[2, 3]);
    let probs = logits.softmax(1);
    let err = CrossEntropyLoss::new().ignore_index(2).forward(&logits, &probs).unwrap_err().to_string();
    assert!(err.contains("ignore_index is not supported for floating point (probability) targets"), "{err}");
    assert!(err.contains("got ignore_index 2"), "{err}");
    let a = CrossEntropyLoss::new().ignore_index(-5).forward(&logits, &probs).unwrap();
    let b = CrossEntropyLoss::new().forward(&logits, &probs).unwrap();
    assert_eq!(a.item::<f32>(), b.item::<f32>());
}

// 4. torch.tensor([1.5, 1.5, 1.5]).std() has gradient [0, 0, 0] (not NaN).
#[test]
fn std_gradient_where_the_deviation_is_zero_is_zero() {
    let x = leaf(&[1.5, 1.5, 1.5], &[3]);
    same(&grad_of(&x, |x| x.std(&[], false, 1)), &[0.0, 0.0, 0.0]);
    // Per row: a constant row gets 0, the other row its usual gradient.
    let x = leaf(&[2.0, 2.0, 1.0, 3.0], &[2, 2]);
    let g = grad_of(&x, |x| x.std(&[1], false, 1));
    let want = [0.0, 0.0, -std::f64::consts::FRAC_1_SQRT_2, std::f64::consts::FRAC_1_SQRT_2];
    assert!(g.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-15), "got {g:?}, want {want:?}");
}

// 5. var/std with correction >= N. PyTorch's rule depends on whether a dim was given:
//    torch.var(x, correction=c) (dim=None) gives grad * where(x == mean, nan, inf) once
//    N - c <= 0; torch.var(x, dim=0, correction=c) gives 2 / (N - c) * (x - mean).
#[test]
fn var_and_std_gradients_with_correction_at_least_n() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let cases: &[(&[f64], usize, [&[f64]; 4])] = &[
        // values, correction, [var all, var dim 0, std all, std dim 0]
        (&[1.0], 2, [&[nan], &[-0.0], &[nan], &[nan]]),
        (&[1.0], 3, [&[nan], &[-0.0], &[nan], &[nan]]),
        (&[1.0, 3.0], 2, [&[inf, inf], &[-inf, inf], &[nan, nan], &[nan, nan]]),
        (&[1.0, 3.0], 3, [&[inf, inf], &[2.0, -2.0], &[nan, nan], &[0.0, -0.0]]),
    ];
    for &(v, c, want) in cases {
        let x = leaf(v, &[v.len()]);
        same(&grad_of(&x, |x| x.var(&[], false, c)), want[0]);
        same(&grad_of(&x, |x| x.var(&[0], false, c)), want[1]);
        same(&grad_of(&x, |x| x.std(&[], false, c)), want[2]);
        same(&grad_of(&x, |x| x.std(&[0], false, c)), want[3]);
    }
}

// 6. torch.zeros(2, 3, 0).transpose(0, 1).view(6, 0) is allowed: any view of an empty
//    tensor is.
#[test]
fn views_of_empty_tensors() {
    let z = Tensor::zeros(&[2, 3, 0], DType::F32).transpose(0, 1);
    let v = z.view(&[6, 0]);
    assert_eq!(v.shape(), &[6, 0]);
    assert_eq!(z.view(&[0, 5]).shape(), &[0, 5]);
    assert_eq!(z.view(&[-1, 7]).shape(), &[0, 7]);
    assert_eq!(v.to_vec::<f32>(), Vec::<f32>::new());
}

// 7. An empty view at a non-zero offset: torch.zeros(5, 0).narrow(0, 4, 1) has storage
//    offset 4 into an empty storage; reading it must not index past the storage.
#[test]
fn empty_views_at_an_offset_are_readable() {
    let z = Tensor::zeros(&[5, 0], DType::F32).narrow(0, 4, 1);
    assert_eq!(z.shape(), &[1, 0]);
    assert!(z.to_vec::<f32>().is_empty());
    assert_eq!(z.sum_all().item::<f32>(), 0.0);
    assert_eq!(z.log_softmax(1).shape(), &[1, 0]);
    assert_eq!(z.contiguous().shape(), &[1, 0]);
    assert_eq!(z.to_dtype(DType::F64).shape(), &[1, 0]);
}

#[test]
fn cat_and_stack_backward_through_empty_inputs() {
    let a = Tensor::zeros(&[2, 0, 1, 1], DType::F64).set_requires_grad(true);
    let b = Tensor::ones(&[1, 0, 1, 1], DType::F64).set_requires_grad(true);
    let y = Tensor::cat(&[&a, &b], 0);
    // An empty upstream gradient (as a loss over no elements would send).
    let seed = Tensor::zeros(y.shape(), DType::F64);
    let g = grad(&y, &[a.clone(), b.clone()], Some(&seed), false).unwrap();
    // The gradient of `b` is a [1, 0, 1, 1] view at offset 2 of the output gradient.
    let gb = g[1].as_ref().unwrap();
    assert_eq!(gb.shape(), &[1, 0, 1, 1]);
    assert!(gb.to_vec::<f64>().is_empty());
    assert_eq!(gb.add(&g[0].as_ref().unwrap().narrow(0, 1, 1)).shape(), &[1, 0, 1, 1]);

    let c = Tensor::zeros(&[1, 0], DType::F64).set_requires_grad(true);
    let s = Tensor::stack(&[&c, &c, &c], 0);
    assert_eq!(s.shape(), &[3, 1, 0]);
    assert!(s.narrow(0, 2, 1).to_vec::<f64>().is_empty());
    let g = grad(&s, std::slice::from_ref(&c), Some(&Tensor::zeros(s.shape(), DType::F64)), false).unwrap();
    assert_eq!(g[0].as_ref().unwrap().shape(), &[1, 0]);
    assert!(g[0].as_ref().unwrap().to_vec::<f64>().is_empty());
}

#[test]
fn cross_entropy_on_an_empty_sliced_batch() {
    // F.cross_entropy(x[4:], t[4:]) on an exhausted batch: NaN, zero gradient.
    let logits = Tensor::zeros(&[4, 3], DType::F64).set_requires_grad(true);
    let batch = logits.narrow(0, 4, 0);
    let target = Tensor::from_vec(vec![0i64, 1, 2, 0], &[4]).narrow(0, 4, 0);
    let loss = CrossEntropyLoss::new().forward(&batch, &target).unwrap();
    assert!(loss.item::<f64>().is_nan());
    let g = grad(&loss, std::slice::from_ref(&logits), None, false).unwrap()[0].clone().unwrap();
    same(&g.to_vec::<f64>(), &[0.0; 12]);

    // A [1, 3, 0] slice at offset 2 of [4, 3, 0] logits (PyTorch: NaN, gradient of shape
    // [4, 3, 0]).
    let logits = Tensor::zeros(&[4, 3, 0], DType::F64).set_requires_grad(true);
    let batch = logits.narrow(0, 2, 1);
    let target = Tensor::zeros(&[4, 0], DType::I64).narrow(0, 2, 1);
    let loss = CrossEntropyLoss::new().forward(&batch, &target).unwrap();
    assert!(loss.item::<f64>().is_nan());
    let g = grad(&loss, std::slice::from_ref(&logits), None, false).unwrap()[0].clone().unwrap();
    assert_eq!(g.shape(), &[4, 3, 0]);
    let per_sample = CrossEntropyLoss::new().reduction(tensorbrain::nn::Reduction::None).forward(&batch, &target).unwrap();
    assert_eq!(per_sample.shape(), &[1, 0]);
}

#[test]
fn cross_entropy_on_an_empty_batch() {
    let logits = Tensor::zeros(&[4, 3], DType::F64).set_requires_grad(true);
    let batch = logits.narrow(0, 4, 0);
    let target = Tensor::from_vec(vec![0i64, 1, 2, 0], &[4]).narrow(0, 4, 0);
    let loss = CrossEntropyLoss::new().forward(&batch, &target).unwrap();
    assert!(loss.item::<f64>().is_nan(), "the mean of no samples is NaN, as in PyTorch");
    let g = grad(&loss, std::slice::from_ref(&logits), None, false).unwrap()[0].clone().unwrap();
    same(&g.to_vec::<f64>(), &[0.0; 12]);
    let per_sample = CrossEntropyLoss::new().reduction(tensorbrain::nn::Reduction::None).forward(&batch, &target).unwrap();
    assert_eq!(per_sample.shape(), &[0]);
}
