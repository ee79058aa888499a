//! Elementwise unary ops: forward values, PyTorch's subgradient conventions, first and second
//! derivatives against finite differences, half-precision forwards, and dtype errors.

use tensorbrain::autograd::{grad, gradcheck, gradgradcheck, GradcheckOptions};
use tensorbrain::{DType, Result, Tensor};

type Op = fn(&Tensor) -> Result<Tensor>;

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape)
}

fn assert_close(got: &[f64], want: &[f64], rtol: f64, atol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() { g.is_nan() } else { (g - w).abs() <= atol + rtol * w.abs() };
        assert!(ok, "{what}[{i}]: got {g}, want {w} (all: {got:?})");
    }
}

/// Forward then first derivative of `sum(f(x))` at the given f64 points.
fn value_and_grad(f: Op, v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let x = t64(v, &[v.len()]).set_requires_grad(true);
    let y = f(&x).unwrap();
    let g = grad(&y.sum_all(), &[x], None, false).unwrap()[0].clone().unwrap();
    (y.to_vec::<f64>(), g.to_vec::<f64>())
}

// ------------------------------------------------------------------------------------------
// gradcheck / gradgradcheck
// ------------------------------------------------------------------------------------------

/// Mixed-sign values kept away from every kink (0, ±0.5, 20) used below.
const MIXED: [f64; 12] = [-2.1, -1.3, -0.8, -0.35, -0.12, 0.07, 0.31, 0.66, 0.93, 1.4, 2.2, 3.05];
/// Positive values for sqrt, rsqrt, log, log1p, reciprocal.
const POSITIVE: [f64; 12] = [0.3, 0.45, 0.6, 0.8, 1.0, 1.25, 1.5, 1.9, 2.3, 2.8, 3.3, 4.1];

/// Ops whose derivative is piecewise constant: their first-order gradient does not depend on
/// the input through the graph, so gradgradcheck of the bare op has nothing to differentiate.
const PIECEWISE_LINEAR: [&str; 7] = ["neg", "abs", "relu", "leaky_relu", "clamp_both", "clamp_min", "clamp_max"];

fn ops() -> Vec<(&'static str, Op, bool)> {
    // (name, op, needs positive input)
    vec![
        ("neg", |x| x.try_neg(), false),
        ("exp", |x| x.try_exp(), false),
        ("log", |x| x.try_log(), true),
        ("log1p", |x| x.try_log1p(), true),
        ("sqrt", |x| x.try_sqrt(), true),
        ("rsqrt", |x| x.try_rsqrt(), true),
        ("square", |x| x.try_square(), false),
        ("reciprocal", |x| x.try_reciprocal(), true),
        ("abs", |x| x.try_abs(), false),
        ("sin", |x| x.try_sin(), false),
        ("cos", |x| x.try_cos(), false),
        ("tanh", |x| x.try_tanh(), false),
        ("sigmoid", |x| x.try_sigmoid(), false),
        ("erf", |x| x.try_erf(), false),
        ("relu", |x| x.try_relu(), false),
        ("leaky_relu", |x| x.try_leaky_relu(0.1), false),
        ("elu", |x| x.try_elu(0.7), false),
        ("gelu", |x| x.try_gelu(), false),
        ("gelu_tanh", |x| x.try_gelu_tanh(), false),
        ("silu", |x| x.try_silu(), false),
        ("softplus", |x| x.try_softplus(), false),
        ("clamp_both", |x| x.try_clamp(Some(-0.5), Some(0.5)), false),
        ("clamp_min", |x| x.try_clamp(Some(-0.5), None), false),
        ("clamp_max", |x| x.try_clamp(None, Some(0.5)), false),
    ]
}

fn input_for(positive: bool) -> &'static [f64] {
    if positive {
        &POSITIVE
    } else {
        &MIXED
    }
}

/// gradcheck and gradgradcheck of `f`, plus gradgradcheck of `y * tanh(y)` with `y = f(x)`:
/// there the gradient reaching `f`'s backward depends on `x`, so the rule must also be
/// differentiable in the gradient it receives (the only second-order path for
/// piecewise-linear ops).
fn check_both(name: &str, what: &str, f: impl Fn(&[Tensor]) -> Result<Tensor> + Copy, x: &Tensor) {
    let opts = GradcheckOptions::default();
    let xs = std::slice::from_ref(x);
    gradcheck(f, xs, opts).unwrap_or_else(|e| panic!("{name} ({what}) gradcheck: {e}"));
    if !PIECEWISE_LINEAR.contains(&name) {
        gradgradcheck(f, xs, opts).unwrap_or_else(|e| panic!("{name} ({what}) gradgradcheck: {e}"));
    }
    let g = move |xs: &[Tensor]| {
        let y = f(xs)?;
        y.try_mul(&y.try_tanh()?)
    };
    gradgradcheck(g, xs, opts).unwrap_or_else(|e| panic!("{name} ({what}) gradgradcheck of y*tanh(y): {e}"));
}

#[test]
fn gradcheck_and_gradgradcheck_contiguous() {
    for (name, op, pos) in ops() {
        let x = t64(input_for(pos), &[3, 4]);
        check_both(name, "3x4", |xs| op(&xs[0]), &x);
    }
}

#[test]
fn gradcheck_and_gradgradcheck_transposed_input() {
    // The op sees a non-contiguous [4, 3] view of the leaf.
    for (name, op, pos) in ops() {
        let x = t64(input_for(pos), &[3, 4]);
        let f = move |xs: &[Tensor]| {
            let v = xs[0].try_transpose(0, 1)?;
            assert!(!v.is_contiguous());
            op(&v)
        };
        check_both(name, "transposed", f, &x);
    }
}

#[test]
fn gradcheck_and_gradgradcheck_strided_slice_and_size1() {
    for (name, op, pos) in ops() {
        // Every other column of a [2, 6] leaf: a stepped, non-contiguous view.
        let x = t64(input_for(pos), &[2, 6]);
        check_both(name, "slice step 2", move |xs: &[Tensor]| op(&xs[0].try_slice(-1, 0, 6, 2)?), &x);
        // Size-1 dims, and a 0-d scalar.
        let x1 = t64(&input_for(pos)[5..6], &[1, 1, 1]);
        check_both(name, "size-1", move |xs: &[Tensor]| op(&xs[0]), &x1);
        let x0 = Tensor::scalar(input_for(pos)[7]);
        check_both(name, "0-d", move |xs: &[Tensor]| op(&xs[0]), &x0);
    }
}

#[test]
fn size_zero_forward_and_backward() {
    for (name, op, _) in ops() {
        let x = Tensor::zeros(&[0, 3], DType::F64).set_requires_grad(true);
        let y = op(&x).unwrap();
        assert_eq!(y.shape(), &[0, 3], "{name}");
        let g = grad(&y.sum_all(), std::slice::from_ref(&x), None, false).unwrap()[0].clone();
        if let Some(g) = g {
            assert_eq!(g.shape(), &[0, 3], "{name} grad");
        }
        gradcheck(|xs| op(&xs[0]), &[Tensor::zeros(&[0, 3], DType::F64)], GradcheckOptions::default())
            .unwrap_or_else(|e| panic!("{name} size-0 gradcheck: {e}"));
    }
}

#[test]
fn softplus_gradcheck_in_both_regions() {
    // Far tail, the smooth region near the threshold, and the linear region above it.
    let x = t64(&[-25.0, -3.0, 18.5, 19.5, 21.0, 30.0], &[2, 3]);
    check_both("softplus", "regions", |xs| xs[0].try_softplus(), &x);
}

#[test]
fn gradgradcheck_with_large_inputs_stays_finite() {
    // elu's negative branch must not produce 0 * inf = NaN for large positive inputs in double
    // backward; gelu/silu/sigmoid tails must be finite too.
    let x = t64(&[-40.0, -8.0, 8.0, 40.0, 800.0], &[5]);
    for (name, op) in [
        ("elu", (|x| x.try_elu(1.3)) as Op),
        ("silu", |x| x.try_silu()),
        ("sigmoid", |x| x.try_sigmoid()),
        ("gelu", |x| x.try_gelu()),
        ("softplus", |x| x.try_softplus()),
    ] {
        let xr = x.detach().set_requires_grad(true);
        let y = op(&xr).unwrap().sum_all();
        let g = grad(&y, std::slice::from_ref(&xr), None, true).unwrap()[0].clone().unwrap();
        let gg = grad(&g.sum_all(), std::slice::from_ref(&xr), None, false).unwrap()[0].clone().unwrap();
        for v in g.to_vec::<f64>().into_iter().chain(gg.to_vec::<f64>()) {
            assert!(v.is_finite(), "{name}: non-finite derivative in {:?} / {:?}", g.to_vec::<f64>(), gg.to_vec::<f64>());
        }
    }
}

// ------------------------------------------------------------------------------------------
// forward values
// ------------------------------------------------------------------------------------------

/// (name, op output, scalar reference).
type Case = (&'static str, Tensor, fn(f64) -> f64);

#[test]
fn forward_basic_math_matches_std() {
    let v = [0.25, 1.0, 2.25, 4.0, 9.5];
    let x = t64(&v, &[5]);
    let cases: [Case; 9] = [
        ("sqrt", x.sqrt(), f64::sqrt),
        ("rsqrt", x.rsqrt(), |a| 1.0 / a.sqrt()),
        ("square", x.square(), |a| a * a),
        ("reciprocal", x.reciprocal(), |a| 1.0 / a),
        ("log1p", x.log1p(), f64::ln_1p),
        ("sin", x.sin(), f64::sin),
        ("cos", x.cos(), f64::cos),
        ("tanh", x.tanh(), f64::tanh),
        ("sigmoid", x.sigmoid(), |a| 1.0 / (1.0 + (-a).exp())),
    ];
    for (name, got, f) in cases {
        let want: Vec<f64> = v.iter().map(|&a| f(a)).collect();
        assert_close(&got.to_vec::<f64>(), &want, 1e-15, 0.0, name);
    }
    assert_eq!(x.sqrt().to_vec::<f64>(), [0.5, 1.0, 1.5, 2.0, 9.5f64.sqrt()]);
    assert_eq!(x.rsqrt().to_vec::<f64>()[..4], [2.0, 1.0, 1.0 / 1.5, 0.5]);
    assert_eq!(t64(&[-3.0, -0.0, 2.5], &[3]).abs().to_vec::<f64>(), [3.0, 0.0, 2.5]);
    assert_eq!(t64(&[0.0], &[1]).sigmoid().to_vec::<f64>(), [0.5]);
    assert_eq!(t64(&[-1000.0, 1000.0], &[2]).sigmoid().to_vec::<f64>(), [0.0, 1.0]);
    assert_eq!(t64(&[-1000.0, 1000.0], &[2]).tanh().to_vec::<f64>(), [-1.0, 1.0]);
    let s = t64(&[std::f64::consts::FRAC_PI_2, 0.0], &[2]);
    assert_close(&s.sin().to_vec::<f64>(), &[1.0, 0.0], 0.0, 1e-16, "sin");
    assert_close(&s.cos().to_vec::<f64>(), &[0.0, 1.0], 0.0, 1e-16, "cos");
}

#[test]
fn forward_activations_match_reference_values() {
    // References: PyTorch 2.x in float64.
    let x = t64(&[-2.0, -1.0, -0.25, 0.0, 0.5, 1.0, 3.0], &[7]);
    let gelu = [-0.04550026389635842, -0.15865525393145702, -0.10032341857926907, 0.0, 0.34573123063700656, 0.841344746068543, 2.99595030590511];
    let gelu_tanh = [-0.04540230591222494, -0.15880800939172324, -0.100324649298315, 0.0, 0.34571400982514394, 0.8411919906082768, 2.996362607918227];
    let silu = [-0.2384058440442351, -0.2689414213699951, -0.10945587477855048, 0.0, 0.3112296656009273, 0.7310585786300049, 2.8577223804672998];
    let erf = [-0.9953222650189527, -0.8427007929497149, -0.27632639016823696, 0.0, 0.5204998778130465, 0.8427007929497149, 0.9999779095030014];
    assert_close(&x.gelu().to_vec::<f64>(), &gelu, 1e-14, 1e-16, "gelu");
    assert_close(&x.gelu_tanh().to_vec::<f64>(), &gelu_tanh, 1e-14, 1e-16, "gelu_tanh");
    assert_close(&x.silu().to_vec::<f64>(), &silu, 1e-14, 1e-16, "silu");
    assert_close(&x.erf().to_vec::<f64>(), &erf, 1e-14, 1e-16, "erf");

    assert_eq!(x.relu().to_vec::<f64>(), [0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 3.0]);
    assert_eq!(x.leaky_relu(0.1).to_vec::<f64>(), [-0.2, -0.1, -0.025, 0.0, 0.5, 1.0, 3.0]);
    let e = x.elu(0.5).to_vec::<f64>();
    let want: Vec<f64> = [-2.0f64, -1.0, -0.25, 0.0].iter().map(|&a| 0.5 * (a.exp() - 1.0)).chain([0.5, 1.0, 3.0]).collect();
    assert_close(&e, &want, 1e-15, 0.0, "elu");
}

#[test]
fn softplus_threshold_and_tails() {
    let x = t64(&[-25.0, 0.0, 1.0, 20.0, 20.5, 25.0], &[6]);
    let want = [(-25f64).exp().ln_1p(), std::f64::consts::LN_2, 1f64.exp().ln_1p(), 20f64.exp().ln_1p(), 20.5, 25.0];
    let got = x.softplus().to_vec::<f64>();
    assert_close(&got, &want, 1e-14, 0.0, "softplus");
    // Exactly x above the threshold; smooth (slightly above x) at the threshold itself.
    assert_eq!(got[4], 20.5);
    assert!(got[3] > 20.0);
    let (_, g) = value_and_grad(|x| x.try_softplus(), &[-25.0, 0.0, 20.0, 25.0]);
    assert_close(&g, &[(-25f64).exp() / (1.0 + (-25f64).exp()), 0.5, 1.0 / (1.0 + (-20f64).exp()), 1.0], 1e-12, 0.0, "softplus'");
    assert_eq!(g[3], 1.0);
}

#[test]
fn clamp_forward_and_bounds() {
    let x = t64(&[-1.0, -0.5, 0.0, 0.3, 0.5, 2.0], &[6]);
    assert_eq!(x.clamp(Some(-0.5), Some(0.5)).to_vec::<f64>(), [-0.5, -0.5, 0.0, 0.3, 0.5, 0.5]);
    assert_eq!(x.clamp(None, Some(0.1)).to_vec::<f64>(), [-1.0, -0.5, 0.0, 0.1, 0.1, 0.1]);
    assert_eq!(x.clamp(Some(0.1), None).to_vec::<f64>(), [0.1, 0.1, 0.1, 0.3, 0.5, 2.0]);
    // min > max: everything becomes max, like torch.clamp.
    assert_eq!(x.clamp(Some(1.5), Some(0.5)).to_vec::<f64>(), [0.5; 6]);
    // Gradient 1 strictly inside, 0 at the bounds and outside (PyTorch 2.15).
    let (_, g) = value_and_grad(|x| x.try_clamp(Some(-0.5), Some(0.5)), &[-1.0, -0.5, 0.0, 0.3, 0.5, 2.0]);
    assert_eq!(g, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    let (_, g) = value_and_grad(|x| x.try_clamp(Some(1.5), Some(0.5)), &[0.0, 1.0, 2.0]);
    assert_eq!(g, [0.0, 0.0, 0.0]);
    let (_, g) = value_and_grad(|x| x.try_clamp(None, Some(0.1)), &[-1.0, 0.1, 0.2]);
    assert_eq!(g, [1.0, 0.0, 0.0]);
}

#[test]
fn nan_propagates_like_pytorch() {
    let (y, g) = value_and_grad(|x| x.try_relu(), &[f64::NAN]);
    assert!(y[0].is_nan());
    assert_eq!(g, [0.0]);
    let (y, g) = value_and_grad(|x| x.try_clamp(Some(-1.0), Some(1.0)), &[f64::NAN]);
    assert!(y[0].is_nan());
    assert_eq!(g, [0.0]);
    let (y, g) = value_and_grad(|x| x.try_abs(), &[f64::NAN]);
    assert!(y[0].is_nan());
    assert_eq!(g, [0.0]);
    for f in [(|x| x.try_leaky_relu(0.1)) as Op, |x| x.try_elu(1.0), |x| x.try_gelu(), |x| x.try_sigmoid()] {
        assert!(value_and_grad(f, &[f64::NAN]).0[0].is_nan());
    }
}

#[test]
fn subgradients_at_kinks_match_pytorch() {
    let (_, g) = value_and_grad(|x| x.try_relu(), &[-1.0, 0.0, 1.0]);
    assert_eq!(g, [0.0, 0.0, 1.0], "relu'(0) = 0");
    let (_, g) = value_and_grad(|x| x.try_abs(), &[-2.0, 0.0, 3.0]);
    assert_eq!(g, [-1.0, 0.0, 1.0], "abs'(0) = 0");
    let (_, g) = value_and_grad(|x| x.try_leaky_relu(0.2), &[-1.0, 0.0, 1.0]);
    assert_eq!(g, [0.2, 0.2, 1.0], "leaky_relu'(0) = negative_slope");
    let (_, g) = value_and_grad(|x| x.try_elu(0.5), &[-1.0, 0.0, 1.0]);
    assert_close(&g, &[0.5 * (-1f64).exp(), 0.5, 1.0], 1e-15, 0.0, "elu'(0) = alpha");
    let (_, g) = value_and_grad(|x| x.try_gelu(), &[0.0]);
    assert_eq!(g, [0.5]);
}

#[test]
fn derivative_values_match_reference() {
    let v = [-2.0, -1.0, -0.25, 0.0, 0.5, 1.0, 3.0];
    let dgelu = [-0.08523180107819692, -0.08331547058768635, 0.304626645116364, 0.5, 0.8674951246561629, 1.0833154705876864, 1.011945647204184];
    let dgelu_tanh = [-0.0860992566236183, -0.08296408384578252, 0.30464590484893955, 0.5, 0.8673699035346424, 1.0829640838457826, 1.0115841666309695];
    let dsilu = [-0.09078424878489547, 0.07232948812851325, 0.37628997842980233, 0.5, 0.7399611873026519, 0.9276705118714869, 1.0881041060151693];
    assert_close(&value_and_grad(|x| x.try_gelu(), &v).1, &dgelu, 1e-13, 1e-16, "gelu'");
    assert_close(&value_and_grad(|x| x.try_gelu_tanh(), &v).1, &dgelu_tanh, 1e-13, 1e-16, "gelu_tanh'");
    assert_close(&value_and_grad(|x| x.try_silu(), &v).1, &dsilu, 1e-13, 1e-16, "silu'");
    let (y, g) = value_and_grad(|x| x.try_tanh(), &v);
    let want: Vec<f64> = y.iter().map(|t| 1.0 - t * t).collect();
    assert_close(&g, &want, 1e-15, 0.0, "tanh'");
    let (_, g) = value_and_grad(|x| x.try_rsqrt(), &[0.25, 4.0]);
    assert_close(&g, &[-4.0, -1.0 / 16.0], 1e-15, 0.0, "rsqrt'");
    let (_, g) = value_and_grad(|x| x.try_sqrt(), &[0.25, 4.0]);
    assert_close(&g, &[1.0, 0.25], 1e-15, 0.0, "sqrt'");
}

#[test]
fn saved_output_and_recomputed_output_give_the_same_gradient() {
    // Ops whose rule needs their output use the saved output in a plain backward and recompute
    // it under create_graph: both paths must agree, and only the second is differentiable.
    let x = t64(&[0.3, 1.7], &[2]).set_requires_grad(true);
    for (name, op) in [("sigmoid", (|x| x.try_sigmoid()) as Op), ("tanh", |x| x.try_tanh()), ("sqrt", |x| x.try_sqrt()), ("rsqrt", |x| x.try_rsqrt()), ("reciprocal", |x| x.try_reciprocal())] {
        let y = op(&x).unwrap();
        assert_eq!(y.grad_fn_name(), Some(name));
        let g1 = grad(&y.sum_all(), std::slice::from_ref(&x), None, false).unwrap()[0].clone().unwrap();
        let g2 = grad(&op(&x).unwrap().sum_all(), std::slice::from_ref(&x), None, true).unwrap()[0].clone().unwrap();
        assert_eq!(g1.to_vec::<f64>(), g2.to_vec::<f64>(), "{name}");
        assert!(!g1.requires_grad(), "{name}: plain backward must not build a graph");
        assert!(g2.requires_grad(), "{name}: create_graph gradient must be differentiable");
    }
}

// ------------------------------------------------------------------------------------------
// dtypes
// ------------------------------------------------------------------------------------------

#[test]
fn f32_f16_bf16_forward_match_f64() {
    let v = [-2.5, -1.0, -0.3, 0.2, 0.7, 1.0, 2.0, 3.5];
    let pos = [0.1, 0.5, 0.9, 1.0, 1.5, 2.0, 3.0, 7.0];
    for (name, op, positive) in ops() {
        let data: &[f64] = if positive { &pos } else { &v };
        let want = op(&t64(data, &[2, 4])).unwrap().to_vec::<f64>();
        for (dtype, rtol, atol) in [(DType::F32, 1e-6, 1e-6), (DType::F16, 2e-3, 2e-3), (DType::BF16, 1.6e-2, 1e-2)] {
            // Tight: against the op applied in f64 to the input as rounded to `dtype`.
            let x = t64(data, &[2, 4]).to_dtype(dtype);
            let rounded = op(&x.to_dtype(DType::F64)).unwrap().to_vec::<f64>();
            let y = op(&x).unwrap();
            assert_eq!(y.dtype(), dtype, "{name}");
            assert_eq!(y.shape(), &[2, 4]);
            let got = y.to_dtype(DType::F64).to_vec::<f64>();
            assert_close(&got, &rounded, rtol, atol, &format!("{name} {dtype:?}"));
            // And loosely against the unrounded f64 reference.
            assert_close(&got, &want, 20.0 * rtol, 20.0 * atol, &format!("{name} {dtype:?} vs f64"));
        }
    }
}

#[test]
fn half_sigmoid_computes_in_f32() {
    // e^12 overflows f16, but sigmoid(-12) ≈ 6.1e-6 is representable: computing in f32 gets it.
    let x = Tensor::from_slice(&[-12.0f64, 12.0], &[2]).to_dtype(DType::F16);
    let y = x.sigmoid().to_dtype(DType::F64).to_vec::<f64>();
    assert!((y[0] - 6.144e-6).abs() < 1e-7, "{y:?}");
    assert_eq!(y[1], 1.0);
}

#[test]
fn half_backward_runs() {
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let x = Tensor::from_slice(&[-1.0f64, 0.5, 2.0], &[3]).to_dtype(dtype).set_requires_grad(true);
        let y = x.gelu().add(&x.sigmoid()).add(&x.clamp(Some(0.0), None)).add(&x.elu(1.0)).sum_all();
        y.backward();
        let g = x.grad().unwrap();
        assert_eq!(g.dtype(), dtype);
        let want = value_and_grad(|x| x.try_gelu()?.try_add(&x.try_sigmoid()?)?.try_add(&x.try_clamp(Some(0.0), None)?)?.try_add(&x.try_elu(1.0)?), &[-1.0, 0.5, 2.0]).1;
        assert_close(&g.to_dtype(DType::F64).to_vec::<f64>(), &want, 2e-2, 2e-2, &format!("{dtype:?} grad"));
    }
}

// ------------------------------------------------------------------------------------------
// errors
// ------------------------------------------------------------------------------------------

#[test]
fn integer_inputs_compute_in_f32_like_pytorch() {
    // torch.exp(torch.tensor([1, 2, 3])) is float32; neg and abs keep integers integral.
    let x = Tensor::from_slice(&[1i64, 2, 3], &[3]);
    let y = x.exp();
    assert_eq!(y.dtype(), DType::F32);
    assert!((y.to_vec::<f32>()[1] - 2f32.exp()).abs() < 1e-5);
    for (name, op, _) in ops() {
        let y = op(&x).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = if name == "neg" || name == "abs" { DType::I64 } else { DType::F32 };
        assert_eq!(y.dtype(), want, "{name}");
    }
    assert_eq!(x.neg().to_vec::<i64>(), [-1, -2, -3]);
    assert_eq!(Tensor::from_slice(&[1i32], &[1]).gelu().dtype(), DType::F32);
}

#[test]
#[should_panic(expected = "neg")]
fn panicking_form_names_the_op() {
    // Integer inputs compute in f32 as in PyTorch; negating a bool is refused, as there.
    Tensor::from_slice(&[true], &[1]).neg();
}

#[test]
fn clamp_needs_a_bound() {
    let x = t64(&[1.0, 2.0], &[2]);
    let err = x.try_clamp(None, None).unwrap_err().to_string();
    assert!(err.contains("clamp") && err.contains("min") && err.contains("[2]"), "{err}");
    let err = x.try_clamp(Some(f64::NAN), None).unwrap_err().to_string();
    assert!(err.contains("clamp") && err.contains("NaN"), "{err}");
}
