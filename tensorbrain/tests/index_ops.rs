//! index_select, index_add, gather, scatter_add and masked_fill: forward values, errors,
//! gradients (incl. second order) and the PyTorch fixtures in
//! tests/parity/fixtures/index.safetensors.

use tensorbrain::autograd::{gradcheck, gradgradcheck, GradcheckOptions};
use tensorbrain::{DType, Error, Result, Tensor};

fn f64s(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape)
}

fn idx(v: &[i64], shape: &[usize]) -> Tensor {
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

fn out_of_bounds(r: Result<Tensor>, op: &str, index: i64, size: usize) {
    match r {
        Err(e @ Error::IndexOutOfBounds { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(op) && msg.contains(&format!("index {index} ")) && msg.contains(&format!("size {size}")), "{msg}");
        }
        other => panic!("expected IndexOutOfBounds from {op}, got {other:?}"),
    }
}

fn wrong_index_dtype(r: Result<Tensor>, op: &str) {
    match r {
        Err(e @ Error::DType { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(op) && msg.contains("i32") && msg.contains("i64"), "{msg}");
        }
        other => panic!("expected a dtype error from {op}, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------- index_select

#[test]
fn index_select_forward_by_hand() {
    let x = seq(&[3, 4]);
    let r = x.index_select(0, &idx(&[2, 0, 2], &[3]));
    assert_eq!(r.to_vec2::<f64>(), [[8., 9., 10., 11.], [0., 1., 2., 3.], [8., 9., 10., 11.]]);
    let c = x.index_select(-1, &idx(&[3, 1], &[2]));
    assert_eq!(c.to_vec2::<f64>(), [[3., 1.], [7., 5.], [11., 9.]]);
    // Non-contiguous input, integer dtype, empty index.
    let xi = Tensor::from_slice(&[1i32, 2, 3, 4, 5, 6], &[2, 3]).t(); // [[1,4],[2,5],[3,6]]
    assert_eq!(xi.index_select(0, &idx(&[1], &[1])).to_vec::<i32>(), [2, 5]);
    assert_eq!(x.index_select(1, &idx(&[], &[0])).shape(), &[3, 0]);
    // A 0-d index selects one entry, keeping the dim.
    assert_eq!(x.index_select(0, &Tensor::scalar(1i64)).shape(), &[1, 4]);
}

#[test]
fn index_select_errors() {
    let x = seq(&[3, 4]);
    out_of_bounds(x.try_index_select(0, &idx(&[0, 3], &[2])), "index_select", 3, 3);
    out_of_bounds(x.try_index_select(1, &idx(&[-1], &[1])), "index_select", -1, 4);
    wrong_index_dtype(x.try_index_select(0, &Tensor::from_slice(&[0i32], &[1])), "index_select");
    let err = x.try_index_select(0, &idx(&[0, 1], &[1, 2])).unwrap_err().to_string();
    assert!(err.contains("1-D") && err.contains("[1, 2]"), "{err}");
    assert!(matches!(x.try_index_select(2, &idx(&[0], &[1])), Err(Error::DimOutOfRange { op: "index_select", .. })));
}

#[test]
#[should_panic(expected = "index_select: index 7 is out of bounds for dimension 0 of size 3")]
fn index_select_panics_with_the_message() {
    seq(&[3, 4]).index_select(0, &idx(&[7], &[1]));
}

#[test]
fn index_select_gradients() {
    let i = idx(&[1, 1, 3, 0, 1], &[5]);
    let f = |xs: &[Tensor]| -> Result<Tensor> { xs[0].try_index_select(-1, &i) };
    gradcheck(f, &[rnd(&[2, 3, 4], 1)], opts()).unwrap();
    let g = |xs: &[Tensor]| -> Result<Tensor> {
        let y = xs[0].try_transpose(0, 1)?.try_index_select(0, &idx(&[2, 0, 2], &[3]))?;
        y.try_mul(&y)
    };
    gradcheck(g, &[rnd(&[4, 3], 2)], opts()).unwrap();
    gradgradcheck(g, &[rnd(&[4, 3], 2)], opts()).unwrap();
    // Repeated indices accumulate.
    let x = seq(&[3]).set_requires_grad(true);
    x.index_select(0, &idx(&[2, 2, 0], &[3])).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), [1., 0., 2.]);
}

#[test]
fn index_add_forward_and_gradients() {
    let x = Tensor::zeros(&[2, 3], DType::F64);
    let y = x.index_add(1, &idx(&[2, 0, 2], &[3]), &seq(&[2, 3]));
    assert_eq!(y.to_vec2::<f64>(), [[1., 0., 2.], [4., 0., 8.]]);
    let err = x.try_index_add(1, &idx(&[0], &[1]), &seq(&[2, 3])).unwrap_err().to_string();
    assert!(err.contains("index_add") && err.contains("[2, 3]"), "{err}");
    let i = idx(&[0, 2, 0], &[3]);
    let f = |xs: &[Tensor]| -> Result<Tensor> {
        let y = xs[0].try_index_add(0, &i, &xs[1].try_t()?)?;
        y.try_mul(&y)
    };
    gradcheck(f, &[rnd(&[3, 2], 1), rnd(&[2, 3], 2)], opts()).unwrap();
    gradgradcheck(f, &[rnd(&[3, 2], 1), rnd(&[2, 3], 2)], opts()).unwrap();
}

// ------------------------------------------------------------------------------------- gather

#[test]
fn gather_forward_by_hand() {
    // The torch.gather docs example.
    let t = f64s(&[1., 2., 3., 4.], &[2, 2]);
    let g = t.gather(1, &idx(&[0, 0, 1, 0], &[2, 2]));
    assert_eq!(g.to_vec2::<f64>(), [[1., 1.], [4., 3.]]);
    // dim 0, index taller than the input.
    let x = seq(&[2, 3]);
    let g = x.gather(0, &idx(&[1, 0, 1, 0, 0, 0, 1, 1, 1], &[3, 3]));
    assert_eq!(g.to_vec2::<f64>(), [[3., 1., 5.], [0., 1., 2.], [3., 4., 5.]]);
    // Index smaller than the input on the non-gather dim, negative dim, transposed input.
    let xt = seq(&[4, 3]).t(); // [[0,3,6,9],[1,4,7,10],[2,5,8,11]]
    let g = xt.gather(-1, &idx(&[3, 0, 1, 1], &[2, 2]));
    assert_eq!(g.to_vec2::<f64>(), [[9., 0.], [4., 4.]]);
    let gi = Tensor::from_slice(&[5u8, 6, 7], &[3]).gather(0, &idx(&[2, 2, 0, 1], &[4]));
    assert_eq!(gi.to_vec::<u8>(), [7, 7, 5, 6]);
    assert_eq!(x.gather(1, &idx(&[], &[2, 0])).shape(), &[2, 0]);
}

#[test]
fn gather_errors() {
    let x = seq(&[2, 3]);
    out_of_bounds(x.try_gather(1, &idx(&[0, 3], &[1, 2])), "gather", 3, 3);
    out_of_bounds(x.try_gather(0, &idx(&[-2], &[1, 1])), "gather", -2, 2);
    wrong_index_dtype(x.try_gather(1, &Tensor::from_slice(&[0i32], &[1, 1])), "gather");
    let err = x.try_gather(1, &idx(&[0], &[1])).unwrap_err().to_string();
    assert!(err.contains("gather") && err.contains("rank"), "{err}");
    let err = x.try_gather(1, &idx(&[0; 3], &[3, 1])).unwrap_err().to_string();
    assert!(err.contains("[3, 1]") && err.contains("dim 0"), "{err}");
}

#[test]
fn gather_gradcheck_and_gradgradcheck() {
    let i = idx(&[3, 0, 3, 1, 2, 2, 0, 0, 1, 3, 3, 3], &[2, 6]);
    let f = |xs: &[Tensor]| -> Result<Tensor> { xs[0].try_gather(-1, &i) };
    gradcheck(f, &[rnd(&[3, 4], 1)], opts()).unwrap();
    let j = idx(&[0, 2, 1, 1, 0, 2], &[3, 2]);
    let g = |xs: &[Tensor]| -> Result<Tensor> {
        let y = xs[0].try_transpose(0, 1)?.try_gather(0, &j)?; // input seen as [3, 4]
        y.try_mul(&y)
    };
    gradcheck(g, &[rnd(&[4, 3], 2)], opts()).unwrap();
    gradgradcheck(g, &[rnd(&[4, 3], 2)], opts()).unwrap();
    let x = f64s(&[1., 2., 3.], &[3]).set_requires_grad(true);
    x.gather(0, &idx(&[2, 2, 1], &[3])).sum_all().backward();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), [0., 1., 2.]);
}

// -------------------------------------------------------------------------------- scatter_add

#[test]
fn scatter_add_forward_by_hand() {
    let s = Tensor::ones(&[2, 3], DType::F64);
    let src = seq(&[2, 2]); // [[0,1],[2,3]]
    let y = s.scatter_add(1, &idx(&[2, 2, 0, 1], &[2, 2]), &src);
    assert_eq!(y.to_vec2::<f64>(), [[1., 1., 2.], [3., 4., 1.]]);
    // Index smaller than src: only the index's extent of src is read.
    let y = s.scatter_add(0, &idx(&[1, 0], &[1, 2]), &seq(&[2, 3]));
    assert_eq!(y.to_vec2::<f64>(), [[1., 2., 1.], [1., 1., 1.]]);
    // Transposed self, integer dtype.
    let si = Tensor::from_slice(&[10i64, 20, 30, 40], &[2, 2]).t(); // [[10,30],[20,40]]
    let y = si.scatter_add(-1, &idx(&[1, 1], &[1, 2]), &Tensor::from_slice(&[1i64, 2], &[1, 2]));
    assert_eq!(y.to_vec2::<i64>(), [[10, 33], [20, 40]]);
}

#[test]
fn scatter_add_errors() {
    let s = Tensor::zeros(&[2, 3], DType::F64);
    out_of_bounds(s.try_scatter_add(1, &idx(&[5], &[1, 1]), &seq(&[1, 1])), "scatter_add", 5, 3);
    out_of_bounds(s.try_scatter_add(0, &idx(&[-1], &[1, 1]), &seq(&[1, 1])), "scatter_add", -1, 2);
    wrong_index_dtype(s.try_scatter_add(0, &Tensor::from_slice(&[0i32], &[1, 1]), &seq(&[1, 1])), "scatter_add");
    let err = s.try_scatter_add(0, &idx(&[0, 0], &[1, 2]), &seq(&[1, 1])).unwrap_err().to_string();
    assert!(err.contains("scatter_add") && err.contains("[1, 2]") && err.contains("[1, 1]"), "{err}");
    assert!(matches!(
        s.try_scatter_add(0, &idx(&[0], &[1, 1]), &Tensor::zeros(&[1, 1], DType::F32)),
        Err(Error::DTypeMismatch { op: "scatter_add", .. })
    ));
}

#[test]
fn scatter_add_gradients() {
    let i = idx(&[2, 0, 0, 1, 3, 3], &[2, 3]);
    let f = |xs: &[Tensor]| -> Result<Tensor> {
        let y = xs[0].try_transpose(0, 1)?.try_scatter_add(-1, &i, &xs[1])?; // self seen as [2, 4]
        y.try_mul(&y)
    };
    gradcheck(f, &[rnd(&[4, 2], 1), rnd(&[2, 3], 2)], opts()).unwrap();
    gradgradcheck(f, &[rnd(&[4, 2], 1), rnd(&[2, 3], 2)], opts()).unwrap();
    // src larger than the index: the unread entries get zero gradient.
    let s = Tensor::zeros(&[2, 3], DType::F64).set_requires_grad(true);
    let src = seq(&[2, 3]).set_requires_grad(true);
    let y = s.scatter_add(1, &idx(&[2, 0], &[1, 2]), &src);
    y.backward_with(&f64s(&[1., 2., 3., 4., 5., 6.], &[2, 3]));
    assert_eq!(s.grad().unwrap().to_vec::<f64>(), [1., 2., 3., 4., 5., 6.]);
    assert_eq!(src.grad().unwrap().to_vec2::<f64>(), [[3., 1., 0.], [0., 0., 0.]]);
    let g = |xs: &[Tensor]| -> Result<Tensor> { xs[0].try_scatter_add(0, &idx(&[1, 0], &[1, 2]), &xs[1]) };
    gradcheck(g, &[rnd(&[2, 3], 3), rnd(&[2, 3], 4)], opts()).unwrap();
}

// -------------------------------------------------------------------------------- masked_fill

#[test]
fn masked_fill_forward_by_hand() {
    let x = seq(&[2, 3]);
    let m = Tensor::from_slice(&[1u8, 0, 1, 0, 0, 1], &[2, 3]);
    assert_eq!(x.masked_fill(&m, -1.0).to_vec::<f64>(), [-1., 1., -1., 3., 4., -1.]);
    let row = Tensor::from_slice(&[0u8, 1, 0], &[3]);
    assert_eq!(x.masked_fill(&row, 9.0).to_vec::<f64>(), [0., 9., 2., 3., 9., 5.]);
    let col = Tensor::from_slice(&[1u8, 0], &[2, 1]);
    assert_eq!(x.t().masked_fill(&row.reshape(&[3, 1]), 7.0).to_vec2::<f64>(), [[0., 3.], [7., 7.], [2., 5.]]);
    assert_eq!(x.masked_fill(&col, 2.0).to_vec::<f64>(), [2., 2., 2., 3., 4., 5.]);
    let xi = Tensor::from_slice(&[1i64, 2, 3], &[3]);
    assert_eq!(xi.masked_fill(&row, -5.0).to_vec::<i64>(), [1, -5, 3]);
    assert_eq!(x.masked_fill(&Tensor::scalar(1u8), 0.5).to_vec::<f64>(), [0.5; 6]);
    // f32 keeps large negative fills (attention masks).
    let xf = Tensor::zeros(&[2], DType::F32).masked_fill(&Tensor::from_slice(&[1u8, 0], &[2]), -1e9);
    assert_eq!(xf.to_vec::<f32>(), [-1e9, 0.0]);
}

#[test]
fn masked_fill_errors() {
    let x = seq(&[2, 3]);
    let err = x.try_masked_fill(&Tensor::zeros(&[2, 3], DType::F32), 0.0).unwrap_err().to_string();
    assert!(err.contains("masked_fill") && err.contains("f32") && err.contains("u8"), "{err}");
    let err = x.try_masked_fill(&Tensor::zeros(&[2], DType::U8), 0.0).unwrap_err().to_string();
    assert!(err.contains("masked_fill") && err.contains("[2, 3]") && err.contains("[2]"), "{err}");
}

#[test]
fn masked_fill_gradients() {
    let m = Tensor::from_slice(&[1u8, 0, 0, 1], &[4, 1]);
    let f = |xs: &[Tensor]| -> Result<Tensor> {
        let y = xs[0].try_transpose(0, 1)?.try_masked_fill(&m, 3.0)?; // [4, 3]
        y.try_mul(&y)
    };
    gradcheck(f, &[rnd(&[3, 4], 1)], opts()).unwrap();
    gradgradcheck(f, &[rnd(&[3, 4], 1)], opts()).unwrap();
    let x = seq(&[2, 2]).set_requires_grad(true);
    x.masked_fill(&Tensor::from_slice(&[0u8, 1], &[2]), 0.0).backward_with(&f64s(&[1., 2., 3., 4.], &[2, 2]));
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), [1., 0., 3., 0.]);
    // A mask that broadcasts `self` up: the gradient sums back to self's shape.
    let y = f64s(&[1., 2.], &[2]).set_requires_grad(true);
    y.masked_fill(&Tensor::from_slice(&[1u8, 0, 0, 0], &[2, 2]), 0.0).sum_all().backward();
    assert_eq!(y.grad().unwrap().to_vec::<f64>(), [1., 2.]);
}

#[test]
fn large_inputs_take_the_parallel_path_and_agree_with_a_naive_loop() {
    let (r, c, m) = (300usize, 200usize, 150usize);
    let x = seq(&[r, c]);
    let xv = x.to_vec::<f64>();
    let iv: Vec<i64> = (0..r * m).map(|k| ((k * 7919) % c) as i64).collect();
    let g = x.gather(1, &idx(&iv, &[r, m])).to_vec::<f64>();
    assert!((0..r * m).all(|k| g[k] == xv[(k / m) * c + iv[k] as usize]));
    let cols: Vec<i64> = (0..m).map(|j| ((j * 31) % 97) as i64).collect(); // repeats
    let s = x.index_select(1, &idx(&cols, &[m])).to_vec::<f64>();
    assert!((0..r * m).all(|k| s[k] == xv[(k / m) * c + cols[k % m] as usize]));
    // index_add of the selection puts each column back times its multiplicity.
    let back = Tensor::zeros(&[r, c], DType::F64).index_add(1, &idx(&cols, &[m]), &x.index_select(1, &idx(&cols, &[m])));
    let mut mult = vec![0.0; c];
    cols.iter().for_each(|&j| mult[j as usize] += 1.0);
    let bv = back.to_vec::<f64>();
    assert!((0..r * c).all(|k| bv[k] == xv[k] * mult[k % c]));
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

    fn apply_views(mut t: Tensor, views: Option<&Value>) -> Tensor {
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

    /// Replays each fixture case of `file` through `run(op, args, inputs)`.
    pub(super) fn replay(file: &str, run: impl Fn(&str, &Value, &[Tensor]) -> Tensor) -> usize {
        let path = format!("{}/../tests/parity/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let cases: Value = serde_json::from_str(&meta.metadata().as_ref().unwrap()["cases"]).unwrap();
        let mut count = 0;
        for case in cases.as_array().unwrap() {
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
            let out = run(case["op"].as_str().unwrap(), &case["args"], &inputs);
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
    let n = parity::replay("index.safetensors", |op, args, xs| {
        let dim = || args["dim"].as_i64().unwrap() as isize;
        match op {
            "index_select" => xs[0].index_select(dim(), &xs[1]),
            "gather" => xs[0].gather(dim(), &xs[1]),
            "scatter_add" => xs[0].scatter_add(dim(), &xs[1], &xs[2]),
            "masked_fill" => xs[0].masked_fill(&xs[1], args["value"].as_f64().unwrap()),
            other => panic!("unexpected op {other} in index fixtures"),
        }
    });
    assert_eq!(n, 30, "every index fixture case should run");
}
