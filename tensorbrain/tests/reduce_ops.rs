//! Reductions: forward values by hand, gradients against finite differences (first and second
//! order), tie and zero handling, empty reductions, error messages, and the sum kernel's
//! layout paths against a naive reference.

use tensorbrain::autograd::{gradcheck, gradgradcheck, GradcheckOptions};
use tensorbrain::{DType, Result, Tensor};

fn t32(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape)
}

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape)
}

/// Deterministic, pairwise-distinct-ish f64 values in roughly [-2, 2].
fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|k| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            -2.0 + 4.0 * u + 1e-3 * k as f64
        })
        .collect()
}

fn rand64(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(data(shape.iter().product(), seed), shape)
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "lengths differ: {a:?} vs {b:?}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= tol * (1.0 + y.abs());
        assert!(ok, "element {i}: {x} vs {y} (got {a:?}, want {b:?})");
    }
}

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

type Op = fn(&Tensor, &[isize], bool) -> Result<Tensor>;

/// A reduction as a plain function pointer: `op!(x, d, k => x.try_sum(d, k))`.
macro_rules! op {
    ($x:ident, $d:ident, $k:ident => $body:expr) => {{
        fn f($x: &Tensor, $d: &[isize], $k: bool) -> Result<Tensor> {
            $body
        }
        f as Op
    }};
}

/// The differentiable reductions that share the (dims, keepdim) signature.
fn dim_ops() -> Vec<(&'static str, Op)> {
    vec![
        ("sum", op!(x, d, k => x.try_sum(d, k))),
        ("mean", op!(x, d, k => x.try_mean(d, k))),
        ("prod", op!(x, d, k => x.try_prod(d, k))),
        ("max", op!(x, d, k => x.try_max(d, k))),
        ("min", op!(x, d, k => x.try_min(d, k))),
        ("logsumexp", op!(x, d, k => x.try_logsumexp(d, k))),
        ("var", op!(x, d, k => x.try_var(d, k, 1))),
        ("var_c0", op!(x, d, k => x.try_var(d, k, 0))),
        ("std", op!(x, d, k => x.try_std(d, k, 1))),
        ("std_c0", op!(x, d, k => x.try_std(d, k, 0))),
    ]
}

/// (dims, keepdim) configurations over a rank-3 input.
const CONFIGS: &[(&[isize], bool)] = &[
    (&[], false),
    (&[], true),
    (&[1], false),
    (&[-1], true),
    (&[0, 2], false),
    (&[0, -1], true),
    (&[-3, 1], false),
    (&[0, 1, 2], true),
];

// ---------------------------------------------------------------------------------------------
// Forward values
// ---------------------------------------------------------------------------------------------

#[test]
fn forward_values_by_hand() {
    // [[1, 2, 3], [4, 5, 6]]
    let x = t64(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    assert_eq!(x.sum(&[0], false).to_vec::<f64>(), [5., 7., 9.]);
    assert_eq!(x.sum(&[1], false).to_vec::<f64>(), [6., 15.]);
    assert_eq!(x.sum(&[], false).item::<f64>(), 21.);
    assert_eq!(x.mean(&[1], false).to_vec::<f64>(), [2., 5.]);
    assert_eq!(x.mean(&[0], true).to_vec::<f64>(), [2.5, 3.5, 4.5]);
    assert_eq!(x.prod(&[0], false).to_vec::<f64>(), [4., 10., 18.]);
    assert_eq!(x.prod(&[1], false).to_vec::<f64>(), [6., 120.]);
    assert_eq!(x.prod(&[], false).item::<f64>(), 720.);
    assert_eq!(x.max(&[0], false).to_vec::<f64>(), [4., 5., 6.]);
    assert_eq!(x.max(&[], false).item::<f64>(), 6.);
    assert_eq!(x.min(&[1], false).to_vec::<f64>(), [1., 4.]);
    assert_eq!(x.min(&[], true).shape(), &[1, 1]);
    assert_eq!(x.min(&[], true).to_vec::<f64>(), [1.]);
    // var of [1, 2, 3] = 1 (unbiased) or 2/3 (population); var of all six = 3.5 / 2.9166..
    close(&x.var(&[1], false, 1).to_vec::<f64>(), &[1., 1.], 1e-15);
    close(&x.var(&[1], false, 0).to_vec::<f64>(), &[2. / 3., 2. / 3.], 1e-15);
    close(&x.var(&[0], false, 1).to_vec::<f64>(), &[4.5, 4.5, 4.5], 1e-15);
    close(&[x.var(&[], false, 1).item::<f64>()], &[3.5], 1e-15);
    close(&[x.std(&[], false, 0).item::<f64>()], &[(17.5f64 / 6.0).sqrt()], 1e-15);
    close(&x.std(&[1], true, 1).to_vec::<f64>(), &[1., 1.], 1e-15);
    let lse = |v: &[f64]| v.iter().map(|a| a.exp()).sum::<f64>().ln();
    close(&x.logsumexp(&[1], false).to_vec::<f64>(), &[lse(&[1., 2., 3.]), lse(&[4., 5., 6.])], 1e-14);
    close(&[x.logsumexp(&[], false).item::<f64>()], &[lse(&[1., 2., 3., 4., 5., 6.])], 1e-14);
}

#[test]
fn output_shapes_follow_dims_and_keepdim() {
    let x = rand64(&[2, 3, 4, 5], 1);
    for (name, f) in dim_ops() {
        assert_eq!(f(&x, &[1, -1], false).unwrap().shape(), &[2, 4], "{name}");
        assert_eq!(f(&x, &[1, -1], true).unwrap().shape(), &[2, 1, 4, 1], "{name}");
        assert_eq!(f(&x, &[], false).unwrap().shape(), &[] as &[usize], "{name}");
        assert_eq!(f(&x, &[], true).unwrap().shape(), &[1, 1, 1, 1], "{name}");
        assert_eq!(f(&x, &[-4], false).unwrap().shape(), &[3, 4, 5], "{name}");
    }
}

#[test]
fn middle_and_mixed_dims_match_a_naive_reference() {
    // [2, 3, 4, 5] contiguous: dims {1} and {1, 2} are a middle block read in place; {0, 2}
    // and {1, 3} are copied first; every layout path must agree with a loop.
    let shape = [2usize, 3, 4, 5];
    let v = data(120, 7);
    let x = t64(&v, &shape);
    let at = |a: usize, b: usize, c: usize, d: usize| v[((a * 3 + b) * 4 + c) * 5 + d];
    let mut sum1 = vec![0.0; 2 * 4 * 5];
    let mut max12 = vec![f64::NEG_INFINITY; 2 * 5];
    let mut prod02 = vec![1.0; 3 * 5];
    let mut sum13 = vec![0.0; 2 * 4];
    for a in 0..2 {
        for b in 0..3 {
            for c in 0..4 {
                for d in 0..5 {
                    let e = at(a, b, c, d);
                    sum1[(a * 4 + c) * 5 + d] += e;
                    max12[a * 5 + d] = max12[a * 5 + d].max(e);
                    prod02[b * 5 + d] *= e;
                    sum13[a * 4 + c] += e;
                }
            }
        }
    }
    close(&x.sum(&[1], false).to_vec::<f64>(), &sum1, 1e-14);
    close(&x.max(&[1, 2], false).to_vec::<f64>(), &max12, 0.0);
    close(&x.prod(&[0, 2], false).to_vec::<f64>(), &prod02, 1e-13);
    close(&x.sum(&[1, 3], false).to_vec::<f64>(), &sum13, 1e-14);
    // A size-1 dim between reduced dims does not break the in-place block.
    let y = x.reshape(&[2, 3, 1, 4, 5]);
    close(&y.sum(&[1, 3], false).to_vec::<f64>(), &{
        let mut s = vec![0.0; 2 * 5];
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..4 {
                    for d in 0..5 {
                        s[a * 5 + d] += at(a, b, c, d);
                    }
                }
            }
        }
        s
    }, 1e-14);
}

#[test]
fn non_contiguous_inputs_reduce_like_their_contiguous_copies() {
    let x = rand64(&[4, 3, 5], 3);
    let views = [x.transpose(0, 2), x.slice(2, 1, 5, 2), x.permute(&[1, 2, 0]), x.slice(0, 0, 4, 3).transpose(1, 2)];
    for v in &views {
        let c = v.contiguous();
        for (name, f) in dim_ops() {
            for &(dims, kd) in CONFIGS {
                let a = f(v, dims, kd).unwrap();
                let b = f(&c, dims, kd).unwrap();
                assert_eq!(a.shape(), b.shape(), "{name} {dims:?}");
                close(&a.to_vec::<f64>(), &b.to_vec::<f64>(), 1e-13);
            }
        }
    }
}

#[test]
fn var_is_two_pass_and_stable_with_a_large_offset() {
    // A naive E[x^2] - E[x]^2 loses every digit here; two passes are exact.
    let x = t64(&[1e12 + 1., 1e12 + 2., 1e12 + 3., 1e12 + 4.], &[4]);
    close(&[x.var(&[], false, 1).item::<f64>()], &[5.0 / 3.0], 1e-12);
    close(&[x.var(&[], false, 0).item::<f64>()], &[1.25], 1e-12);
    close(&[x.std(&[0], false, 0).item::<f64>()], &[1.25f64.sqrt()], 1e-12);
    let y = t32(&[10000.1, 10000.2, 10000.3, 10000.4], &[4]);
    let want = {
        let v: Vec<f64> = [10000.1f32, 10000.2, 10000.3, 10000.4].iter().map(|&a| a as f64).collect();
        let m = v.iter().sum::<f64>() / 4.0;
        v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / 3.0
    };
    close(&[y.var(&[], false, 1).item::<f32>() as f64], &[want], 1e-6);
}

#[test]
fn var_with_too_few_elements_is_nan_or_inf_like_pytorch() {
    let one = t64(&[3.0], &[1]);
    assert!(one.var(&[], false, 1).item::<f64>().is_nan());
    assert_eq!(one.var(&[], false, 0).item::<f64>(), 0.0);
    let two = t64(&[1.0, 2.0], &[2]);
    assert_eq!(two.var(&[], false, 2).item::<f64>(), f64::INFINITY);
}

#[test]
fn logsumexp_is_stable() {
    let x = t32(&[1000., 1000., -1000., -1000.], &[2, 2]);
    close(
        &x.logsumexp(&[1], false).to_vec::<f32>().iter().map(|&a| a as f64).collect::<Vec<_>>(),
        &[1000. + 2f64.ln(), -1000. + 2f64.ln()],
        1e-6,
    );
    let inf = f64::INFINITY;
    let y = t64(&[-inf, -inf, inf, 1.0, f64::NAN, 0.0], &[3, 2]);
    let out = y.logsumexp(&[1], false).to_vec::<f64>();
    assert_eq!(out[0], -inf);
    assert_eq!(out[1], inf);
    assert!(out[2].is_nan());
    // Reducing nothing: log(0) = -inf.
    assert_eq!(Tensor::zeros(&[0, 3], DType::F64).logsumexp(&[0], false).to_vec::<f64>(), [-inf; 3]);
}

#[test]
fn max_and_min_propagate_nan() {
    let x = t64(&[1.0, f64::NAN, 3.0, 2.0, 5.0, 4.0], &[2, 3]);
    let mx = x.max(&[1], false).to_vec::<f64>();
    assert!(mx[0].is_nan());
    assert_eq!(mx[1], 5.0);
    let mn = x.min(&[1], false).to_vec::<f64>();
    assert!(mn[0].is_nan());
    assert_eq!(mn[1], 2.0);
}

#[test]
fn integer_max_min_and_argmax() {
    let x = Tensor::from_vec(vec![3i64, -7, 9, 9, 0, -7], &[2, 3]);
    assert_eq!(x.max(&[1], false).to_vec::<i64>(), [9, 9]);
    assert_eq!(x.min(&[], false).item::<i64>(), -7);
    assert_eq!(x.argmax(Some(1), false).to_vec::<i64>(), [2, 0]);
    assert_eq!(x.argmin(None, false).item::<i64>(), 1);
    // Integer sums and products are i64, as in PyTorch.
    assert_eq!(x.sum(&[], false).item::<i64>(), 7);
    assert_eq!(x.sum(&[1], false).to_vec::<i64>(), [5, 2]);
    assert_eq!(x.prod(&[0], false).to_vec::<i64>(), [27, 0, -63]);
}

#[test]
fn half_precision_reductions() {
    let v: Vec<f32> = (0..100).map(|i| (i as f32) * 0.25).collect();
    for dtype in [DType::F16, DType::BF16] {
        let x = Tensor::from_slice(&v, &[10, 10]).to_dtype(dtype);
        let s = x.sum(&[], false);
        assert_eq!(s.dtype(), dtype);
        close(&[s.to_vec::<f32>()[0] as f64], &[1237.5], 4e-3);
        close(&[x.max(&[], false).to_vec::<f32>()[0] as f64], &[24.75], 0.0);
        close(&[x.mean(&[], false).to_vec::<f32>()[0] as f64], &[12.375], 4e-3);
    }
}

// ---------------------------------------------------------------------------------------------
// Sum kernel paths and precision
// ---------------------------------------------------------------------------------------------

/// Exact-ish reference sum over `dims` in f64 by explicit indexing.
fn naive_sum(v: &[f32], shape: &[usize], dims: &[usize]) -> Vec<f64> {
    let rank = shape.len();
    let out_shape: Vec<usize> = (0..rank).filter(|d| !dims.contains(d)).map(|d| shape[d]).collect();
    let mut out = vec![0.0f64; out_shape.iter().product()];
    let mut idx = vec![0usize; rank];
    for &e in v {
        let mut o = 0;
        for d in 0..rank {
            if !dims.contains(&d) {
                o = o * shape[d] + idx[d];
            }
        }
        out[o] += e as f64;
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

#[test]
fn sum_paths_match_a_naive_reference_small_and_parallel() {
    // Shapes chosen to hit each kernel path: rows (serial / parallel over rows / split long
    // rows), leading-dim columns (serial / parallel over outer / column blocks / row blocks).
    let cases: &[(&[usize], &[usize])] = &[
        (&[64, 40], &[1]),
        (&[64, 40], &[0]),
        (&[300, 200], &[1]),
        (&[2, 70000], &[1]),
        (&[1024, 1024], &[0]),
        (&[40000, 3], &[0]),
        (&[16, 100, 50], &[1]),
        (&[3, 4000, 9], &[1]),
        (&[2, 600, 700], &[1]),
        (&[50, 30, 40], &[0, 1]),
        (&[50, 30, 40], &[0, 2]),
        // Kept dims as one middle block, folded in place: NCHW over [0, 2, 3] (serial and
        // parallel inside each sample), two kept dims, and a size-1 dim inside the block.
        (&[8, 16, 32, 32], &[0, 2, 3]),
        (&[3, 4, 5, 6], &[0, 3]),
        (&[4, 3, 1, 5, 7], &[0, 4]),
    ];
    for &(shape, dims) in cases {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = data(n, n as u64).into_iter().map(|a| a as f32).collect();
        let x = Tensor::from_slice(&v, shape);
        let sd: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
        let got: Vec<f64> = x.sum(&sd, false).to_vec::<f32>().iter().map(|&a| a as f64).collect();
        let want = naive_sum(&v, shape, dims);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // The only error left is the final rounding to f32 (relative to the sum of |x|).
            let mag: f64 = v.len() as f64 / want.len() as f64 * 2.0;
            assert!((g - w).abs() <= 1e-6 * mag.max(w.abs()), "{shape:?} {dims:?} [{i}]: {g} vs {w}");
        }
    }
}

#[test]
fn sums_do_not_depend_on_the_thread_count() {
    // Each path cuts the work by sizes only; the thread budget only decides whether the pieces
    // run in parallel, so one and two threads must give the same bits (the shapes reach the
    // NCHW block path, long rows split in pieces, row blocks of narrow columns, rows shared
    // out whole, and one long sum of everything).
    let cases: &[(&[usize], &[isize])] = &[(&[32, 32, 32, 32], &[0, 2, 3]), (&[2, 70000], &[1]), (&[40000, 3], &[0]), (&[300, 200], &[1]), (&[1 << 20], &[])];
    for &(shape, dims) in cases {
        let n: usize = shape.iter().product();
        let x = Tensor::from_slice(&data(n, 7).into_iter().map(|a| a as f32).collect::<Vec<_>>(), shape);
        let before = tensorbrain::num_threads();
        let sums: Vec<Vec<u32>> = [1, 2]
            .iter()
            .map(|&t| {
                tensorbrain::set_num_threads(t);
                x.sum(dims, false).to_vec::<f32>().iter().map(|v| v.to_bits()).collect()
            })
            .collect();
        tensorbrain::set_num_threads(before);
        assert_eq!(sums[0], sums[1], "{shape:?} over {dims:?}");
    }
}

#[test]
fn long_f32_sums_stay_accurate() {
    // 10^4 (and 10^6) f32 values of one sign: within 1e-6 relative of the f64 sum, which is
    // tighter than PyTorch's rtol 1e-5 parity tolerance.
    for n in [10_000usize, 1_000_000] {
        let v: Vec<f32> = (0..n).map(|i| 0.1 + (i % 97) as f32 * 0.013).collect();
        let want: f64 = v.iter().map(|&a| a as f64).sum();
        let got = Tensor::from_slice(&v, &[n]).sum(&[], false).item::<f32>() as f64;
        assert!((got - want).abs() <= 1e-6 * want, "n={n}: {got} vs {want}");
        let mean = Tensor::from_slice(&v, &[n]).mean(&[], false).item::<f32>() as f64;
        assert!((mean - want / n as f64).abs() <= 1e-6 * want / n as f64);
    }
}

#[test]
fn bias_gradient_sums_the_batch() {
    // y = x + b with x [B, N] and b [N]: b's gradient is the column sum of the upstream grad.
    let (bsz, n) = (512, 96);
    let x = Tensor::from_vec(data(bsz * n, 11), &[bsz, n]);
    let b = Tensor::zeros(&[n], DType::F64).set_requires_grad(true);
    let w = Tensor::from_vec(data(bsz * n, 12), &[bsz, n]);
    (&(&x + &b) * &w).sum_all().backward();
    let wv = w.to_vec::<f64>();
    let want: Vec<f64> = (0..n).map(|j| (0..bsz).map(|i| wv[i * n + j]).sum()).collect();
    close(&b.grad().unwrap().to_vec::<f64>(), &want, 1e-13);
}

// ---------------------------------------------------------------------------------------------
// Empty reductions
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_reductions() {
    let e = Tensor::zeros(&[0, 3], DType::F32);
    assert_eq!(e.sum(&[0], false).to_vec::<f32>(), [0., 0., 0.]);
    assert_eq!(e.prod(&[0], false).to_vec::<f32>(), [1., 1., 1.]);
    assert!(e.mean(&[0], false).to_vec::<f32>().iter().all(|a| a.is_nan()));
    assert!(e.var(&[0], false, 1).to_vec::<f32>().iter().all(|a| a.is_nan()));
    assert_eq!(e.sum(&[], false).item::<f32>(), 0.0);
    assert_eq!(e.prod(&[], true).shape(), &[1, 1]);
    // Reducing the non-empty dim of an empty tensor gives an empty result for every op.
    for (name, f) in dim_ops() {
        let x = Tensor::zeros(&[0, 3], DType::F64);
        assert_eq!(f(&x, &[1], false).unwrap().shape(), &[0], "{name}");
    }
    assert_eq!(Tensor::zeros(&[0, 3], DType::F64).argmax(Some(1), false).shape(), &[0]);
    // max / min / argmax of nothing are errors naming the op.
    for (op, r) in [
        ("max", e.try_max(&[0], false)),
        ("min", e.try_min(&[], false)),
        ("argmax", e.try_argmax(Some(0), false)),
        ("argmin", e.try_argmin(None, false)),
    ] {
        let msg = r.unwrap_err().to_string();
        assert!(msg.starts_with(op) && (msg.contains("size 0") || msg.contains("empty")), "{msg}");
    }
    let msg = e.try_max_dim(0, false).unwrap_err().to_string();
    assert!(msg.starts_with("max_dim"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// argmax / argmin / max_dim
// ---------------------------------------------------------------------------------------------

#[test]
fn argmax_takes_the_first_index_on_ties() {
    let x = t32(&[1., 3., 3., 2., 0., 0., 5., 5.], &[2, 4]);
    assert_eq!(x.argmax(Some(1), false).to_vec::<i64>(), [1, 2]);
    assert_eq!(x.argmin(Some(1), false).to_vec::<i64>(), [0, 0]);
    assert_eq!(x.argmax(Some(-1), true).shape(), &[2, 1]);
    assert_eq!(x.argmax(Some(0), false).to_vec::<i64>(), [0, 0, 1, 1]);
    assert_eq!(x.argmin(Some(0), false).to_vec::<i64>(), [1, 1, 0, 0]);
    // Flattened: the first 5 is at flat index 6.
    assert_eq!(x.argmax(None, false).item::<i64>(), 6);
    assert_eq!(x.argmax(None, false).shape(), &[] as &[usize]);
    assert_eq!(x.argmin(None, false).item::<i64>(), 4);
    assert_eq!(x.argmax(None, false).dtype(), DType::I64);
    // keepdim with None: all-ones shape of the input's rank (PyTorch 2.x).
    let y = rand64(&[2, 3, 4], 5);
    assert_eq!(y.argmax(None, true).shape(), &[1, 1, 1]);
    // A 0-d tensor has index 0.
    assert_eq!(Tensor::scalar(2.5f32).argmax(None, false).item::<i64>(), 0);
    assert_eq!(Tensor::scalar(2.5f32).argmax(Some(0), false).item::<i64>(), 0);
}

#[test]
fn argmax_on_views_and_nan() {
    // [[0, 9, 2], [7, 1, 8]] transposed to [3, 2]: argmax over dim 1 per row of the view.
    let x = t32(&[0., 9., 2., 7., 1., 8.], &[2, 3]).transpose(0, 1);
    assert_eq!(x.argmax(Some(1), false).to_vec::<i64>(), [1, 0, 1]);
    assert_eq!(x.argmin(Some(0), false).to_vec::<i64>(), [0, 1]);
    // Flattened view order is the view's row-major order: [0, 7, 9, 1, 2, 8].
    assert_eq!(x.argmax(None, false).item::<i64>(), 2);
    let n = t64(&[1.0, f64::NAN, 5.0, f64::NAN], &[4]);
    assert_eq!(n.argmax(None, false).item::<i64>(), 1);
    assert_eq!(n.argmin(None, false).item::<i64>(), 1);
}

#[test]
fn max_dim_returns_values_and_indices_and_routes_the_gradient() {
    let x = t64(&[1., 4., 4., 2., 7., 0.], &[2, 3]).set_requires_grad(true);
    let (v, i) = x.max_dim(1, false);
    assert_eq!(v.to_vec::<f64>(), [4., 7.]);
    assert_eq!(i.to_vec::<i64>(), [1, 1]);
    (&v * &t64(&[10., 20.], &[2])).sum_all().backward();
    // Unlike amax, the gradient goes to the one returned index, not split among ties.
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), [0., 10., 0., 0., 20., 0.]);
    let (v, i) = x.min_dim(-2, true);
    assert_eq!(v.shape(), &[1, 3]);
    assert_eq!(v.to_vec::<f64>(), [1., 4., 0.]);
    assert_eq!(i.to_vec::<i64>(), [0, 0, 1]);
}

// ---------------------------------------------------------------------------------------------
// Gradients by hand: ties and zeros
// ---------------------------------------------------------------------------------------------

fn grad_of(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Vec<f64> {
    let x = x.detach().set_requires_grad(true);
    f(&x).sum_all().backward();
    x.grad().unwrap().to_vec::<f64>()
}

#[test]
fn max_and_min_split_the_gradient_among_ties() {
    let x = t64(&[1., 3., 3., 2., 5., 5., 5., 0.], &[2, 4]);
    assert_eq!(grad_of(&x, |x| x.max(&[1], false)), [0., 0.5, 0.5, 0., 1. / 3., 1. / 3., 1. / 3., 0.]);
    assert_eq!(grad_of(&x, |x| x.max(&[], false)), [0., 0., 0., 0., 1. / 3., 1. / 3., 1. / 3., 0.]);
    let y = t64(&[2., 2., 7., 2.], &[4]);
    assert_eq!(grad_of(&y, |x| x.min(&[0], true)), [1. / 3., 1. / 3., 0., 1. / 3.]);
}

#[test]
fn prod_gradient_with_zeros() {
    // One zero: only it gets a gradient, the product of the others.
    let x = t64(&[2., 0., 3., 4., 5., 6.], &[2, 3]);
    assert_eq!(grad_of(&x, |x| x.prod(&[1], false)), [0., 6., 0., 30., 24., 20.]);
    // Two zeros in a row: every gradient of that row is 0 (not NaN as out / x would give).
    let y = t64(&[0., 0., 3., 1., 2., 3.], &[2, 3]);
    assert_eq!(grad_of(&y, |x| x.prod(&[1], false)), [0., 0., 0., 6., 3., 2.]);
    // Over every dim: one zero in the whole tensor.
    assert_eq!(grad_of(&x, |x| x.prod(&[], false)), [0., 2. * 3. * 4. * 5. * 6., 0., 0., 0., 0.]);
    // A 0-d input passes the gradient through even at zero.
    assert_eq!(grad_of(&Tensor::scalar(0.0f64), |x| x.prod(&[], false)), [1.]);
}

#[test]
fn prod_second_derivative_with_zeros() {
    // f = prod(x) with x = [0, 2, 3]: Hessian entries d2f/dx0 dx1 = 3, d2f/dx1 dx2 = 0.
    // gradgradcheck of the gradient's squared norm covers them.
    for v in [[0., 2., 3.], [0., 0., 3.], [0., 0., 0.], [1.5, -2., 0.5]] {
        let x = t64(&v, &[3]);
        gradgradcheck(|xs| xs[0].try_prod(&[0], false), &[x], opts()).unwrap();
    }
    let x = t64(&[0., 2., 3., 1., 0., 0.], &[3, 2]).transpose(0, 1);
    gradgradcheck(|xs| xs[0].try_prod(&[-1], true), &[x], opts()).unwrap();
}

#[test]
fn var_and_std_gradients_by_hand() {
    // d var/dx = 2 (x - mean) / (N - 1); x = [1, 2, 3, 6], mean 3, N - 1 = 3.
    let x = t64(&[1., 2., 3., 6.], &[4]);
    close(&grad_of(&x, |x| x.var(&[], false, 1)), &[-4. / 3., -2. / 3., 0., 2.], 1e-14);
    // d std/dx = (x - mean) / ((N - c) std); population var = 3.5.
    let s = 3.5f64.sqrt();
    close(&grad_of(&x, |x| x.std(&[0], false, 0)), &[-2. / (4. * s), -1. / (4. * s), 0., 3. / (4. * s)], 1e-14);
}

#[test]
fn logsumexp_gradient_is_softmax() {
    let x = t64(&[1., 2., 3., 1000., 1000., 999.], &[2, 3]);
    let g = grad_of(&x, |x| x.logsumexp(&[1], false));
    let sm = |v: [f64; 3]| {
        let m = v.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = v.iter().map(|a| (a - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(move |a| a / s)
    };
    let want: Vec<f64> = sm([1., 2., 3.]).chain(sm([1000., 1000., 999.])).collect();
    // exp(x - lse) with lse near 1000 carries lse's rounding (~1e-13) into the result.
    close(&g, &want, 1e-12);
}

// ---------------------------------------------------------------------------------------------
// gradcheck / gradgradcheck
// ---------------------------------------------------------------------------------------------

#[test]
fn gradcheck_every_reduction_over_dims_and_keepdim() {
    for (name, f) in dim_ops() {
        for &(dims, kd) in CONFIGS {
            let x = rand64(&[2, 3, 4], 21);
            gradcheck(|xs| f(&xs[0], dims, kd), &[x], opts()).unwrap_or_else(|e| panic!("{name} {dims:?} {kd}: {e}"));
        }
    }
}

#[test]
fn gradcheck_on_non_contiguous_and_size_one_inputs() {
    for (name, f) in dim_ops() {
        // Transposed view.
        let x = rand64(&[4, 3, 2], 31);
        for &(dims, kd) in &[(&[1isize][..], false), (&[0, -1][..], true), (&[][..], false)] {
            gradcheck(|xs| f(&xs[0].try_transpose(0, 2)?, dims, kd), std::slice::from_ref(&x), opts())
                .unwrap_or_else(|e| panic!("{name} transposed {dims:?}: {e}"));
        }
        // Strided slice.
        let y = rand64(&[6, 5], 32);
        gradcheck(|xs| f(&xs[0].try_slice(0, 1, 6, 2)?, &[0], true), &[y], opts())
            .unwrap_or_else(|e| panic!("{name} slice: {e}"));
        // Size-1 dims, reduced and kept.
        let z = rand64(&[3, 1, 4], 33);
        for &(dims, kd) in &[(&[1isize][..], false), (&[0, 1][..], true), (&[-2, -1][..], false)] {
            gradcheck(|xs| f(&xs[0], dims, kd), std::slice::from_ref(&z), opts()).unwrap_or_else(|e| panic!("{name} size1 {dims:?}: {e}"));
        }
        // 1-D and 0-d (the latter only where the op is defined at one element).
        gradcheck(|xs| f(&xs[0], &[0], false), &[rand64(&[7], 34)], opts()).unwrap_or_else(|e| panic!("{name} 1d: {e}"));
        // One element: var with correction 1 is NaN and std's gradient is 0/0 there.
        if !(name == "var" || name.starts_with("std")) {
            gradcheck(|xs| f(&xs[0], &[], false), &[Tensor::scalar(0.7f64)], opts()).unwrap_or_else(|e| panic!("{name} 0d: {e}"));
        }
    }
}

#[test]
fn gradcheck_prod_with_zeros_and_max_with_broadcast_input() {
    let x = t64(&[0., 1.5, -2., 0.5, 0., 0., 3., 1.2, -0.7], &[3, 3]);
    for &(dims, kd) in &[(&[1isize][..], false), (&[0][..], true), (&[][..], false)] {
        gradcheck(|xs| xs[0].try_prod(dims, kd), std::slice::from_ref(&x), opts()).unwrap();
    }
    // An expanded (stride-0) input: gradients of the broadcast copies add up.
    let b = rand64(&[1, 4], 41);
    gradcheck(|xs| xs[0].try_expand(&[3, 4])?.try_logsumexp(&[0], false), std::slice::from_ref(&b), opts()).unwrap();
    gradcheck(|xs| xs[0].try_expand(&[3, 4])?.try_var(&[0, 1], false, 1), std::slice::from_ref(&b), opts()).unwrap();
    // max over a broadcast input ties across the copies and splits the gradient, which sums back.
    gradcheck(|xs| xs[0].try_expand(&[3, 4])?.try_max(&[0], false), &[b], opts()).unwrap();
}

#[test]
fn gradcheck_max_dim_values() {
    let x = rand64(&[3, 4, 2], 51);
    for (dim, kd) in [(0isize, false), (1, true), (-1, false)] {
        gradcheck(|xs| Ok(xs[0].try_max_dim(dim, kd)?.0), std::slice::from_ref(&x), opts()).unwrap();
        gradcheck(|xs| Ok(xs[0].try_min_dim(dim, kd)?.0), std::slice::from_ref(&x), opts()).unwrap();
    }
}

#[test]
fn gradgradcheck_sum_mean_logsumexp_var_std() {
    let ops: Vec<(&str, Op)> = vec![
        ("sum", op!(x, d, k => x.try_sum(d, k))),
        ("mean", op!(x, d, k => x.try_mean(d, k))),
        ("logsumexp", op!(x, d, k => x.try_logsumexp(d, k))),
        ("var", op!(x, d, k => x.try_var(d, k, 1))),
        ("var_c0", op!(x, d, k => x.try_var(d, k, 0))),
        ("std", op!(x, d, k => x.try_std(d, k, 1))),
        ("prod", op!(x, d, k => x.try_prod(d, k))),
        ("max", op!(x, d, k => x.try_max(d, k))),
    ];
    for (name, f) in ops {
        for &(dims, kd) in &[(&[][..], false), (&[1isize][..], true), (&[0, -1][..], false)] {
            let x = rand64(&[2, 3, 4], 61);
            // Square first so that sum and mean have a non-zero second derivative.
            gradgradcheck(|xs| f(&xs[0].try_mul(&xs[0])?, dims, kd), std::slice::from_ref(&x), opts())
                .unwrap_or_else(|e| panic!("{name} {dims:?}: {e}"));
            gradgradcheck(|xs| f(&xs[0].try_mul(&xs[0])?.try_transpose(0, 2)?, dims, kd), std::slice::from_ref(&x), opts())
                .unwrap_or_else(|e| panic!("{name} transposed {dims:?}: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_dims_are_errors_naming_the_op() {
    let x = rand64(&[2, 3], 71);
    type Any = Box<dyn Fn(&[isize]) -> Result<Tensor>>;
    let ops: Vec<(&str, Any)> = vec![
        ("sum", Box::new({ let x = x.clone(); move |d| x.try_sum(d, false) })),
        ("mean", Box::new({ let x = x.clone(); move |d| x.try_mean(d, false) })),
        ("prod", Box::new({ let x = x.clone(); move |d| x.try_prod(d, false) })),
        ("max", Box::new({ let x = x.clone(); move |d| x.try_max(d, true) })),
        ("min", Box::new({ let x = x.clone(); move |d| x.try_min(d, false) })),
        ("var", Box::new({ let x = x.clone(); move |d| x.try_var(d, false, 1) })),
        ("std", Box::new({ let x = x.clone(); move |d| x.try_std(d, false, 1) })),
        ("logsumexp", Box::new({ let x = x.clone(); move |d| x.try_logsumexp(d, false) })),
    ];
    for (op, f) in &ops {
        for bad in [&[2isize][..], &[-3][..], &[0, 5][..]] {
            let msg = f(bad).unwrap_err().to_string();
            assert!(msg.starts_with(op) && msg.contains("out of range") && msg.contains("rank 2"), "{msg}");
        }
        for rep in [&[1isize, 1][..], &[0, -2][..], &[1, 0, -1][..]] {
            let msg = f(rep).unwrap_err().to_string();
            assert!(msg.starts_with(op) && msg.contains("more than once"), "{msg}");
        }
    }
    let msg = x.try_argmax(Some(2), false).unwrap_err().to_string();
    assert!(msg.starts_with("argmax") && msg.contains("out of range"), "{msg}");
    let msg = x.try_argmin(Some(-3), true).unwrap_err().to_string();
    assert!(msg.starts_with("argmin") && msg.contains("out of range"), "{msg}");
    let msg = x.try_max_dim(4, false).unwrap_err().to_string();
    assert!(msg.starts_with("max_dim") && msg.contains("out of range"), "{msg}");
    // The repeated dim is named.
    let msg = x.try_sum(&[0, -2], false).unwrap_err().to_string();
    assert!(msg.contains("dim 0 appears more than once"), "{msg}");
}

#[test]
#[should_panic(expected = "sum: dimension 5 is out of range")]
fn panicking_form_reports_the_same_message() {
    rand64(&[2, 3], 81).sum(&[5], false);
}

#[test]
fn float_reductions_reject_integer_inputs() {
    // var on an integer tensor is a dtype error naming the op.
    let x = Tensor::from_vec(vec![1i32, 2, 3], &[3]);
    let msg = x.try_var(&[], false, 1).unwrap_err().to_string();
    assert!(msg.starts_with("var") && msg.contains("i32"), "{msg}");
    let msg = x.try_logsumexp(&[], false).unwrap_err().to_string();
    assert!(msg.starts_with("logsumexp"), "{msg}");
}
