//! softmax / log_softmax, conv2d, max_pool2d and avg_pool2d: forward values by hand,
//! gradients (gradcheck / gradgradcheck) and error messages.

use tensorbrain::autograd::{grad, gradcheck, gradgradcheck, GradcheckOptions};
use tensorbrain::{DType, Tensor};

fn data(n: usize, seed: f64) -> Vec<f64> {
    (0..n).map(|i| ((i as f64 + 1.0) * 0.7548776662 + seed).sin()).collect()
}

fn rand64(shape: &[usize], seed: f64) -> Tensor {
    Tensor::from_vec(data(shape.iter().product(), seed), shape)
}

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan()) || g == w;
        assert!(ok, "element {i}: got {g}, want {w}");
    }
}

/// Softmax of each row of `v` (rows of `len`), from the definition.
fn softmax_rows(v: &[f64], len: usize, log: bool) -> Vec<f64> {
    v.chunks(len)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = r.iter().map(|x| (x - m).exp()).sum();
            r.iter().map(move |x| if log { x - m - s.ln() } else { (x - m).exp() / s }).collect::<Vec<_>>()
        })
        .collect()
}

// ----------------------------------------------------------------------------------------
// softmax

#[test]
fn softmax_values_by_hand() {
    let x = Tensor::from_slice(&[1.0f64, 2., 3.], &[3]);
    let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
    let s: f64 = e.iter().sum();
    assert_close(&x.softmax(0).to_vec::<f64>(), &[e[0] / s, e[1] / s, e[2] / s], 1e-15);
    assert_close(&x.log_softmax(-1).to_vec::<f64>(), &[1. - s.ln(), 2. - s.ln(), 3. - s.ln()], 1e-15);
}

#[test]
fn softmax_is_stable_for_large_and_infinite_inputs() {
    let x = Tensor::from_slice(&[1000.0f32, 1001., -f32::INFINITY], &[3]);
    let y = x.softmax(0).to_vec::<f32>();
    let e = (-1.0f64).exp();
    assert!((y[0] as f64 - e / (1.0 + e)).abs() < 1e-6 && (y[1] as f64 - 1.0 / (1.0 + e)).abs() < 1e-6 && y[2] == 0.0, "{y:?}");
    let l = x.log_softmax(0).to_vec::<f32>();
    assert!((l[1] as f64 + (1.0 + e).ln()).abs() < 1e-6 && l[2] == f32::NEG_INFINITY, "{l:?}");
    // A NaN poisons its row only.
    let x = Tensor::from_slice(&[1.0f32, f32::NAN, 0.0, 0.0], &[2, 2]);
    let y = x.softmax(1).to_vec::<f32>();
    assert!(y[0].is_nan() && y[1].is_nan() && y[2] == 0.5 && y[3] == 0.5, "{y:?}");
}

/// f32 rows shorter than, equal to and longer than the kernel's 16 accumulator lanes, with a
/// remainder: within 2e-6 of the f64 definition on the same (rounded) inputs; a NaN past the
/// first 16 elements poisons its row only.
#[test]
fn softmax_f32_rows_across_accumulator_lanes() {
    for len in [15usize, 16, 37, 210] {
        let x32: Vec<f32> = data(3 * len, 0.9).iter().map(|v| (v * 8.0) as f32).collect();
        let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let x = Tensor::from_slice(&x32, &[3, len]);
        for log in [false, true] {
            let got = if log { x.log_softmax(1) } else { x.softmax(1) };
            let got: Vec<f64> = got.to_vec::<f32>().iter().map(|&v| v as f64).collect();
            assert_close(&got, &softmax_rows(&x64, len, log), 2e-6);
        }
    }
    let mut x32 = vec![0.5f32; 2 * 37];
    x32[20] = f32::NAN;
    let y = Tensor::from_slice(&x32, &[2, 37]).softmax(1).to_vec::<f32>();
    assert!(y[..37].iter().all(|v| v.is_nan()), "{y:?}");
    assert!(y[37..].iter().all(|&v| (v as f64 - 1.0 / 37.0).abs() < 1e-7), "{y:?}");
}

#[test]
fn softmax_along_every_dim_of_a_3_d_tensor() {
    let shape = [3, 4, 5];
    let x = rand64(&shape, 0.3).mul_scalar(3.0);
    for dim in [0isize, 1, 2, -1, -3] {
        let d = if dim < 0 { (dim + 3) as usize } else { dim as usize };
        // Move `dim` last, compute by rows, move it back.
        let mut perm: Vec<isize> = (0..3).filter(|&i| i != d as isize).collect();
        perm.push(d as isize);
        let xp = x.permute(&perm).contiguous();
        for log in [false, true] {
            let rows = softmax_rows(&xp.to_vec::<f64>(), shape[d], log);
            let mut inv = vec![0isize; 3];
            for (i, &p) in perm.iter().enumerate() {
                inv[p as usize] = i as isize;
            }
            let want = Tensor::from_vec(rows, xp.shape()).permute(&inv).to_vec::<f64>();
            let got = if log { x.log_softmax(dim) } else { x.softmax(dim) };
            assert_eq!(got.shape(), &shape);
            assert_close(&got.to_vec::<f64>(), &want, 1e-14);
        }
    }
}

#[test]
fn softmax_of_views_scalars_and_empty_tensors() {
    let x = rand64(&[4, 6], 0.5);
    let xt = x.t();
    assert_close(&xt.softmax(1).to_vec::<f64>(), &xt.contiguous().softmax(1).to_vec::<f64>(), 0.0);
    assert_close(&xt.log_softmax(0).to_vec::<f64>(), &xt.contiguous().log_softmax(0).to_vec::<f64>(), 0.0);
    assert_eq!(Tensor::scalar(3.0f32).softmax(0).item::<f32>(), 1.0);
    assert_eq!(Tensor::scalar(3.0f32).log_softmax(-1).item::<f32>(), 0.0);
    assert_eq!(Tensor::zeros(&[0, 3], DType::F32).softmax(1).shape(), &[0, 3]);
    assert_eq!(Tensor::zeros(&[3, 0], DType::F32).log_softmax(1).shape(), &[3, 0]);
}

#[test]
fn softmax_large_parallel_matches_reference() {
    // Over the parallel threshold, along the contiguous dim and along a strided one.
    let x = rand64(&[300, 210], 0.7).mul_scalar(5.0);
    let want = softmax_rows(&x.to_vec::<f64>(), 210, false);
    assert_close(&x.softmax(1).to_vec::<f64>(), &want, 1e-14);
    let want = softmax_rows(&x.t().contiguous().to_vec::<f64>(), 300, true);
    assert_close(&x.log_softmax(0).t().contiguous().to_vec::<f64>(), &want, 1e-13);
    let x3 = rand64(&[40, 30, 50], 0.8);
    let got = x3.softmax(1);
    let sums = got.sum(&[1], false).to_vec::<f64>();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-13));
}

#[test]
fn softmax_half_types_compute_in_f32() {
    let x = rand64(&[5, 37], 0.9).mul_scalar(4.0);
    let want = x.softmax(-1).to_vec::<f64>();
    let want_log = x.log_softmax(-1).to_vec::<f64>();
    for (dtype, tol) in [(DType::F32, 1e-6), (DType::F16, 1e-3), (DType::BF16, 8e-3)] {
        let xd = x.to_dtype(dtype);
        assert_eq!(xd.softmax(-1).dtype(), dtype);
        assert_close(&xd.softmax(-1).to_vec::<f64>(), &want, tol);
        assert_close(&xd.log_softmax(-1).to_vec::<f64>(), &want_log, 2.0 * tol);
        assert_close(&xd.softmax(0).to_vec::<f64>(), &x.softmax(0).to_vec::<f64>(), tol);
    }
}

#[test]
fn softmax_errors() {
    let x = Tensor::zeros(&[2, 3], DType::F32);
    let e = x.try_softmax(2).unwrap_err().to_string();
    assert!(e.contains("softmax") && e.contains("dimension 2"), "{e}");
    let e = x.try_log_softmax(-3).unwrap_err().to_string();
    assert!(e.contains("log_softmax"), "{e}");
    let e = Tensor::zeros(&[2], DType::I64).try_softmax(0).unwrap_err().to_string();
    assert!(e.contains("softmax") && e.contains("i64"), "{e}");
}

#[test]
fn gradcheck_softmax_and_log_softmax() {
    let x = rand64(&[2, 3, 4], 0.1).mul_scalar(2.0);
    for dim in [0isize, 1, -1] {
        gradcheck(|t| t[0].try_softmax(dim), &[x.clone()], opts()).unwrap_or_else(|e| panic!("softmax dim {dim}: {e}"));
        gradcheck(|t| t[0].try_log_softmax(dim), &[x.clone()], opts()).unwrap_or_else(|e| panic!("log_softmax dim {dim}: {e}"));
    }
    // Non-contiguous input.
    let y = rand64(&[4, 3], 0.2);
    gradcheck(|t| t[0].try_t()?.try_softmax(-1), &[y.clone()], opts()).unwrap();
    gradcheck(|t| t[0].try_t()?.try_log_softmax(0), &[y], opts()).unwrap();
}

#[test]
fn gradgradcheck_softmax_and_log_softmax() {
    let x = rand64(&[3, 4], 0.4);
    for dim in [0isize, -1] {
        gradgradcheck(|t| t[0].try_softmax(dim), &[x.clone()], opts()).unwrap_or_else(|e| panic!("softmax dim {dim}: {e}"));
        gradgradcheck(|t| t[0].try_log_softmax(dim), &[x.clone()], opts()).unwrap_or_else(|e| panic!("log_softmax dim {dim}: {e}"));
    }
}

#[test]
fn log_softmax_gradient_by_hand() {
    // d(sum(log_softmax(x)))/dx = 1 - n·softmax(x).
    let x = Tensor::from_slice(&[0.5f64, -1.0, 2.0], &[3]).set_requires_grad(true);
    x.log_softmax(0).sum_all().backward();
    let p = x.detach().softmax(0).to_vec::<f64>();
    let want: Vec<f64> = p.iter().map(|p| 1.0 - 3.0 * p).collect();
    assert_close(&x.grad().unwrap().to_vec::<f64>(), &want, 1e-15);
}

// ----------------------------------------------------------------------------------------
// conv2d

fn arange(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 + 1.0).collect()
}

/// conv2d straight from the definition.
#[allow(clippy::too_many_arguments)]
fn naive_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, s: [usize; 2], p: [usize; 2], d: [usize; 2], g: usize) -> (Vec<f64>, Vec<usize>) {
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let (xv, wv) = (x.to_vec::<f64>(), w.to_vec::<f64>());
    let bv = b.map(|b| b.to_vec::<f64>());
    let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
    let (o, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let oh = (h + 2 * p[0] - d[0] * (kh - 1) - 1) / s[0] + 1;
    let ow = (wd + 2 * p[1] - d[1] * (kw - 1) - 1) / s[1] + 1;
    let og = o / g;
    let mut out = vec![0.0; n * o * oh * ow];
    for ni in 0..n {
        for oc in 0..o {
            let grp = oc / og;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = bv.as_ref().map_or(0.0, |b| b[oc]);
                    for ci in 0..cg {
                        let ch = grp * cg + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * s[0] + ky * d[0]) as isize - p[0] as isize;
                                let ix = (xo * s[1] + kx * d[1]) as isize - p[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                acc += xv[((ni * c + ch) * h + iy as usize) * wd + ix as usize] * wv[((oc * cg + ci) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    out[((ni * o + oc) * oh + y) * ow + xo] = acc;
                }
            }
        }
    }
    (out, vec![n, o, oh, ow])
}

#[test]
fn conv2d_values_by_hand() {
    let x = Tensor::from_vec(arange(9), &[1, 1, 3, 3]);
    let w = Tensor::from_slice(&[1.0f64, 0., 0., 1.], &[1, 1, 2, 2]);
    let y = x.conv2d(&w, None, [1, 1], [0, 0], [1, 1], 1);
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.to_vec::<f64>(), [1. + 5., 2. + 6., 4. + 8., 5. + 9.]);
    let b = Tensor::from_slice(&[10.0f64], &[1]);
    assert_eq!(x.conv2d(&w, Some(&b), [1, 1], [0, 0], [1, 1], 1).to_vec::<f64>(), [16., 18., 22., 24.]);
    // Padding 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1); only the (1,1) one has
    // both taps inside the input.
    let y = x.conv2d(&w, None, [2, 2], [1, 1], [1, 1], 1);
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.to_vec::<f64>(), [1., 3., 7., 5. + 9.]);
    // Dilation 2 with a 2x2 kernel spans the whole 3x3 input: x[0,0] + x[2,2].
    assert_eq!(x.conv2d(&w, None, [1, 1], [0, 0], [2, 2], 1).to_vec::<f64>(), [1. + 9.]);
}

#[test]
fn conv2d_matches_the_definition() {
    let cases: [([usize; 4], [usize; 4], [usize; 2], [usize; 2], [usize; 2], usize, bool); 5] = [
        ([2, 3, 7, 6], [4, 3, 3, 2], [1, 1], [0, 0], [1, 1], 1, true),
        ([1, 4, 8, 8], [6, 2, 3, 3], [2, 1], [1, 2], [1, 1], 2, false),
        ([2, 2, 9, 7], [2, 2, 2, 3], [1, 2], [2, 1], [2, 2], 1, true),
        ([3, 6, 5, 5], [6, 1, 3, 3], [1, 1], [1, 1], [1, 1], 6, true), // depthwise
        ([2, 4, 5, 6], [8, 4, 1, 1], [1, 1], [0, 0], [1, 1], 1, true), // pointwise
    ];
    for (i, (xs, ws, s, p, d, g, bias)) in cases.into_iter().enumerate() {
        let x = rand64(&xs, i as f64);
        let w = rand64(&ws, 10.0 + i as f64);
        let b = bias.then(|| rand64(&[ws[0]], 20.0 + i as f64));
        let (want, shape) = naive_conv(&x, &w, b.as_ref(), s, p, d, g);
        let y = x.conv2d(&w, b.as_ref(), s, p, d, g);
        assert_eq!(y.shape(), &shape[..], "case {i}");
        assert_close(&y.to_vec::<f64>(), &want, 1e-12);
        // f32 too.
        let y32 = x.to_dtype(DType::F32).conv2d(&w.to_dtype(DType::F32), b.map(|b| b.to_dtype(DType::F32)).as_ref(), s, p, d, g);
        assert_close(&y32.to_vec::<f64>(), &want, 1e-5);
    }
}

#[test]
fn conv2d_accepts_unbatched_and_strided_inputs() {
    let x = rand64(&[3, 6, 5], 0.1);
    let w = rand64(&[2, 3, 3, 3], 0.2);
    let y = x.conv2d(&w, None, [1, 1], [1, 1], [1, 1], 1);
    assert_eq!(y.shape(), &[2, 6, 5]);
    let y4 = x.unsqueeze(0).conv2d(&w, None, [1, 1], [1, 1], [1, 1], 1);
    assert_eq!(y.to_vec::<f64>(), y4.to_vec::<f64>());
    // NHWC storage permuted to NCHW.
    let xp = rand64(&[2, 5, 6, 3], 0.3).permute(&[0, 3, 1, 2]);
    let (want, _) = naive_conv(&xp.contiguous(), &w, None, [1, 1], [0, 0], [1, 1], 1);
    assert_close(&xp.conv2d(&w, None, [1, 1], [0, 0], [1, 1], 1).to_vec::<f64>(), &want, 1e-12);
}

#[test]
fn conv2d_errors_name_the_op_and_shapes() {
    let x = Tensor::zeros(&[1, 3, 5, 5], DType::F32);
    let e = x.try_conv2d(&Tensor::zeros(&[2, 4, 3, 3], DType::F32), None, [1, 1], [0, 0], [1, 1], 1).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("[2, 4, 3, 3]") && e.contains("[1, 3, 5, 5]") && e.contains("input channels"), "{e}");
    let e = x.try_conv2d(&Tensor::zeros(&[2, 3, 7, 3], DType::F32), None, [1, 1], [0, 0], [1, 1], 1).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("empty output") && e.contains("[2, 3, 7, 3]"), "{e}");
    let e = x.try_conv2d(&Tensor::zeros(&[4, 1, 3, 3], DType::F32), None, [1, 1], [0, 0], [1, 1], 2).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("groups (2)") && e.contains("[1, 3, 5, 5]"), "{e}");
    let e = x.try_conv2d(&Tensor::zeros(&[3, 3], DType::F32), None, [1, 1], [0, 0], [1, 1], 1).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("4-D"), "{e}");
    let e = Tensor::zeros(&[5, 5], DType::F32).try_conv2d(&Tensor::zeros(&[1, 1, 3, 3], DType::F32), None, [1, 1], [0, 0], [1, 1], 1).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("[5, 5]"), "{e}");
    let w = Tensor::zeros(&[2, 3, 3, 3], DType::F32);
    let e = x.try_conv2d(&w, Some(&Tensor::zeros(&[3], DType::F32)), [1, 1], [0, 0], [1, 1], 1).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("bias") && e.contains("[3]"), "{e}");
    let e = x.try_conv2d(&w, None, [0, 1], [0, 0], [1, 1], 1).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("stride"), "{e}");
    let e = x.try_conv2d(&w.to_dtype(DType::F64), None, [1, 1], [0, 0], [1, 1], 1).unwrap_err().to_string();
    assert!(e.contains("conv2d") && e.contains("f64"), "{e}");
}

#[test]
fn gradcheck_conv2d() {
    let cases: [([usize; 4], [usize; 4], [usize; 2], [usize; 2], [usize; 2], usize); 5] = [
        ([2, 2, 5, 4], [3, 2, 3, 2], [1, 1], [0, 0], [1, 1], 1),
        ([1, 2, 6, 5], [2, 2, 3, 3], [2, 2], [1, 1], [1, 1], 1),
        ([1, 1, 7, 6], [2, 1, 2, 2], [1, 2], [1, 0], [2, 3], 1),
        ([2, 4, 4, 4], [4, 2, 2, 2], [1, 1], [1, 1], [1, 1], 2),
        ([1, 3, 3, 3], [3, 3, 1, 1], [1, 1], [0, 0], [1, 1], 1),
    ];
    for (i, (xs, ws, s, p, d, g)) in cases.into_iter().enumerate() {
        let x = rand64(&xs, i as f64);
        let w = rand64(&ws, 5.0 + i as f64);
        let b = rand64(&[ws[0]], 9.0 + i as f64);
        gradcheck(|t| t[0].try_conv2d(&t[1], Some(&t[2]), s, p, d, g), &[x.clone(), w.clone(), b], opts())
            .unwrap_or_else(|e| panic!("case {i} with bias: {e}"));
        gradcheck(|t| t[0].try_conv2d(&t[1], None, s, p, d, g), &[x, w], opts()).unwrap_or_else(|e| panic!("case {i}: {e}"));
    }
    // Unbatched, permuted input.
    let x = rand64(&[4, 5, 2], 0.5);
    let w = rand64(&[2, 2, 2, 2], 0.6);
    gradcheck(|t| t[0].try_permute(&[2, 0, 1])?.try_conv2d(&t[1], None, [1, 1], [1, 0], [1, 1], 1), &[x, w], opts()).unwrap();
}

#[test]
fn gradgradcheck_conv2d() {
    let x = rand64(&[1, 2, 4, 4], 0.1);
    let w = rand64(&[2, 1, 2, 2], 0.2);
    let b = rand64(&[2], 0.3);
    gradgradcheck(|t| t[0].try_conv2d(&t[1], Some(&t[2]), [2, 1], [1, 0], [1, 1], 2), &[x.clone(), w.clone(), b], opts()).unwrap();
    let w = rand64(&[3, 2, 2, 3], 0.4);
    gradgradcheck(|t| t[0].try_conv2d(&t[1], None, [1, 2], [0, 1], [2, 1], 1), &[x.clone(), w.clone()], opts()).unwrap();
    // Squared output: the incoming gradient depends on x and w, so every branch of the
    // backward ops' own backward runs.
    gradgradcheck(
        |t| {
            let y = t[0].try_conv2d(&t[1], None, [1, 2], [0, 1], [2, 1], 1)?;
            y.try_mul(&y)
        },
        &[x, w],
        opts(),
    )
    .unwrap();
}

#[test]
fn conv2d_bias_gradient_by_hand() {
    // d(sum(conv))/d(bias[o]) = N·OH·OW.
    let x = rand64(&[2, 1, 4, 4], 0.1);
    let w = rand64(&[3, 1, 2, 2], 0.2);
    let b = Tensor::zeros(&[3], DType::F64).set_requires_grad(true);
    x.conv2d(&w, Some(&b), [1, 1], [0, 0], [1, 1], 1).sum_all().backward();
    assert_eq!(b.grad().unwrap().to_vec::<f64>(), [18., 18., 18.]);
}

// ----------------------------------------------------------------------------------------
// pooling

#[test]
fn max_pool2d_values_by_hand() {
    let x = Tensor::from_vec(arange(16), &[1, 1, 4, 4]);
    let y = x.max_pool2d([2, 2], [2, 2], [0, 0]);
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.to_vec::<f64>(), [6., 8., 14., 16.]);
    // Padding never wins, even against negative values.
    let y = x.neg().max_pool2d([3, 3], [2, 2], [1, 1]);
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.to_vec::<f64>(), [-1., -2., -5., -6.]);
    // Unbatched input, overlapping windows.
    let y = Tensor::from_vec(arange(9), &[1, 3, 3]).max_pool2d([2, 2], [1, 1], [0, 0]);
    assert_eq!(y.shape(), &[1, 2, 2]);
    assert_eq!(y.to_vec::<f64>(), [5., 6., 8., 9.]);
}

#[test]
fn max_pool2d_gradient_goes_to_the_maximum() {
    let x = Tensor::from_slice(&[1.0f64, 9., 3., 4., 5., 6., 7., 8., 2.], &[1, 1, 3, 3]).set_requires_grad(true);
    // Overlapping 2x2 windows: maxima 9, 9, 8, 8.
    x.max_pool2d([2, 2], [1, 1], [0, 0]).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), [0., 2., 0., 0., 0., 0., 0., 2., 0.]);
}

#[test]
fn avg_pool2d_values_by_hand() {
    let x = Tensor::from_vec(arange(16), &[1, 1, 4, 4]);
    let y = x.avg_pool2d([2, 2], [2, 2], [0, 0], true);
    assert_eq!(y.to_vec::<f64>(), [3.5, 5.5, 11.5, 13.5]);
    // 3x3 windows with padding 1, stride 2: the top-left window holds 1, 2, 5, 6.
    let inc = x.avg_pool2d([3, 3], [2, 2], [1, 1], true).to_vec::<f64>();
    let exc = x.avg_pool2d([3, 3], [2, 2], [1, 1], false).to_vec::<f64>();
    assert_eq!(inc[0], 14.0 / 9.0);
    assert_eq!(exc[0], 14.0 / 4.0);
    // The window at (1, 1) covers rows 1..4, cols 1..4: all real cells.
    let full = [6., 7., 8., 10., 11., 12., 14., 15., 16.].iter().sum::<f64>() / 9.0;
    assert_eq!(inc[3], full);
    assert_eq!(exc[3], full);
}

#[test]
fn avg_pool2d_gradient_by_hand() {
    let x = Tensor::zeros(&[1, 1, 2, 3], DType::F64).set_requires_grad(true);
    // Windows [0..2, 0..2] and [0..2, 1..3]: the middle column is in both.
    x.avg_pool2d([2, 2], [1, 1], [0, 0], true).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), [0.25, 0.5, 0.25, 0.25, 0.5, 0.25]);
}

#[test]
fn gradcheck_pooling() {
    let x = rand64(&[2, 2, 5, 6], 0.1);
    for (k, s, p) in [([2, 2], [2, 2], [0, 0]), ([3, 2], [1, 2], [1, 1]), ([3, 3], [2, 1], [1, 0])] {
        gradcheck(|t| t[0].try_max_pool2d(k, s, p), &[x.clone()], opts()).unwrap_or_else(|e| panic!("max {k:?} {s:?} {p:?}: {e}"));
        for cip in [true, false] {
            gradcheck(|t| t[0].try_avg_pool2d(k, s, p, cip), &[x.clone()], opts()).unwrap_or_else(|e| panic!("avg {k:?} {s:?} {p:?} {cip}: {e}"));
        }
    }
    // Unbatched and transposed.
    let y = rand64(&[2, 6, 5], 0.2);
    gradcheck(|t| t[0].try_transpose(1, 2)?.try_max_pool2d([2, 2], [1, 2], [1, 0]), &[y.clone()], opts()).unwrap();
    gradcheck(|t| t[0].try_transpose(1, 2)?.try_avg_pool2d([2, 3], [2, 1], [1, 1], false), &[y], opts()).unwrap();
}

#[test]
fn gradgradcheck_pooling() {
    let x = rand64(&[1, 2, 4, 5], 0.3);
    // Squaring the pooled output makes the incoming gradient depend on x, so the backward of
    // the backward (gather for max, pooling again for avg) is exercised.
    let sq = |y: tensorbrain::Result<Tensor>| y.and_then(|y| y.try_mul(&y));
    gradgradcheck(|t| sq(t[0].try_max_pool2d([2, 2], [1, 2], [1, 0])), &[x.clone()], opts()).unwrap();
    gradgradcheck(|t| sq(t[0].try_avg_pool2d([3, 2], [2, 1], [1, 1], false)), &[x.clone()], opts()).unwrap();
    // Pooling after a nonlinearity.
    gradgradcheck(|t| t[0].try_mul(&t[0])?.try_max_pool2d([2, 2], [2, 2], [0, 0]), &[x.clone()], opts()).unwrap();
    gradgradcheck(|t| t[0].try_mul(&t[0])?.try_avg_pool2d([2, 2], [1, 1], [0, 0], true), &[x], opts()).unwrap();
}

#[test]
fn pool_errors() {
    let x = Tensor::zeros(&[1, 1, 4, 4], DType::F32);
    let e = x.try_max_pool2d([2, 2], [2, 2], [2, 0]).unwrap_err().to_string();
    assert!(e.contains("max_pool2d") && e.contains("half") && e.contains("[1, 1, 4, 4]"), "{e}");
    let e = x.try_avg_pool2d([5, 2], [1, 1], [0, 0], true).unwrap_err().to_string();
    assert!(e.contains("avg_pool2d") && e.contains("empty output"), "{e}");
    let e = x.try_max_pool2d([0, 2], [1, 1], [0, 0]).unwrap_err().to_string();
    assert!(e.contains("max_pool2d") && e.contains("positive"), "{e}");
    let e = Tensor::zeros(&[4, 4], DType::F32).try_avg_pool2d([2, 2], [2, 2], [0, 0], true).unwrap_err().to_string();
    assert!(e.contains("avg_pool2d") && e.contains("[4, 4]"), "{e}");
    let e = Tensor::zeros(&[1, 1, 4, 4], DType::I64).try_max_pool2d([2, 2], [2, 2], [0, 0]).unwrap_err().to_string();
    assert!(e.contains("max_pool2d") && e.contains("i64"), "{e}");
}

#[test]
fn second_derivative_of_conv_by_hand() {
    // f = sum(y²) with y = conv(x, w) (3x3 input, 2x2 kernel). Then sum(∂f/∂x) = 2·S·Σ_t w_t X_t,
    // where S = sum(w) and X_t is the sum of x over the output positions for tap t, so its
    // gradient with respect to w_t is 2·Σ_t' w_t' X_t' + 2·S·X_t.
    let xv = data(9, 0.5);
    let wv = data(4, 0.6);
    let x = Tensor::from_vec(xv.clone(), &[1, 1, 3, 3]).set_requires_grad(true);
    let w = Tensor::from_vec(wv.clone(), &[1, 1, 2, 2]).set_requires_grad(true);
    let y = x.conv2d(&w, None, [1, 1], [0, 0], [1, 1], 1);
    let f = y.mul(&y).sum_all();
    let gx = grad(&f, &[x.clone()], None, true).unwrap()[0].clone().unwrap();
    let gw = grad(&gx.sum_all(), &[w.clone()], None, false).unwrap()[0].clone().unwrap();
    let taps: Vec<f64> = (0..4)
        .map(|t| {
            let (ky, kx) = (t / 2, t % 2);
            (0..4).map(|o| xv[(o / 2 + ky) * 3 + o % 2 + kx]).sum()
        })
        .collect();
    let s: f64 = wv.iter().sum();
    let dot: f64 = wv.iter().zip(&taps).map(|(w, x)| w * x).sum();
    let want: Vec<f64> = taps.iter().map(|xt| 2.0 * dot + 2.0 * s * xt).collect();
    assert_close(&gw.to_vec::<f64>(), &want, 1e-12);
}

#[test]
fn empty_batch_flows_through_conv_and_pooling() {
    let x = Tensor::zeros(&[0, 2, 5, 5], DType::F64).set_requires_grad(true);
    let w = rand64(&[3, 2, 3, 3], 0.1).set_requires_grad(true);
    let y = x.conv2d(&w, None, [1, 1], [1, 1], [1, 1], 1);
    assert_eq!(y.shape(), &[0, 3, 5, 5]);
    let z = y.max_pool2d([2, 2], [2, 2], [0, 0]).add(&y.avg_pool2d([2, 2], [2, 2], [0, 0], true));
    assert_eq!(z.shape(), &[0, 3, 2, 2]);
    z.sum_all().backward();
    assert_eq!(x.grad().unwrap().shape(), &[0, 2, 5, 5]);
    assert_eq!(w.grad().unwrap().to_vec::<f64>(), vec![0.0; 54]);
}
