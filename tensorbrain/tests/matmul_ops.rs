//! matmul (every rank combination, broadcasting, strided operands, empty dims), mm/bmm and
//! linear: forward values, gradients (gradcheck / gradgradcheck) and error messages.

use tensorbrain::autograd::{gradcheck, gradgradcheck, GradcheckOptions};
use tensorbrain::{DType, Result, Tensor};

/// Deterministic, distinct-ish values in about [-1, 1].
fn data(n: usize, seed: f64) -> Vec<f64> {
    (0..n).map(|i| ((i as f64 + 1.0) * 0.7548776662 + seed).sin()).collect()
}

fn rand64(shape: &[usize], seed: f64) -> Tensor {
    Tensor::from_vec(data(shape.iter().product(), seed), shape)
}

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

/// Reference matmul straight from the definition, for operands of rank >= 2 (batch dims
/// broadcast NumPy-style). Returns (values, shape).
fn naive(a: &Tensor, b: &Tensor) -> (Vec<f64>, Vec<usize>) {
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    let (va, vb) = (a.to_vec::<f64>(), b.to_vec::<f64>());
    let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
    assert_eq!(k, sb[sb.len() - 2]);
    let (ba, bb) = (&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
    let rank = ba.len().max(bb.len());
    let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat(1).take(rank - s.len()).chain(s.iter().copied()).collect() };
    let (pa, pb) = (pad(ba), pad(bb));
    let batch: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| if x == 1 { y } else { x }).collect();
    let nb: usize = batch.iter().product();
    let mut out = vec![0.0; nb * m * n];
    for p in 0..nb {
        // Unravel p, then find each operand's batch item (index 0 on broadcast dims).
        let mut rem = p;
        let mut idx = vec![0; rank];
        for d in (0..rank).rev() {
            idx[d] = rem % batch[d];
            rem /= batch[d];
        }
        let item = |shape: &[usize]| -> usize { (0..rank).fold(0, |acc, d| acc * shape[d] + if shape[d] == 1 { 0 } else { idx[d] }) };
        let (ia, ib) = (item(&pa), item(&pb));
        for i in 0..m {
            for j in 0..n {
                out[p * m * n + i * n + j] = (0..k).map(|q| va[ia * m * k + i * k + q] * vb[ib * k * n + q * n + j]).sum();
            }
        }
    }
    let mut shape = batch;
    shape.extend([m, n]);
    (out, shape)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
    }
}

// ----------------------------------------------------------------------------------------
// forward values

#[test]
fn matrix_times_matrix_by_hand() {
    let a = Tensor::from_slice(&[1.0f32, 2., 3., 4., 5., 6.], &[2, 3]);
    let b = Tensor::from_slice(&[7.0f32, 8., 9., 10., 11., 12.], &[3, 2]);
    let c = a.matmul(&b);
    assert_eq!(c.shape(), &[2, 2]);
    assert_eq!(c.to_vec::<f32>(), [58., 64., 139., 154.]);
}

#[test]
fn dot_product_is_0_d() {
    let a = Tensor::from_slice(&[1.0f64, 2., 3.], &[3]);
    let b = Tensor::from_slice(&[4.0f64, -5., 6.], &[3]);
    let c = a.matmul(&b);
    assert_eq!(c.shape(), &[] as &[usize]);
    assert_eq!(c.item::<f64>(), 4.0 - 10.0 + 18.0);
}

#[test]
fn matrix_vector_and_vector_matrix() {
    let m = Tensor::from_slice(&[1.0f64, 2., 3., 4., 5., 6.], &[2, 3]);
    let v3 = Tensor::from_slice(&[1.0f64, 0., -1.], &[3]);
    let mv = m.matmul(&v3);
    assert_eq!(mv.shape(), &[2]);
    assert_eq!(mv.to_vec::<f64>(), [-2., -2.]);
    let v2 = Tensor::from_slice(&[1.0f64, 2.], &[2]);
    let vm = v2.matmul(&m);
    assert_eq!(vm.shape(), &[3]);
    assert_eq!(vm.to_vec::<f64>(), [9., 12., 15.]);
}

#[test]
fn batched_vector_operands_lose_their_dim() {
    // [2, 3, 4] · [4] -> [2, 3];  [4] · [2, 4, 5] -> [2, 5]
    let a = rand64(&[2, 3, 4], 0.1);
    let v = rand64(&[4], 0.2);
    let av = a.matmul(&v);
    assert_eq!(av.shape(), &[2, 3]);
    let (want, _) = naive(&a, &v.reshape(&[4, 1]));
    assert_close(&av.to_vec::<f64>(), &want, 1e-12);

    let b = rand64(&[2, 4, 5], 0.3);
    let vb = v.matmul(&b);
    assert_eq!(vb.shape(), &[2, 5]);
    let (want, _) = naive(&v.reshape(&[1, 4]), &b);
    assert_close(&vb.to_vec::<f64>(), &want, 1e-12);
}

#[test]
fn batch_dims_broadcast() {
    let a = rand64(&[2, 1, 3, 4], 0.4);
    let b = rand64(&[5, 4, 2], 0.5);
    let c = a.matmul(&b);
    assert_eq!(c.shape(), &[2, 5, 3, 2]);
    let (want, shape) = naive(&a, &b);
    assert_eq!(shape, [2, 5, 3, 2]);
    assert_close(&c.to_vec::<f64>(), &want, 1e-12);
    // 2-D left operand against a batch, and a batch against a 2-D right operand.
    let m = rand64(&[3, 4], 0.6);
    let (want, shape) = naive(&m, &b);
    let got = m.matmul(&b);
    assert_eq!(got.shape(), &shape[..]);
    assert_close(&got.to_vec::<f64>(), &want, 1e-12);
}

#[test]
fn folded_batch_against_a_shared_matrix() {
    // A contiguous [4, 6, 5] times [5, 3] runs as one [24, 5] GEMM; a permuted batch does not.
    let a = rand64(&[4, 6, 5], 0.7);
    let w = rand64(&[5, 3], 0.8);
    let (want, _) = naive(&a, &w);
    assert_close(&a.matmul(&w).to_vec::<f64>(), &want, 1e-12);
    let ap = rand64(&[6, 4, 5], 0.9).permute(&[1, 0, 2]);
    let (want, _) = naive(&ap.contiguous(), &w);
    assert_close(&ap.matmul(&w).to_vec::<f64>(), &want, 1e-12);
    // Transposed shared matrix (as in linear).
    let wt = rand64(&[3, 5], 1.0).t();
    let (want, _) = naive(&a, &wt.contiguous());
    assert_close(&a.matmul(&wt).to_vec::<f64>(), &want, 1e-12);
}

#[test]
fn strided_operands_match_their_contiguous_copies() {
    let a = rand64(&[5, 3], 1.1).t(); // [3, 5], column-major
    let b = rand64(&[5, 8], 1.2).slice(1, 1, 8, 2); // [5, 4], column stride 2
    let (want, _) = naive(&a.contiguous(), &b.contiguous());
    assert!(!a.is_contiguous() && !b.is_contiguous());
    assert_close(&a.matmul(&b).to_vec::<f64>(), &want, 1e-12);

    // Permuted batch with both inner dims strided.
    let a = rand64(&[4, 2, 3], 1.3).permute(&[1, 2, 0]); // [2, 3, 4]
    let b = rand64(&[2, 5, 4], 1.4).transpose(1, 2); // [2, 4, 5]
    let (want, _) = naive(&a.contiguous(), &b.contiguous());
    assert_close(&a.matmul(&b).to_vec::<f64>(), &want, 1e-12);

    // Expanded operands: a stride-0 batch dim and a stride-0 row dim.
    let a = rand64(&[1, 3, 4], 1.5).expand(&[6, 3, 4]);
    let b = rand64(&[1, 5], 1.6).expand(&[4, 5]);
    let (want, _) = naive(&a.contiguous(), &b.contiguous());
    assert_close(&a.matmul(&b).to_vec::<f64>(), &want, 1e-12);
}

#[test]
fn other_float_dtypes() {
    let a64 = rand64(&[3, 7, 9], 1.7);
    let b64 = rand64(&[9, 5], 1.8);
    let want = a64.matmul(&b64).to_vec::<f64>();
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-2), (DType::BF16, 5e-2)] {
        let c = a64.to_dtype(dtype).matmul(&b64.to_dtype(dtype));
        assert_eq!(c.dtype(), dtype);
        assert_close(&c.to_vec::<f64>(), &want, tol);
    }
}

#[test]
fn empty_dims() {
    // k = 0 gives zeros.
    let c = Tensor::zeros(&[3, 0], DType::F32).matmul(&Tensor::zeros(&[0, 4], DType::F32));
    assert_eq!(c.shape(), &[3, 4]);
    assert!(c.to_vec::<f32>().iter().all(|&x| x == 0.0));
    assert_eq!(Tensor::zeros(&[0], DType::F64).matmul(&Tensor::zeros(&[0], DType::F64)).item::<f64>(), 0.0);
    // m = 0, n = 0, batch = 0.
    assert_eq!(Tensor::zeros(&[0, 3], DType::F32).matmul(&Tensor::ones(&[3, 4], DType::F32)).shape(), &[0, 4]);
    assert_eq!(Tensor::ones(&[2, 3], DType::F32).matmul(&Tensor::ones(&[3, 0], DType::F32)).shape(), &[2, 0]);
    assert_eq!(Tensor::ones(&[0, 2, 3], DType::F32).matmul(&Tensor::ones(&[3, 4], DType::F32)).shape(), &[0, 2, 4]);
    assert_eq!(Tensor::ones(&[5, 0, 2, 3], DType::F32).matmul(&Tensor::ones(&[1, 3, 4], DType::F32)).shape(), &[5, 0, 2, 4]);
    // Gradients through empty products have the operands' shapes (k = 0: zero gradients).
    let a = Tensor::zeros(&[3, 0], DType::F64).set_requires_grad(true);
    let b = Tensor::zeros(&[0, 2], DType::F64).set_requires_grad(true);
    a.matmul(&b).sum_all().backward();
    assert_eq!(a.grad().unwrap().shape(), &[3, 0]);
    assert_eq!(b.grad().unwrap().shape(), &[0, 2]);
}

#[test]
fn mm_and_bmm() {
    let a = rand64(&[2, 3, 4], 1.9);
    let b = rand64(&[2, 4, 5], 2.0);
    let (want, _) = naive(&a, &b);
    assert_close(&a.bmm(&b).to_vec::<f64>(), &want, 1e-12);
    let x = rand64(&[3, 4], 2.1);
    let y = rand64(&[4, 2], 2.2);
    let (want, _) = naive(&x, &y);
    assert_close(&x.mm(&y).to_vec::<f64>(), &want, 1e-12);
    assert!(a.try_mm(&b).unwrap_err().to_string().contains("mm"));
    assert!(a.try_bmm(&rand64(&[3, 4, 5], 0.0)).is_err());
}

// ----------------------------------------------------------------------------------------
// errors

#[test]
fn inner_dim_mismatch_names_both_shapes() {
    let a = Tensor::zeros(&[2, 3], DType::F32);
    let b = Tensor::zeros(&[4, 5], DType::F32);
    let e = a.try_matmul(&b).unwrap_err().to_string();
    assert!(e.starts_with("matmul: shapes [2, 3] and [4, 5]"), "{e}");
    let e = Tensor::zeros(&[3], DType::F32).try_matmul(&Tensor::zeros(&[4], DType::F32)).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("[3]") && e.contains("[4]"), "{e}");
    let e = Tensor::zeros(&[2, 3, 4], DType::F32).try_matmul(&Tensor::zeros(&[5], DType::F32)).unwrap_err().to_string();
    assert!(e.contains("[2, 3, 4]") && e.contains("[5]"), "{e}");
}

#[test]
fn zero_d_operand_is_an_error() {
    let s = Tensor::scalar(2.0f32);
    let v = Tensor::zeros(&[3], DType::F32);
    let e = s.try_matmul(&v).unwrap_err().to_string();
    assert!(e.contains("matmul: shapes [] and [3]") && e.contains("at least 1 dimension"), "{e}");
    assert!(v.try_matmul(&s).is_err());
}

#[test]
fn batch_mismatch_and_dtype_mismatch() {
    let e = Tensor::zeros(&[2, 3, 4], DType::F32).try_matmul(&Tensor::zeros(&[3, 4, 5], DType::F32)).unwrap_err().to_string();
    assert!(e.contains("[2, 3, 4]") && e.contains("[3, 4, 5]") && e.contains("batch"), "{e}");
    let e = Tensor::zeros(&[2, 3], DType::F32).try_matmul(&Tensor::zeros(&[3, 2], DType::F64)).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("f64"), "{e}");
}

#[test]
#[should_panic(expected = "matmul: shapes [2, 3] and [2, 3]")]
fn panicking_form_panics_with_the_message() {
    let a = Tensor::zeros(&[2, 3], DType::F32);
    let _ = a.matmul(&a);
}

// ----------------------------------------------------------------------------------------
// gradients

fn check(a: &[usize], b: &[usize]) {
    let (x, y) = (rand64(a, 0.3), rand64(b, 0.9));
    gradcheck(|t| t[0].try_matmul(&t[1]), &[x, y], opts()).unwrap_or_else(|e| panic!("{a:?} x {b:?}: {e}"));
}

#[test]
fn gradcheck_every_rank_combination() {
    check(&[4], &[4]); // dot
    check(&[3, 4], &[4]); // matrix-vector
    check(&[4], &[4, 3]); // vector-matrix
    check(&[3, 4], &[4, 2]); // matrix-matrix
    check(&[2, 3, 4], &[4]); // batch-vector
    check(&[4], &[2, 4, 3]); // vector-batch
    check(&[2, 3, 4], &[4, 2]); // batch-matrix (folded)
    check(&[3, 4], &[2, 4, 2]); // matrix-batch
    check(&[2, 3, 4], &[2, 4, 2]); // batch-batch
}

#[test]
fn gradcheck_broadcast_batch_dims() {
    check(&[2, 1, 3, 4], &[5, 4, 2]);
    check(&[1, 3, 4], &[3, 4, 2]);
    check(&[3, 1, 2, 3], &[1, 2, 3, 2]);
    check(&[1, 1, 3], &[2, 3, 1]); // size-1 m and n
}

#[test]
fn gradcheck_strided_inputs() {
    // Transposed, permuted, sliced and expanded operands (the views are differentiated too).
    let a = rand64(&[4, 3], 0.1);
    let b = rand64(&[2, 4], 0.2);
    gradcheck(|t| t[0].try_t()?.try_matmul(&t[1].try_t()?), &[a, b], opts()).unwrap();
    let a = rand64(&[3, 2, 4], 0.3);
    let b = rand64(&[2, 5, 4], 0.4);
    gradcheck(|t| t[0].try_permute(&[1, 0, 2])?.try_matmul(&t[1].try_slice(1, 0, 5, 2)?.try_transpose(1, 2)?), &[a, b], opts()).unwrap();
    let a = rand64(&[1, 3, 4], 0.5);
    let b = rand64(&[4, 2], 0.6);
    gradcheck(|t| t[0].try_expand(&[3, 3, 4])?.try_matmul(&t[1]), &[a, b], opts()).unwrap();
}

#[test]
fn gradgradcheck_matmul() {
    let cases: [(&[usize], &[usize]); 6] =
        [(&[4], &[4]), (&[3, 4], &[4]), (&[4], &[4, 2]), (&[2, 3], &[3, 2]), (&[2, 1, 2, 3], &[3, 3, 2]), (&[2, 2, 3], &[3, 2])];
    for (sa, sb) in cases {
        let (a, b) = (rand64(sa, 0.7), rand64(sb, 0.8));
        gradgradcheck(|t| t[0].try_matmul(&t[1]), &[a, b], opts()).unwrap_or_else(|e| panic!("{sa:?} x {sb:?}: {e}"));
    }
    // Through a transposed operand too.
    let a = rand64(&[3, 2], 0.9);
    gradgradcheck(|t| t[0].try_t()?.try_matmul(&t[0]), &[a], opts()).unwrap();
}

#[test]
fn matmul_gradient_values_by_hand() {
    // d(sum(A·B))/dA = 1·Bᵀ (row sums of B), d/dB = Aᵀ·1 (column sums of A).
    let a = Tensor::from_slice(&[1.0f64, 2., 3., 4.], &[2, 2]).set_requires_grad(true);
    let b = Tensor::from_slice(&[5.0f64, 6., 7., 8.], &[2, 2]).set_requires_grad(true);
    a.matmul(&b).sum_all().backward();
    assert_eq!(a.grad().unwrap().to_vec::<f64>(), [11., 15., 11., 15.]);
    assert_eq!(b.grad().unwrap().to_vec::<f64>(), [4., 4., 6., 6.]);
}

#[test]
fn broadcast_operand_gradient_is_summed() {
    // b is shared across a batch of 3: its gradient sums the three items' contributions.
    let a = Tensor::from_vec(vec![1.0f64; 3 * 2 * 2], &[3, 2, 2]);
    let b = Tensor::from_slice(&[1.0f64, 2., 3., 4.], &[1, 2, 2]).set_requires_grad(true);
    a.matmul(&b).sum_all().backward();
    assert_eq!(b.grad().unwrap().to_vec::<f64>(), [6., 6., 6., 6.]);
}

// ----------------------------------------------------------------------------------------
// linear

#[test]
fn linear_values_and_errors() {
    let x = Tensor::from_slice(&[1.0f64, 2., 3., 4., 5., 6.], &[2, 3]);
    let w = Tensor::from_slice(&[1.0f64, 0., -1., 2., 1., 0.], &[2, 3]);
    let b = Tensor::from_slice(&[10.0f64, 20.], &[2]);
    let y = x.linear(&w, Some(&b));
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(y.to_vec::<f64>(), [1. - 3. + 10., 2. + 2. + 20., 4. - 6. + 10., 8. + 5. + 20.]);
    assert_eq!(x.linear(&w, None).to_vec::<f64>(), [-2., 4., -2., 13.]);
    // Batched input.
    let xb = rand64(&[2, 4, 3], 0.2);
    assert_eq!(xb.linear(&w, Some(&b)).shape(), &[2, 4, 2]);

    let e = x.try_linear(&Tensor::zeros(&[2, 4], DType::F64), None).unwrap_err().to_string();
    assert!(e.contains("linear") && e.contains("[2, 3]") && e.contains("[2, 4]"), "{e}");
    let e = x.try_linear(&w, Some(&Tensor::zeros(&[3], DType::F64))).unwrap_err().to_string();
    assert!(e.contains("linear") && e.contains("[3]") && e.contains("bias"), "{e}");
}

#[test]
fn gradcheck_linear() {
    let x = rand64(&[2, 3, 4], 0.1);
    let w = rand64(&[5, 4], 0.2);
    let b = rand64(&[5], 0.3);
    gradcheck(|t| t[0].try_linear(&t[1], Some(&t[2])), &[x.clone(), w.clone(), b.clone()], opts()).unwrap();
    gradgradcheck(|t| t[0].try_linear(&t[1], Some(&t[2])), &[x.clone(), w.clone(), b], opts()).unwrap();
    gradcheck(|t| t[0].try_linear(&t[1], None), &[x, w], opts()).unwrap();
}

/// The weight's gradient comes out contiguous (computed as (gᵀ·x)ᵀ through the transpose), not
/// as a transposed view the optimizer would have to copy; its values are xᵀ·g's.
#[test]
fn linear_weight_gradient_is_contiguous() {
    for x_shape in [vec![6, 4], vec![2, 3, 4]] {
        let x = rand64(&x_shape, 0.4);
        let w = rand64(&[5, 4], 0.5).set_requires_grad(true);
        let y = x.linear(&w, None);
        let g = rand64(y.shape(), 0.6);
        (&y * &g).sum_all().backward();
        let gw = w.grad().expect("the weight has a gradient");
        assert!(gw.is_contiguous(), "x {x_shape:?}: weight gradient strides {:?}", gw.layout().strides);
        let rows = x.numel() / 4;
        let (xv, gv) = (x.to_vec::<f64>(), g.to_vec::<f64>());
        let want: Vec<f64> = (0..5 * 4).map(|i| (0..rows).map(|r| gv[r * 5 + i / 4] * xv[r * 4 + i % 4]).sum()).collect();
        for (got, want) in gw.to_vec::<f64>().iter().zip(&want) {
            assert!((got - want).abs() <= 1e-12 * (1.0 + want.abs()), "x {x_shape:?}: {got} vs {want}");
        }
    }
}

#[test]
fn linear_in_f32_matches_f64() -> Result<()> {
    let x = rand64(&[8, 16], 0.4);
    let w = rand64(&[6, 16], 0.5);
    let want = x.linear(&w, None).to_vec::<f64>();
    let got = x.to_dtype(DType::F32).try_linear(&w.to_dtype(DType::F32), None)?.to_vec::<f64>();
    assert_close(&got, &want, 1e-5);
    Ok(())
}
