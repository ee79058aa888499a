//! cat, stack, split, chunk and pad: forward values, errors, gradients (incl. second order) and
//! the PyTorch fixtures in tests/parity/fixtures/movement.safetensors.

use tensorbrain::autograd::{gradcheck, gradgradcheck, GradcheckOptions};
use tensorbrain::{DType, Error, Result, Tensor};

fn f64s(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape)
}

fn seq(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| i as f64).collect::<Vec<_>>(), shape)
}

/// Deterministic non-trivial f64 values.
fn rnd(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|i| ((i as f64 + 1.0) * 0.7548776662 + seed as f64 * 0.5698402910).fract() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape)
}

fn opts() -> GradcheckOptions {
    GradcheckOptions::default()
}

// ---------------------------------------------------------------------------------------- cat

#[test]
fn cat_forward_by_hand() {
    let a = f64s(&[1., 2., 3., 4.], &[2, 2]);
    let b = f64s(&[5., 6.], &[1, 2]);
    let c = Tensor::cat(&[&a, &b], 0);
    assert_eq!(c.shape(), &[3, 2]);
    assert_eq!(c.to_vec::<f64>(), [1., 2., 3., 4., 5., 6.]);

    let b = f64s(&[7., 8.], &[2, 1]);
    let c = Tensor::cat(&[&a, &b, &a], -1);
    assert_eq!(c.shape(), &[2, 5]);
    assert_eq!(c.to_vec::<f64>(), [1., 2., 7., 1., 2., 3., 4., 8., 3., 4.]);
}

#[test]
fn cat_reads_non_contiguous_inputs() {
    // a.T = [[0, 3], [1, 4], [2, 5]]
    let a = seq(&[2, 3]).t();
    let b = seq(&[3, 4]).slice(1, 0, 4, 2); // [[0, 2], [4, 6], [8, 10]]
    let c = Tensor::cat(&[&a, &b], 1);
    assert_eq!(c.to_vec2::<f64>(), [[0., 3., 0., 2.], [1., 4., 4., 6.], [2., 5., 8., 10.]]);
    let e = f64s(&[9.], &[1, 1]).expand(&[2, 2]);
    assert_eq!(Tensor::cat(&[&e, &e], 0).to_vec::<f64>(), [9.; 8]);
}

#[test]
fn cat_works_for_integer_dtypes() {
    let a = Tensor::from_slice(&[1i64, 2], &[2]);
    let b = Tensor::from_slice(&[3i64], &[1]);
    let c = Tensor::cat(&[&a, &b], 0);
    assert_eq!(c.dtype(), DType::I64);
    assert_eq!(c.to_vec::<i64>(), [1, 2, 3]);
    let m = Tensor::cat(&[&Tensor::from_slice(&[1u8, 0], &[1, 2]), &Tensor::from_slice(&[0u8, 1], &[1, 2])], 0);
    assert_eq!(m.to_vec::<u8>(), [1, 0, 0, 1]);
}

#[test]
fn cat_skips_one_dimensional_empty_tensors_like_pytorch() {
    let a = seq(&[2, 3]);
    let e = Tensor::zeros(&[0], DType::F64);
    let c = Tensor::cat(&[&e, &a, &e], 1);
    assert_eq!(c.shape(), &[2, 3]);
    assert_eq!(c.to_vec::<f64>(), a.to_vec::<f64>());
    // A [0, 3] tensor is not skipped: it must match and adds nothing.
    let z = Tensor::zeros(&[0, 3], DType::F64);
    assert_eq!(Tensor::cat(&[&a, &z], 0).shape(), &[2, 3]);
}

#[test]
fn cat_errors_name_the_mismatching_tensor() {
    let a = seq(&[2, 3]);
    let b = seq(&[2, 3]);
    let c = seq(&[4, 2]);
    let err = Tensor::try_cat(&[&a, &b, &c], 0).unwrap_err().to_string();
    assert!(err.contains("cat") && err.contains("tensor 2") && err.contains("[4, 2]") && err.contains("[2, 3]"), "{err}");

    let r = seq(&[2, 3, 1]);
    let err = Tensor::try_cat(&[&a, &r], 0).unwrap_err().to_string();
    assert!(err.contains("tensor 1") && err.contains("[2, 3, 1]"), "{err}");

    let f = Tensor::zeros(&[2, 3], DType::F32);
    let err = Tensor::try_cat(&[&a, &f], 0).unwrap_err().to_string();
    assert!(err.contains("tensor 1") && err.contains("f32") && err.contains("f64"), "{err}");

    let err = Tensor::try_cat(&[], 0).unwrap_err().to_string();
    assert!(err.contains("non-empty"), "{err}");
    let s = Tensor::scalar(1.0f64);
    let err = Tensor::try_cat(&[&s, &s], 0).unwrap_err().to_string();
    assert!(err.contains("zero-dimensional") && err.contains("position 0"), "{err}");
    assert!(matches!(Tensor::try_cat(&[&a, &b], 2), Err(Error::DimOutOfRange { op: "cat", dim: 2, rank: 2 })));
}

#[test]
#[should_panic(expected = "tensor 1 has shape [3, 3]")]
fn cat_panics_with_the_message() {
    Tensor::cat(&[&seq(&[2, 2]), &seq(&[3, 3])], 0);
}

#[test]
fn cat_gradcheck_with_views_and_negative_dim() {
    let f = |xs: &[Tensor]| -> Result<Tensor> {
        let a = xs[0].try_transpose(0, 1)?; // [3, 2]
        let b = xs[1].try_slice(1, 0, 6, 2)?; // [3, 3]
        Tensor::try_cat(&[&a, &b, &xs[2]], -1)
    };
    let inputs = [rnd(&[2, 3], 1), rnd(&[3, 6], 2), rnd(&[3, 1], 3)];
    gradcheck(f, &inputs, opts()).unwrap();
    // Make the function non-linear so the second-order check has something to find.
    let g = |xs: &[Tensor]| -> Result<Tensor> { Tensor::try_cat(&[&xs[0], &xs[1].try_mul(&xs[1])?], 0) };
    gradgradcheck(g, &[rnd(&[1, 3], 4), rnd(&[2, 3], 5)], opts()).unwrap();
    let sq = |xs: &[Tensor]| -> Result<Tensor> {
        let c = f(xs)?;
        c.try_mul(&c)
    };
    gradgradcheck(sq, &inputs, opts()).unwrap();
}

#[test]
fn cat_gradient_only_for_inputs_that_need_it() {
    let a = f64s(&[1., 2.], &[2]).set_requires_grad(true);
    let b = f64s(&[3., 4., 5.], &[3]);
    let w = f64s(&[1., 10., 100., 1000., 10000.], &[5]);
    Tensor::cat(&[&b, &a], 0).mul(&w).sum_all().backward();
    assert_eq!(a.grad().unwrap().to_vec::<f64>(), [1000., 10000.]);
    assert!(b.grad().is_none());
    // The same tensor twice gets both gradients.
    let x = f64s(&[1., 2.], &[2]).set_requires_grad(true);
    Tensor::cat(&[&x, &x], 0).mul(&f64s(&[1., 2., 3., 4.], &[4])).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), [4., 6.]);
}

// -------------------------------------------------------------------------------------- stack

#[test]
fn stack_forward_by_hand() {
    let a = f64s(&[1., 2., 3.], &[3]);
    let b = f64s(&[4., 5., 6.], &[3]);
    let s0 = Tensor::stack(&[&a, &b], 0);
    assert_eq!(s0.shape(), &[2, 3]);
    assert_eq!(s0.to_vec::<f64>(), [1., 2., 3., 4., 5., 6.]);
    let s1 = Tensor::stack(&[&a, &b], -1);
    assert_eq!(s1.shape(), &[3, 2]);
    assert_eq!(s1.to_vec::<f64>(), [1., 4., 2., 5., 3., 6.]);
    let scalars = Tensor::stack(&[&Tensor::scalar(1i32), &Tensor::scalar(2i32), &Tensor::scalar(3i32)], 0);
    assert_eq!(scalars.shape(), &[3]);
    assert_eq!(scalars.to_vec::<i32>(), [1, 2, 3]);
    assert_eq!(Tensor::stack(&[&seq(&[0, 3]), &seq(&[0, 3])], 1).shape(), &[0, 2, 3]);
}

#[test]
fn stack_errors() {
    let err = Tensor::try_stack(&[&seq(&[2, 3]), &seq(&[2, 3]), &seq(&[3, 2])], 0).unwrap_err().to_string();
    assert!(err.contains("stack") && err.contains("tensor 2") && err.contains("[3, 2]"), "{err}");
    assert!(matches!(Tensor::try_stack(&[&seq(&[2, 3])], 3), Err(Error::DimOutOfRange { op: "stack", .. })));
    assert!(Tensor::try_stack(&[&seq(&[2]), &Tensor::zeros(&[2], DType::F32)], 0).unwrap_err().to_string().contains("tensor 1"));
}

#[test]
fn stack_gradcheck() {
    let f = |xs: &[Tensor]| -> Result<Tensor> { Tensor::try_stack(&[&xs[0].try_t()?, &xs[1]], 1) };
    gradcheck(f, &[rnd(&[3, 2], 1), rnd(&[2, 3], 2)], opts()).unwrap();
    let g = |xs: &[Tensor]| -> Result<Tensor> { Tensor::try_stack(&[&xs[0], &xs[0].try_mul(&xs[1])?], -1) };
    gradgradcheck(g, &[rnd(&[2, 3], 3), rnd(&[2, 3], 4)], opts()).unwrap();
}

// ------------------------------------------------------------------------------ split / chunk

fn sizes(pieces: &[Tensor], dim: usize) -> Vec<usize> {
    pieces.iter().map(|p| p.shape()[dim]).collect()
}

#[test]
fn split_pieces_are_views_with_a_smaller_last_piece() {
    let x = seq(&[7, 2]);
    let p = x.split(3, 0);
    assert_eq!(sizes(&p, 0), [3, 3, 1]);
    assert!(p.iter().all(|t| t.shares_storage(&x)));
    assert_eq!(p[1].to_vec::<f64>(), [6., 7., 8., 9., 10., 11.]);
    assert_eq!(p[2].to_vec::<f64>(), [12., 13.]);
    let q = x.split(1, -1);
    assert_eq!(q.len(), 2);
    assert_eq!(q[1].to_vec::<f64>(), [1., 3., 5., 7., 9., 11., 13.]);
    assert_eq!(sizes(&x.split(10, 0), 0), [7]);
    assert_eq!(sizes(&seq(&[0, 2]).split(3, 0), 0), [0]);
    assert_eq!(sizes(&seq(&[0, 2]).split(0, 0), 0), [0]);
}

#[test]
fn split_errors() {
    let err = seq(&[3]).try_split(0, 0).unwrap_err().to_string();
    assert!(err.contains("split") && err.contains("split_size"), "{err}");
    assert!(Tensor::scalar(1.0f64).try_split(1, 0).unwrap_err().to_string().contains("1-dimensional"));
    assert!(matches!(seq(&[3]).try_split(1, 1), Err(Error::DimOutOfRange { op: "split", .. })));
}

#[test]
fn chunk_follows_pytorch_sizes() {
    assert_eq!(sizes(&seq(&[7]).chunk(3, 0), 0), [3, 3, 1]);
    assert_eq!(sizes(&seq(&[6]).chunk(3, 0), 0), [2, 2, 2]);
    // ceil(6 / 4) = 2, so only three pieces.
    assert_eq!(sizes(&seq(&[6]).chunk(4, 0), 0), [2, 2, 2]);
    assert_eq!(sizes(&seq(&[2, 5]).chunk(2, -1), 1), [3, 2]);
    assert_eq!(sizes(&seq(&[2, 0]).chunk(3, 1), 1), [0, 0, 0]);
    assert_eq!(seq(&[2, 5]).chunk(2, 1)[1].to_vec::<f64>(), [3., 4., 8., 9.]);
    assert!(seq(&[3]).try_chunk(0, 0).unwrap_err().to_string().contains("chunks must be greater than 0"));
}

#[test]
fn split_and_chunk_gradcheck() {
    let f = |xs: &[Tensor]| -> Result<Tensor> {
        let p = xs[0].try_split(2, 0)?; // [2, 3] x 3
        Tensor::try_cat(&[&p[2], &p[0].try_mul(&p[1])?], 0)
    };
    gradcheck(f, &[rnd(&[6, 3], 1)], opts()).unwrap();
    gradgradcheck(f, &[rnd(&[6, 3], 1)], opts()).unwrap();
    let g = |xs: &[Tensor]| -> Result<Tensor> {
        let p = xs[0].try_transpose(0, 1)?.try_chunk(3, -2)?; // of [7, 2]: [3, 3, 1] rows
        p[0].try_mul(&p[1])?.try_add(&p[2])
    };
    gradcheck(g, &[rnd(&[2, 7], 2)], opts()).unwrap();
}

// ---------------------------------------------------------------------------------------- pad

#[test]
fn pad_forward_by_hand() {
    let x = f64s(&[1., 2., 3., 4.], &[2, 2]);
    // Last dim: 1 before, 0 after; dim 0: 0 before, 1 after.
    let y = x.pad(&[1, 0, 0, 1], 9.0);
    assert_eq!(y.to_vec2::<f64>(), [[9., 1., 2.], [9., 3., 4.], [9., 9., 9.]]);
    let y = x.pad(&[0, 2], 0.0);
    assert_eq!(y.to_vec2::<f64>(), [[1., 2., 0., 0.], [3., 4., 0., 0.]]);
    // Non-contiguous input, integer dtype.
    let i = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6], &[2, 3]).t();
    assert_eq!(i.pad(&[1, 1], -1.0).to_vec2::<i64>(), [[-1, 1, 4, -1], [-1, 2, 5, -1], [-1, 3, 6, -1]]);
    assert_eq!(seq(&[2, 0]).pad(&[1, 2], 3.0).to_vec::<f64>(), [3.; 6]);
    assert_eq!(seq(&[2, 3]).pad(&[], 3.0).to_vec::<f64>(), seq(&[2, 3]).to_vec::<f64>());
}

#[test]
fn pad_errors() {
    let err = seq(&[2, 3]).try_pad(&[1, 2, 3], 0.0).unwrap_err().to_string();
    assert!(err.contains("pad") && err.contains("even"), "{err}");
    let err = seq(&[3]).try_pad(&[1, 1, 1, 1], 0.0).unwrap_err().to_string();
    assert!(err.contains("covers 2 dims") && err.contains("[3]"), "{err}");
}

#[test]
fn pad_gradcheck_and_gradgradcheck() {
    let f = |xs: &[Tensor]| -> Result<Tensor> { xs[0].try_transpose(0, 1)?.try_pad(&[1, 1, 2, 0], 0.5) };
    gradcheck(f, &[rnd(&[4, 3], 1)], opts()).unwrap();
    let g = |xs: &[Tensor]| -> Result<Tensor> { xs[0].try_mul(&xs[0])?.try_pad(&[1, 0, 0, 1, 1, 1], -2.0) };
    gradcheck(g, &[rnd(&[2, 2, 3], 2)], opts()).unwrap();
    gradgradcheck(g, &[rnd(&[2, 2, 3], 2)], opts()).unwrap();
    // The gradient is exactly the interior of the upstream gradient.
    let x = seq(&[2, 2]).set_requires_grad(true);
    let y = x.pad(&[1, 0, 0, 1], 9.0);
    y.backward_with(&seq(&[3, 3]));
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), [1., 2., 4., 5.]);
}

// ------------------------------------------------------------------------------ PyTorch parity

mod parity {
    use super::*;
    use safetensors::{Dtype, SafeTensors};
    use serde_json::Value;

    fn load(st: &SafeTensors, name: &str) -> Tensor {
        let v = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape = v.shape().to_vec();
        let b = v.data();
        match v.dtype() {
            Dtype::F32 => Tensor::from_vec(b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(), &shape),
            Dtype::F64 => Tensor::from_vec(b.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(), &shape),
            Dtype::I64 => Tensor::from_vec(b.chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>(), &shape),
            Dtype::U8 => Tensor::from_vec(b.to_vec(), &shape),
            d => panic!("{name}: unexpected dtype {d:?}"),
        }
    }

    fn ints(v: &Value) -> Vec<isize> {
        v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as isize).collect()
    }

    pub(super) fn apply_views(mut t: Tensor, views: Option<&Value>) -> Tensor {
        for v in views.and_then(|v| v.as_array()).into_iter().flatten() {
            let a = v.as_array().unwrap();
            let i = |k: usize| a[k].as_i64().unwrap() as isize;
            t = match a[0].as_str().unwrap() {
                "transpose" => t.transpose(i(1), i(2)),
                "permute" => t.permute(&ints(&a[1])),
                "slice" => t.slice(i(1), i(2), i(3), i(4) as usize),
                "expand" => t.expand(&ints(&a[1])),
                other => panic!("unknown view {other}"),
            };
        }
        t
    }

    fn close(name: &str, what: &str, got: &Tensor, want: &Tensor, rtol: f64, atol: f64) {
        assert_eq!(got.shape(), want.shape(), "{name} {what}: shape");
        for (i, (g, w)) in got.to_vec::<f64>().iter().zip(want.to_vec::<f64>()).enumerate() {
            assert!((g - w).abs() <= atol + rtol * w.abs(), "{name} {what}[{i}]: got {g}, PyTorch {w}");
        }
    }

    /// Replays each fixture case of `ops` from `file` through `run(op, args, inputs)`.
    pub(super) fn replay(file: &str, ops: &[&str], run: impl Fn(&str, &Value, &[Tensor]) -> Tensor) -> usize {
        let path = format!("{}/../tests/parity/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let cases: Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["cases"]).unwrap();
        let mut count = 0;
        for case in cases.as_array().unwrap() {
            let op = case["op"].as_str().unwrap();
            if !ops.contains(&op) {
                continue;
            }
            let name = case["name"].as_str().unwrap();
            let n = case["inputs"].as_u64().unwrap() as usize;
            let grads: Vec<bool> = case["grad"].as_array().map(|g| g.iter().map(|b| b.as_bool().unwrap()).collect()).unwrap_or_default();
            let leaves: Vec<Tensor> = (0..n)
                .map(|i| {
                    let t = load(&st, &format!("{name}/in{i}"));
                    if grads.get(i).copied().unwrap_or(false) { t.set_requires_grad(true) } else { t }
                })
                .collect();
            let inputs: Vec<Tensor> =
                leaves.iter().enumerate().map(|(i, t)| apply_views(t.clone(), case.get("views").and_then(|v| v.get(i.to_string())))).collect();
            let out = run(op, &case["args"], &inputs);
            let (rtol, atol) = (case["rtol"].as_f64().unwrap(), case["atol"].as_f64().unwrap());
            close(name, "out", &out, &load(&st, &format!("{name}/out")), rtol, atol);
            if grads.iter().any(|&g| g) {
                out.backward_with(&load(&st, &format!("{name}/gout")));
                for (i, leaf) in leaves.iter().enumerate() {
                    if grads[i] {
                        let g = leaf.grad().unwrap_or_else(|| Tensor::zeros(leaf.shape(), leaf.dtype()));
                        close(name, &format!("grad{i}"), &g, &load(&st, &format!("{name}/grad{i}")), rtol, atol);
                    }
                }
            }
            count += 1;
        }
        count
    }
}

#[test]
fn matches_pytorch_fixtures() {
    let n = parity::replay("movement.safetensors", &["cat", "stack", "split", "chunk", "pad"], |op, args, xs| {
        let dim = || args["dim"].as_i64().unwrap() as isize;
        let index = || args["index"].as_u64().unwrap() as usize;
        match op {
            "cat" => Tensor::cat(&xs.iter().collect::<Vec<_>>(), dim()),
            "stack" => Tensor::stack(&xs.iter().collect::<Vec<_>>(), dim()),
            "split" => xs[0].split(args["split_size"].as_u64().unwrap() as usize, dim())[index()].clone(),
            "chunk" => xs[0].chunk(args["chunks"].as_u64().unwrap() as usize, dim())[index()].clone(),
            "pad" => {
                let pad: Vec<usize> = args["pad"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as usize).collect();
                xs[0].pad(&pad, args["value"].as_f64().unwrap())
            }
            _ => unreachable!(),
        }
    });
    assert!(n >= 30, "only {n} fixture cases ran");
}
