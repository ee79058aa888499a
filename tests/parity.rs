//! PyTorch parity: replays every case of `tests/parity/fixtures/<family>.safetensors` (written
//! by `tests/parity/generate.py`, format in `tests/parity/FORMAT.md`) and compares outputs and
//! input gradients with PyTorch's, within each case's tolerance.
//!
//! One `#[test]` per op family. Each prints one line per op (cases, worst absolute error, worst
//! error relative to the tolerance, over outputs and gradients) and fails listing every failing
//! case with its first bad element. An op the dispatcher does not know fails its cases.
//!
//! [`dispatch`] is the single place that maps a fixture's `op` and `args` onto the public
//! `Tensor` API, so it doubles as a table of the API's PyTorch equivalents.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use half::{bf16, f16};
use safetensors::{Dtype as StDtype, SafeTensors};
use serde_json::Value;
use tensorbrain::{DType, Result, Tensor};

// ---------------------------------------------------------------------------------------------
// The dispatcher: fixture op name + args -> TensorBrain call.
// ---------------------------------------------------------------------------------------------

/// Runs `op` on the (already viewed) inputs `x`.
fn dispatch(op: &str, a: &Args, x: &[Tensor]) -> Result<Tensor> {
    match op {
        // unary
        "exp" => x[0].try_exp(),
        "log" => x[0].try_log(),
        "sqrt" => x[0].try_sqrt(),
        "rsqrt" => x[0].try_rsqrt(),
        "abs" => x[0].try_abs(),
        "neg" => x[0].try_neg(),
        "sin" => x[0].try_sin(),
        "cos" => x[0].try_cos(),
        "tanh" => x[0].try_tanh(),
        "sigmoid" => x[0].try_sigmoid(),
        "relu" => x[0].try_relu(),
        "silu" => x[0].try_silu(),
        "softplus" => x[0].try_softplus(),
        "gelu" => x[0].try_gelu(),
        "gelu_tanh" => x[0].try_gelu_tanh(),
        "elu" => x[0].try_elu(a.f64("alpha")),
        "leaky_relu" => x[0].try_leaky_relu(a.f64("negative_slope")),
        "clamp" => x[0].try_clamp(a.opt_f64("min"), a.opt_f64("max")),
        "pow_scalar" => x[0].try_pow_scalar(a.f64("exponent")),
        "add_scalar" => x[0].try_add_scalar(a.f64("value")),
        "mul_scalar" => x[0].try_mul_scalar(a.f64("value")),
        "to_dtype" => x[0].try_to_dtype(a.dtype("dtype")),

        // binary (broadcasting); comparisons give u8 masks
        "add" => x[0].try_add(&x[1]),
        "sub" => x[0].try_sub(&x[1]),
        "mul" => x[0].try_mul(&x[1]),
        "div" => x[0].try_div(&x[1]),
        "pow" => x[0].try_pow(&x[1]),
        "maximum" => x[0].try_maximum(&x[1]),
        "minimum" => x[0].try_minimum(&x[1]),
        "eq" => x[0].try_eq(&x[1]),
        "ne" => x[0].try_ne(&x[1]),
        "lt" => x[0].try_lt(&x[1]),
        "le" => x[0].try_le(&x[1]),
        "gt" => x[0].try_gt(&x[1]),
        "ge" => x[0].try_ge(&x[1]),
        "where_cond" => Tensor::try_where_cond(&x[0], &x[1], &x[2]),

        // reductions: `dims` empty = all dims
        "sum" => x[0].try_sum(&a.ints("dims"), a.bool("keepdim")),
        "mean" => x[0].try_mean(&a.ints("dims"), a.bool("keepdim")),
        "prod" => x[0].try_prod(&a.ints("dims"), a.bool("keepdim")),
        "max" => x[0].try_max(&a.ints("dims"), a.bool("keepdim")),
        "min" => x[0].try_min(&a.ints("dims"), a.bool("keepdim")),
        "logsumexp" => x[0].try_logsumexp(&a.ints("dims"), a.bool("keepdim")),
        "var" => x[0].try_var(&a.ints("dims"), a.bool("keepdim"), a.usize("correction")),
        "std" => x[0].try_std(&a.ints("dims"), a.bool("keepdim"), a.usize("correction")),
        "argmax" => x[0].try_argmax(a.opt_int("dim"), a.bool("keepdim")),
        "argmin" => x[0].try_argmin(a.opt_int("dim"), a.bool("keepdim")),

        "matmul" => x[0].try_matmul(&x[1]),

        // movement
        "reshape" => x[0].try_reshape(&a.ints("shape")),
        "flatten" => x[0].try_flatten(a.int("start_dim"), a.int("end_dim")),
        "squeeze" => x[0].try_squeeze(a.opt_int("dim")),
        "unsqueeze" => x[0].try_unsqueeze(a.int("dim")),
        "transpose" => x[0].try_transpose(a.int("dim0"), a.int("dim1")),
        "permute" => x[0].try_permute(&a.ints("dims")),
        "expand" => x[0].try_expand(&a.ints("shape")),
        "contiguous" => x[0].try_contiguous(),
        "slice" => x[0].try_slice(a.int("dim"), a.int("start"), a.int("end"), a.usize("step")),
        "cat" => Tensor::try_cat(&x.iter().collect::<Vec<_>>(), a.int("dim")),
        "stack" => Tensor::try_stack(&x.iter().collect::<Vec<_>>(), a.int("dim")),
        "split" => Ok(x[0].try_split(a.usize("split_size"), a.int("dim"))?[a.usize("index")].clone()),
        "chunk" => Ok(x[0].try_chunk(a.usize("chunks"), a.int("dim"))?[a.usize("index")].clone()),
        "pad" => x[0].try_pad(&a.usizes("pad"), a.f64("value")),

        // indexing: index tensors are i64, masks u8
        "index_select" => x[0].try_index_select(a.int("dim"), &x[1]),
        "gather" => x[0].try_gather(a.int("dim"), &x[1]),
        "scatter_add" => x[0].try_scatter_add(a.int("dim"), &x[1], &x[2]),
        "masked_fill" => x[0].try_masked_fill(&x[1], a.f64("value")),

        // nn
        "softmax" => x[0].try_softmax(a.int("dim")),
        "log_softmax" => x[0].try_log_softmax(a.int("dim")),
        "conv2d" => x[0].try_conv2d(&x[1], x.get(2), a.pair("stride"), a.pair("padding"), a.pair("dilation"), a.usize("groups")),
        "max_pool2d" => x[0].try_max_pool2d(a.pair("kernel_size"), a.pair("stride"), a.pair("padding")),
        "avg_pool2d" => x[0].try_avg_pool2d(a.pair("kernel_size"), a.pair("stride"), a.pair("padding"), a.bool("count_include_pad")),

        // creation (no inputs)
        "arange" => Tensor::try_arange(a.f64("start"), a.f64("end"), a.f64("step"), a.dtype("dtype")),
        "linspace" => Ok(Tensor::linspace(a.f64("start"), a.f64("end"), a.usize("steps"), a.dtype("dtype"))),
        "eye" => Ok(Tensor::eye(a.usize("n"), a.dtype("dtype"))),
        "zeros" => Ok(Tensor::zeros(&a.usizes("shape"), a.dtype("dtype"))),
        "ones" => Ok(Tensor::ones(&a.usizes("shape"), a.dtype("dtype"))),
        "full" => Ok(Tensor::full(&a.usizes("shape"), a.f64("value"), a.dtype("dtype"))),

        // the ops of issue 11 (tests/parity/generate_ops.py), dispatched in their own file
        other => ops_dispatch::dispatch(other, a, x),
    }
}

#[path = "parity/ops_dispatch.rs"]
mod ops_dispatch;

// ---------------------------------------------------------------------------------------------
// Case arguments
// ---------------------------------------------------------------------------------------------

/// A case's `args` object. A missing or mistyped key is a fixture bug: it panics, and the case
/// is reported as failed with the message.
struct Args<'a>(&'a Value);

impl Args<'_> {
    fn get(&self, k: &str) -> &Value {
        self.0.get(k).unwrap_or_else(|| panic!("fixture: missing arg {k:?} in {}", self.0))
    }
    fn f64(&self, k: &str) -> f64 {
        self.get(k).as_f64().unwrap_or_else(|| panic!("fixture: arg {k:?} is not a number"))
    }
    fn opt_f64(&self, k: &str) -> Option<f64> {
        let v = self.get(k);
        if v.is_null() {
            None
        } else {
            Some(self.f64(k))
        }
    }
    fn int(&self, k: &str) -> isize {
        self.get(k).as_i64().unwrap_or_else(|| panic!("fixture: arg {k:?} is not an integer")) as isize
    }
    fn opt_int(&self, k: &str) -> Option<isize> {
        if self.get(k).is_null() {
            None
        } else {
            Some(self.int(k))
        }
    }
    fn usize(&self, k: &str) -> usize {
        let v = self.get(k);
        v.as_u64().or_else(|| v.as_bool().map(u64::from)).unwrap_or_else(|| panic!("fixture: arg {k:?} is not a count")) as usize
    }
    fn bool(&self, k: &str) -> bool {
        self.get(k).as_bool().unwrap_or_else(|| panic!("fixture: arg {k:?} is not a bool"))
    }
    fn ints(&self, k: &str) -> Vec<isize> {
        let arr = self.get(k).as_array().unwrap_or_else(|| panic!("fixture: arg {k:?} is not a list"));
        arr.iter().map(|v| v.as_i64().expect("fixture: integer list") as isize).collect()
    }
    fn usizes(&self, k: &str) -> Vec<usize> {
        self.ints(k).into_iter().map(|v| usize::try_from(v).expect("fixture: non-negative list")).collect()
    }
    fn pair(&self, k: &str) -> [usize; 2] {
        let v = self.usizes(k);
        [v[0], v[1]]
    }
    fn dtype(&self, k: &str) -> DType {
        let name = self.get(k).as_str().expect("fixture: dtype is a string");
        DType::from_name(name).unwrap_or_else(|| panic!("fixture: unknown dtype {name:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture loading
// ---------------------------------------------------------------------------------------------

struct Case {
    name: String,
    op: String,
    args: Value,
    inputs: usize,
    views: HashMap<usize, Vec<Value>>,
    grad: Vec<bool>,
    rtol: f64,
    atol: f64,
}

fn parse_cases(json: &str) -> Vec<Case> {
    let list: Vec<Value> = serde_json::from_str(json).expect("fixture: cases is a JSON list");
    list.into_iter()
        .map(|c| {
            let views = c
                .get("views")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.parse().expect("view key is an input index"), v.as_array().expect("view list").clone()))
                        .collect()
                })
                .unwrap_or_default();
            Case {
                name: c["name"].as_str().expect("name").to_string(),
                op: c["op"].as_str().expect("op").to_string(),
                args: c["args"].clone(),
                inputs: c["inputs"].as_u64().expect("inputs") as usize,
                views,
                grad: c["grad"].as_array().expect("grad").iter().map(|g| g.as_bool().expect("grad flag")).collect(),
                rtol: c["rtol"].as_f64().expect("rtol"),
                atol: c["atol"].as_f64().expect("atol"),
            }
        })
        .collect()
}

/// The fixture file, found from the crate root when it exists (cargo test), else from the
/// current directory (a test binary copied to another machine and run from the repo root).
fn fixture_path(family: &str) -> PathBuf {
    let rel = PathBuf::from(format!("tests/parity/fixtures/{family}.safetensors"));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if root.is_dir() {
        root.join(rel)
    } else {
        rel
    }
}

/// A stored tensor: dtype, shape and values (as f64, exact for every fixture dtype).
struct Stored {
    dtype: DType,
    shape: Vec<usize>,
    values: Vec<f64>,
    tensor: Tensor,
}

fn load(st: &SafeTensors, key: &str) -> std::result::Result<Stored, String> {
    let view = st.tensor(key).map_err(|e| format!("fixture: tensor {key}: {e}"))?;
    let (shape, data) = (view.shape().to_vec(), view.data());
    fn le<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(|c| c.try_into().unwrap())
    }
    let tensor = match view.dtype() {
        StDtype::F32 => Tensor::from_vec(le(data).map(f32::from_le_bytes).collect::<Vec<_>>(), &shape),
        StDtype::F64 => Tensor::from_vec(le(data).map(f64::from_le_bytes).collect::<Vec<_>>(), &shape),
        StDtype::F16 => Tensor::from_vec(le(data).map(|b| f16::from_bits(u16::from_le_bytes(b))).collect::<Vec<_>>(), &shape),
        StDtype::BF16 => Tensor::from_vec(le(data).map(|b| bf16::from_bits(u16::from_le_bytes(b))).collect::<Vec<_>>(), &shape),
        StDtype::I64 => Tensor::from_vec(le(data).map(i64::from_le_bytes).collect::<Vec<_>>(), &shape),
        StDtype::I32 => Tensor::from_vec(le(data).map(i32::from_le_bytes).collect::<Vec<_>>(), &shape),
        StDtype::I16 => Tensor::from_vec(le(data).map(i16::from_le_bytes).collect::<Vec<_>>(), &shape),
        StDtype::I8 => Tensor::from_vec(data.iter().map(|&b| b as i8).collect::<Vec<_>>(), &shape),
        StDtype::U8 => Tensor::from_vec(data.to_vec(), &shape),
        StDtype::BOOL => Tensor::from_vec(data.iter().map(|&b| b != 0).collect::<Vec<_>>(), &shape),
        other => return Err(format!("fixture: tensor {key} has unsupported dtype {other:?}")),
    };
    Ok(Stored { dtype: tensor.dtype(), values: tensor.to_vec::<f64>(), shape, tensor })
}

/// Applies a case's view list (FORMAT.md) to an input.
fn apply_views(mut t: Tensor, views: &[Value]) -> Result<Tensor> {
    for v in views {
        let v = v.as_array().expect("fixture: a view is a list");
        let int = |i: usize| v[i].as_i64().expect("fixture: view argument") as isize;
        let ints = |i: usize| -> Vec<isize> { v[i].as_array().expect("view list").iter().map(|x| x.as_i64().unwrap() as isize).collect() };
        t = match v[0].as_str().expect("fixture: view kind") {
            "transpose" => t.try_transpose(int(1), int(2))?,
            "permute" => t.try_permute(&ints(1))?,
            "slice" => t.try_slice(int(1), int(2), int(3), int(4) as usize)?,
            "expand" => t.try_expand(&ints(1))?,
            other => panic!("fixture: unknown view {other:?}"),
        };
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------------

/// Worst errors over what was compared.
#[derive(Clone, Copy, Debug, Default)]
struct Worst {
    abs: f64,
    ratio: f64,
}

impl Worst {
    fn merge(&mut self, o: Worst) {
        self.abs = self.abs.max(o.abs);
        self.ratio = self.ratio.max(o.ratio);
    }
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d].max(1);
        i /= shape[d].max(1);
    }
    idx
}

/// `|got - want| <= atol + rtol * |want|` elementwise (NaN matches NaN, infinities match
/// themselves); shape and dtype must match exactly.
fn compare(what: &str, got: &Tensor, want: &Stored, rtol: f64, atol: f64) -> std::result::Result<Worst, String> {
    if got.shape() != want.shape.as_slice() {
        return Err(format!("{what}: shape {:?}, expected {:?}", got.shape(), want.shape));
    }
    if got.dtype() != want.dtype {
        return Err(format!("{what}: dtype {}, expected {}", got.dtype(), want.dtype));
    }
    if want.dtype == DType::I64 {
        // Exactly, beyond f64's 53 bits.
        let (g, w) = (got.to_vec::<i64>(), want.tensor.to_vec::<i64>());
        if let Some(i) = (0..g.len()).find(|&i| g[i] != w[i]) {
            return Err(format!("{what}: first difference at {:?}: got {}, expected {}", unravel(i, &want.shape), g[i], w[i]));
        }
    }
    let g = got.to_vec::<f64>();
    let mut worst = Worst::default();
    let mut first_bad = None;
    let mut bad = 0usize;
    for (i, (&a, &b)) in g.iter().zip(&want.values).enumerate() {
        let same = a == b || (a.is_nan() && b.is_nan());
        let (err, tol) = if same {
            (0.0, 0.0)
        } else if b.is_infinite() {
            (f64::INFINITY, 0.0) // an infinity is only matched by itself
        } else {
            ((a - b).abs(), atol + rtol * b.abs())
        };
        let ratio = if err == 0.0 { 0.0 } else if tol > 0.0 { err / tol } else { f64::INFINITY };
        if !err.is_nan() {
            worst.abs = worst.abs.max(err);
        }
        worst.ratio = worst.ratio.max(if ratio.is_nan() { f64::INFINITY } else { ratio });
        if !same && !(err <= tol) {
            bad += 1;
            first_bad.get_or_insert((i, a, b, tol));
        }
    }
    match first_bad {
        None => Ok(worst),
        Some((i, a, b, tol)) => Err(format!(
            "{what}: {bad} of {} elements differ; first at {:?}: got {a:e}, expected {b:e} (|diff| {:e} > tol {tol:e})",
            g.len(),
            unravel(i, &want.shape),
            (a - b).abs()
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Running a family
// ---------------------------------------------------------------------------------------------

enum Outcome {
    Pass(Worst),
    Fail(String),
}

fn run_case(st: &SafeTensors, case: &Case) -> Outcome {
    let body = || -> std::result::Result<Worst, String> {
        let key = |s: &str| format!("{}/{s}", case.name);
        let mut leaves = Vec::with_capacity(case.inputs);
        let mut inputs = Vec::with_capacity(case.inputs);
        for i in 0..case.inputs {
            let mut leaf = load(st, &key(&format!("in{i}")))?.tensor;
            if case.grad.get(i).copied().unwrap_or(false) {
                leaf = leaf.try_set_requires_grad(true).map_err(|e| format!("in{i}: {e}"))?;
            }
            let viewed = apply_views(leaf.clone(), case.views.get(&i).map_or(&[][..], Vec::as_slice))
                .map_err(|e| format!("views on in{i}: {e}"))?;
            leaves.push(leaf);
            inputs.push(viewed);
        }
        let out = dispatch(&case.op, &Args(&case.args), &inputs).map_err(|e| e.to_string())?;
        let mut worst = compare("out", &out, &load(st, &key("out"))?, case.rtol, case.atol)?;
        if case.grad.iter().any(|&g| g) {
            let gout = load(st, &key("gout"))?.tensor;
            out.try_backward_opts(Some(&gout), false).map_err(|e| format!("backward: {e}"))?;
            for (i, leaf) in leaves.iter().enumerate() {
                if !case.grad[i] {
                    continue;
                }
                let want = load(st, &key(&format!("grad{i}")))?;
                let got = leaf.grad().unwrap_or_else(|| Tensor::zeros(leaf.shape(), leaf.dtype()));
                worst.merge(compare(&format!("grad{i}"), &got, &want, case.rtol, case.atol)?);
            }
        }
        Ok(worst)
    };
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(w)) => Outcome::Pass(w),
        Ok(Err(msg)) => Outcome::Fail(msg),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            Outcome::Fail(format!("panicked: {msg}"))
        }
    }
}

#[derive(Default)]
struct OpReport {
    cases: usize,
    passed: usize,
    worst: Worst,
}

fn run_family(family: &str) {
    let path = fixture_path(family);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("fixture: safetensors header");
    let cases_json = meta.metadata().as_ref().and_then(|m| m.get("cases")).expect("fixture: no `cases` metadata").clone();
    let st = SafeTensors::deserialize(&bytes).expect("fixture: safetensors data");
    let cases = parse_cases(&cases_json);
    assert!(!cases.is_empty(), "{}: no cases", path.display());

    let mut order: Vec<String> = Vec::new();
    let mut ops: HashMap<String, OpReport> = HashMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let r = ops.entry(case.op.clone()).or_insert_with(|| {
            order.push(case.op.clone());
            OpReport::default()
        });
        r.cases += 1;
        match run_case(&st, case) {
            Outcome::Pass(w) => {
                r.passed += 1;
                r.worst.merge(w);
            }
            Outcome::Fail(msg) => failures.push(format!("{family}/{} ({}): {msg}", case.name, case.op)),
        }
    }

    let mut summary = String::new();
    writeln!(summary, "parity {family}: {} cases", cases.len()).unwrap();
    for op in &order {
        let r = &ops[op];
        writeln!(
            summary,
            "  {op:<13} {:>3} cases  {:>3} pass  worst abs err {:.2e}  worst err/tol {:.3}",
            r.cases, r.passed, r.worst.abs, r.worst.ratio
        )
        .unwrap();
    }
    println!("{summary}");
    let mut msg = String::new();
    if !failures.is_empty() {
        writeln!(msg, "{} failing case(s) in {family}:", failures.len()).unwrap();
        for f in &failures {
            writeln!(msg, "  {f}").unwrap();
        }
    }
    assert!(msg.is_empty(), "\n{msg}");
}

#[test]
fn unary() {
    run_family("unary");
}

#[test]
fn binary() {
    run_family("binary");
}

#[test]
fn reduce() {
    run_family("reduce");
}

#[test]
fn matmul() {
    run_family("matmul");
}

#[test]
fn movement() {
    run_family("movement");
}

#[test]
fn index() {
    run_family("index");
}

#[test]
fn nn() {
    run_family("nn");
}

#[test]
fn creation() {
    run_family("creation");
}

// Families of tests/parity/generate_ops.py (issue 11).

#[test]
fn edge() {
    run_family("edge");
}

#[test]
fn dtypes() {
    run_family("dtypes");
}

#[test]
fn math() {
    run_family("math");
}

#[test]
fn activations() {
    run_family("activations");
}

#[test]
fn scans() {
    run_family("scans");
}

#[test]
fn products() {
    run_family("products");
}

#[test]
fn shape() {
    run_family("shape");
}

#[test]
fn indexing() {
    run_family("indexing");
}

#[test]
fn conv() {
    run_family("conv");
}

#[test]
fn pool() {
    run_family("pool");
}

#[test]
fn functional() {
    run_family("functional");
}

#[test]
fn losses() {
    run_family("losses");
}

/// The comparison itself: a harness that cannot fail proves nothing.
#[test]
fn harness_compare_detects_mismatches() {
    let stored = |v: Vec<f32>, shape: &[usize]| {
        let tensor = Tensor::from_vec(v, shape);
        Stored { dtype: tensor.dtype(), shape: shape.to_vec(), values: tensor.to_vec::<f64>(), tensor }
    };
    let want = stored(vec![1.0, f32::NAN, -2.0, f32::INFINITY], &[2, 2]);
    let ok = Tensor::from_vec(vec![1.0 + 1e-6f32, f32::NAN, -2.0, f32::INFINITY], &[2, 2]);
    let w = compare("out", &ok, &want, 1e-5, 1e-6).expect("within tolerance");
    assert!(w.abs > 0.0 && w.ratio < 1.0);

    let off = Tensor::from_vec(vec![1.0f32, f32::NAN, -2.001, f32::INFINITY], &[2, 2]);
    let e = compare("out", &off, &want, 1e-5, 1e-6).unwrap_err();
    assert!(e.contains("first at [1, 0]") && e.contains("1 of 4"), "{e}");
    let nan = Tensor::from_vec(vec![1.0f32, 0.0, -2.0, f32::INFINITY], &[2, 2]);
    assert!(compare("out", &nan, &want, 1e-5, 1e-6).unwrap_err().contains("first at [0, 1]"));
    let inf = Tensor::from_vec(vec![1.0f32, f32::NAN, -2.0, f32::NEG_INFINITY], &[2, 2]);
    assert!(compare("out", &inf, &want, 1e-5, 1e-6).is_err());
    let shape = Tensor::from_vec(vec![1.0f32, f32::NAN, -2.0, f32::INFINITY], &[4]);
    assert!(compare("out", &shape, &want, 1e-5, 1e-6).unwrap_err().contains("shape [4]"));
    let dtype = ok.to_dtype(DType::F64);
    assert!(compare("out", &dtype, &want, 1e-5, 1e-6).unwrap_err().contains("dtype f64"));
}
