//! The layers of issue 11 against PyTorch's `nn` modules (`tests/parity/generate_layers.py`
//! fixtures): `GroupNorm`, `InstanceNorm1d/2d` (affine, running statistics, unbatched),
//! `ConvTranspose2d`, `EmbeddingBag` (sum/mean/max, offsets, padding_idx, per-sample
//! weights), and `MaxPool2dWith`/`AvgPool2dWith` (rectangular kernels, stride, padding,
//! dilation, ceil_mode, count_include_pad, divisor_override). Each case loads PyTorch's
//! parameters into the layer by their state-dict names, so the names must match too; outputs
//! and the gradients of the input and every parameter are compared. Then float64 gradchecks,
//! errors and defaults.
//!
//! Tolerances: rtol 1e-5 / atol 1e-6 (atol 2e-6 for normalised outputs, 1e-5 for transposed
//! convolutions, which sum up to 36 products per output); f64 cases 1e-10 / 1e-12.

mod nn_fixture;

use std::collections::{BTreeSet, HashMap};

use nn_fixture::{assert_close, Case, Fixture};
use serde_json::Value;
use tensorbrain::autograd::{gradcheck, GradcheckOptions};
use tensorbrain::nn::functional::BagMode;
use tensorbrain::nn::{
    AvgPool2dWith, ConvTranspose2d, EmbeddingBag, Forward, GroupNorm, InstanceNorm1d, InstanceNorm2d, MaxPool2dWith, Module, ModuleExt, Sequential,
};
use tensorbrain::ops::{AvgPoolOptions, MaxPoolOptions};
use tensorbrain::{DType, Result, Tensor};

fn fixture() -> Fixture {
    Fixture::load_file("nn_layers.safetensors", "generate_layers.py")
}

/// A deep copy in the same dtype (fixture tensors share storage with the loaded map).
fn copy(t: &Tensor) -> Tensor {
    match t.dtype() {
        DType::F64 => Tensor::from_vec(t.to_vec::<f64>(), t.shape()),
        _ => Tensor::from_vec(t.to_vec::<f32>(), t.shape()),
    }
}

/// The case's inputs by name (`x`, `offsets`, `per_sample_weights`, or a parameter's
/// state-dict name).
fn by_name(case: &Case, v: &[Tensor]) -> HashMap<String, Tensor> {
    let names = case.args["inputs"].as_array().expect("inputs");
    names.iter().zip(v).map(|(n, t)| (n.as_str().unwrap().to_string(), t.clone())).collect()
}

/// Puts PyTorch's parameters into `layer` by name, asserting that the layer has exactly the
/// parameters PyTorch's module has.
fn load_params(layer: &mut dyn Module, case: &Case, inputs: &HashMap<String, Tensor>) {
    let want: BTreeSet<String> = inputs.keys().filter(|n| !["x", "offsets", "per_sample_weights"].contains(&n.as_str())).cloned().collect();
    let mut got = BTreeSet::new();
    layer.visit_params_mut("", &mut |name, t| {
        *t = inputs.get(name).unwrap_or_else(|| panic!("{}: PyTorch's module has no parameter {name}", case.name)).clone();
        got.insert(name.to_string());
    });
    assert_eq!(got, want, "{}: parameter names", case.name);
}

fn usize_of(args: &Value, key: &str) -> usize {
    args[key].as_u64().unwrap_or_else(|| panic!("args.{key}")) as usize
}

/// A PyTorch size argument: an int or a pair.
fn pair(args: &Value, key: &str, default: [usize; 2]) -> [usize; 2] {
    match &args[key] {
        Value::Null => default,
        Value::Number(n) => [n.as_u64().unwrap() as usize; 2],
        Value::Array(a) => [a[0].as_u64().unwrap() as usize, a[1].as_u64().unwrap() as usize],
        other => panic!("args.{key}: {other}"),
    }
}

fn run(mut layer: impl Module + Forward, case: &Case, v: &[Tensor]) -> Result<Tensor> {
    let inputs = by_name(case, v);
    load_params(&mut layer, case, &inputs);
    layer.set_training(case.args["training"].as_bool().unwrap());
    layer.forward(&inputs["x"])
}

#[test]
fn group_norm_matches_pytorch() {
    let fx = fixture();
    for case in fx.cases_of(&["group_norm"]) {
        let a = &case.args;
        let eps = a["eps"].as_f64().unwrap();
        let affine = a["affine"].as_bool().unwrap();
        fx.check(case, |v| match (usize_of(a, "groups"), usize_of(a, "channels")) {
            (2, 6) => run(GroupNorm::<2, 6>::init(0).with_eps(eps), case, v),
            (3, 6) if !affine => run(GroupNorm::<3, 6>::init(0).with_eps(eps).without_affine(), case, v),
            (6, 6) => run(GroupNorm::<6, 6>::init(0).with_eps(eps), case, v),
            (2, 4) => run(GroupNorm::<2, 4>::init(0).with_eps(eps), case, v),
            other => panic!("{}: no layer for {other:?}", case.name),
        });
    }
}

#[test]
fn instance_norm_matches_pytorch_with_running_stats() {
    let fx = fixture();
    for case in fx.cases_of(&["instance_norm1d", "instance_norm2d"]) {
        let a = &case.args;
        let (affine, track) = (a["affine"].as_bool().unwrap(), a["track"].as_bool().unwrap());
        let stats = track.then(|| {
            let get = |k: &str| copy(&fx.get(&format!("{}/{k}", case.name)));
            (get("running_mean0"), get("running_var0"))
        });
        let steps = Tensor::zeros(&[], DType::I64);
        fx.check(case, |v| {
            macro_rules! layer {
                ($ty:ty) => {{
                    let mut layer = <$ty>::init(0);
                    if affine {
                        layer = layer.with_affine();
                    }
                    if let Some((rm, rv)) = &stats {
                        layer = layer.tracking_running_stats();
                        layer.running_mean = Some(rm.clone());
                        layer.running_var = Some(rv.clone());
                        layer.num_batches_tracked = Some(steps.clone());
                    }
                    run(layer, case, v)
                }};
            }
            match (case.op.as_str(), usize_of(a, "channels")) {
                ("instance_norm2d", 3) => layer!(InstanceNorm2d<3>),
                ("instance_norm1d", 3) => layer!(InstanceNorm1d<3>),
                ("instance_norm1d", 2) => layer!(InstanceNorm1d<2>),
                other => panic!("{}: no layer for {other:?}", case.name),
            }
        });
        if let Some((rm, rv)) = &stats {
            assert_close(&format!("{} running_mean", case.name), rm, &fx.get(&format!("{}/running_mean1", case.name)), 1e-5, 1e-6);
            assert_close(&format!("{} running_var", case.name), rv, &fx.get(&format!("{}/running_var1", case.name)), 1e-5, 1e-6);
            assert_eq!(steps.item::<i64>(), 0, "{}: instance norm leaves num_batches_tracked alone, as PyTorch", case.name);
        }
    }
}

#[test]
fn conv_transpose2d_matches_pytorch() {
    let fx = fixture();
    for case in fx.cases_of(&["conv_transpose2d"]) {
        let a = &case.args;
        let bias = a["bias"].as_bool().unwrap();
        let key = [usize_of(a, "in"), usize_of(a, "out"), usize_of(a, "k"), usize_of(a, "s"), usize_of(a, "p"), usize_of(a, "op")];
        fx.check(case, |v| match key {
            [3, 2, 3, 2, 1, 1] => run(ConvTranspose2d::<3, 2, 3, 2, 1, 1>::init(0), case, v),
            [2, 4, 2, 1, 0, 0] if !bias => run(ConvTranspose2d::<2, 4, 2>::init(0).without_bias(), case, v),
            [2, 3, 4, 2, 1, 0] => run(ConvTranspose2d::<2, 3, 4, 2, 1>::init(0), case, v),
            [2, 2, 3, 2, 0, 1] => run(ConvTranspose2d::<2, 2, 3, 2, 0, 1>::init(0), case, v),
            other => panic!("{}: no layer for {other:?}", case.name),
        });
    }
}

#[test]
fn embedding_bag_matches_pytorch() {
    let fx = fixture();
    for case in fx.cases_of(&["embedding_bag"]) {
        let a = &case.args;
        let mode = match a["mode"].as_str().unwrap() {
            "sum" => BagMode::Sum,
            "mean" => BagMode::Mean,
            "max" => BagMode::Max,
            m => panic!("mode {m}"),
        };
        fx.check(case, |v| {
            let inputs = by_name(case, v);
            let mut bag = EmbeddingBag::<6, 4>::init(0).with_mode(mode);
            if let Some(p) = a["padding_idx"].as_i64() {
                bag = bag.with_padding_idx(p);
            }
            load_params(&mut bag, case, &inputs);
            match inputs.get("per_sample_weights") {
                Some(w) => bag.forward_weighted(&inputs["x"], inputs.get("offsets"), w),
                None => bag.forward_bags(&inputs["x"], inputs.get("offsets")),
            }
        });
    }
}

#[test]
fn pooling_layers_with_options_match_pytorch() {
    let fx = fixture();
    for case in fx.cases_of(&["max_pool2d", "avg_pool2d"]) {
        let a = &case.args;
        let kernel = pair(a, "kernel_size", [0, 0]);
        let (stride, padding) = (pair(a, "stride", kernel), pair(a, "padding", [0, 0]));
        let ceil = a["ceil_mode"].as_bool().unwrap_or(false);
        fx.check(case, |v| {
            if case.op == "max_pool2d" {
                let o = MaxPoolOptions::new(kernel).stride(stride).padding(padding).dilation(pair(a, "dilation", [1, 1])).ceil_mode(ceil);
                run(MaxPool2dWith::new(o), case, v)
            } else {
                let mut o = AvgPoolOptions::new(kernel).stride(stride).padding(padding).ceil_mode(ceil);
                o = o.count_include_pad(a["count_include_pad"].as_bool().unwrap_or(true));
                if let Some(d) = a["divisor_override"].as_u64() {
                    o = o.divisor_override(d as usize);
                }
                run(AvgPool2dWith::new(o), case, v)
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Float64 finite differences
// ---------------------------------------------------------------------------------------------

/// Deterministic, distinct values in about [-2, 2].
fn t64(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|k| ((k as f64 * 0.7548776662 + seed as f64 * 0.5698402910).fract() - 0.5) * 4.0 + 1e-3 * k as f64).collect();
    Tensor::from_vec::<f64>(data, shape)
}

fn check(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    gradcheck(&f, inputs, GradcheckOptions { eps: 1e-6, atol: 1e-5, rtol: 1e-4 }).unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// Loads the parameters (in `visit_params` order) from `params` and returns the layer.
fn with_params<M: Module>(mut layer: M, params: &[Tensor]) -> M {
    let mut it = params.iter();
    layer.visit_params_mut("", &mut |_, t| *t = it.next().expect("enough parameters").clone());
    assert!(it.next().is_none(), "too many parameters");
    layer
}

#[test]
fn layers_gradcheck_f64() {
    check("GroupNorm<2, 4>", |v| with_params(GroupNorm::<2, 4>::init(0), &v[1..]).forward(&v[0]), &[t64(&[2, 4, 3], 1), t64(&[4], 2), t64(&[4], 3)]);
    check(
        "InstanceNorm2d<2> affine",
        |v| with_params(InstanceNorm2d::<2>::init(0).with_affine(), &v[1..]).forward(&v[0]),
        &[t64(&[2, 2, 3, 2], 4), t64(&[2], 5), t64(&[2], 6)],
    );
    check(
        "InstanceNorm1d<2> eval with running stats",
        |v| {
            let mut layer = InstanceNorm1d::<2>::init(0).tracking_running_stats();
            layer.running_mean = Some(Tensor::from_vec(vec![0.3f64, -0.2], &[2]));
            layer.running_var = Some(Tensor::from_vec(vec![1.5f64, 0.7], &[2]));
            layer.set_training(false);
            layer.forward(&v[0])
        },
        &[t64(&[2, 2, 4], 7)],
    );
    check(
        "ConvTranspose2d<2, 3, 3, 2, 1, 1>",
        |v| with_params(ConvTranspose2d::<2, 3, 3, 2, 1, 1>::init(0), &v[1..]).forward(&v[0]),
        &[t64(&[1, 2, 3, 2], 8), t64(&[2, 3, 3, 3], 9), t64(&[3], 10)],
    );
    let ids = Tensor::from_vec(vec![0i64, 3, 1, 4, 3, 2, 0], &[7]);
    let offsets = Tensor::from_vec(vec![0i64, 2, 2, 5], &[4]);
    for mode in [BagMode::Sum, BagMode::Mean, BagMode::Max] {
        check(
            &format!("EmbeddingBag<5, 3> {mode:?}"),
            |v| with_params(EmbeddingBag::<5, 3>::init(0).with_mode(mode), &v[..1]).forward_bags(&ids, Some(&offsets)),
            &[t64(&[5, 3], 11)],
        );
    }
    check(
        "EmbeddingBag<5, 3> per-sample weights",
        |v| with_params(EmbeddingBag::<5, 3>::init(0).with_mode(BagMode::Sum), &v[..1]).forward_weighted(&ids, Some(&offsets), &v[1]),
        &[t64(&[5, 3], 12), t64(&[7], 13)],
    );
    let max = MaxPool2dWith::new(MaxPoolOptions::new([3, 2]).stride([2, 1]).padding([1, 1]).dilation([1, 2]).ceil_mode(true));
    check("MaxPool2dWith", |v| max.forward(&v[0]), &[t64(&[1, 2, 5, 6], 14)]);
    let avg = AvgPool2dWith::new(AvgPoolOptions::new([3, 2]).stride([2, 1]).padding([1, 1]).count_include_pad(false).ceil_mode(true));
    check("AvgPool2dWith", |v| avg.forward(&v[0]), &[t64(&[1, 2, 5, 6], 15)]);
}

// ---------------------------------------------------------------------------------------------
// Names, defaults, errors
// ---------------------------------------------------------------------------------------------

fn names(m: &impl ModuleExt) -> Vec<String> {
    m.state_dict().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn state_dict_names_and_shapes_follow_pytorch() {
    assert_eq!(names(&GroupNorm::<2, 6>::init(0)), ["weight", "bias"]);
    assert!(names(&GroupNorm::<2, 6>::init(0).without_affine()).is_empty());
    assert!(names(&InstanceNorm2d::<3>::init(0)).is_empty(), "PyTorch's default InstanceNorm has no parameters or buffers");
    assert_eq!(
        names(&InstanceNorm1d::<3>::init(0).with_affine().tracking_running_stats()),
        ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    );
    let ct = ConvTranspose2d::<3, 5, 4, 2, 1>::init(0);
    assert_eq!(names(&ct), ["weight", "bias"]);
    assert_eq!(ct.weight.shape(), [3, 5, 4, 4], "transposed conv weights are [C_IN, C_OUT, K, K]");
    let bound = 1.0 / ((5 * 4 * 4) as f64).sqrt();
    for v in ct.weight.to_vec::<f64>().into_iter().chain(ct.bias.as_ref().unwrap().to_vec::<f64>()) {
        assert!(v.abs() <= bound, "PyTorch's init draws from U(±1/sqrt(C_OUT·K·K)) = ±{bound}, got {v}");
    }
    let bag = EmbeddingBag::<6, 4>::init(0).with_padding_idx(-2);
    assert_eq!(names(&bag), ["weight"]);
    assert_eq!(bag.padding_idx, Some(4));
    assert_eq!(bag.weight.narrow(0, 4, 1).to_vec::<f32>(), [0.0; 4], "the padding row starts at zero, as in PyTorch");
    assert_eq!(bag.mode, BagMode::Mean, "PyTorch's default mode");
}

#[test]
fn output_shapes_and_sequential() {
    let x = Tensor::randn(&[2, 4, 5, 6], DType::F32);
    let net = Sequential::new()
        .add(GroupNorm::<2, 4>::init(0))
        .add(InstanceNorm2d::<4>::init(0))
        .add(ConvTranspose2d::<4, 3, 3, 2, 1, 1>::init(0))
        .add(MaxPool2dWith::new(MaxPoolOptions::new([3, 2]).stride([2, 1]).padding([1, 0])))
        .add(AvgPool2dWith::new(AvgPoolOptions::new([2, 3]).stride([1, 2]).padding([1, 1])));
    // ConvTranspose2d: (5 - 1)·2 - 2 + 3 + 1 = 10 high, (6 - 1)·2 - 2 + 3 + 1 = 12 wide; max pool
    // (3, 2) / (2, 1) / (1, 0): 5 x 11; avg pool (2, 3) / (1, 2) / (1, 1): 6 x 6.
    assert_eq!(net.forward(&x).unwrap().shape(), [2, 3, 6, 6]);
    assert_eq!(net.summary().rows.iter().filter(|r| r.kind.starts_with("MaxPool2d(kernel_size=[3, 2]")).count(), 1);
    let bag = EmbeddingBag::<10, 3>::init(0);
    assert_eq!(Forward::forward(&bag, &Tensor::from_vec(vec![1i64, 2, 3, 4], &[2, 2])).unwrap().shape(), [2, 3]);
}

fn expect_err(r: Result<Tensor>, parts: &[&str]) {
    let msg = match r {
        Ok(t) => panic!("expected an error with {parts:?}, got a tensor of shape {:?}", t.shape()),
        Err(e) => e.to_string(),
    };
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should mention {p:?}");
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    expect_err(GroupNorm::<2, 6>::init(0).forward(&Tensor::zeros(&[2, 4, 3], DType::F32)), &["GroupNorm<2, 6>", "[N, 6, *]", "[2, 4, 3]"]);
    expect_err(InstanceNorm2d::<3>::init(0).forward(&Tensor::zeros(&[2, 3, 4], DType::F32)), &["InstanceNorm2d<3>", "[N, 3, H, W]", "[2, 3, 4]"]);
    expect_err(InstanceNorm1d::<3>::init(0).forward(&Tensor::zeros(&[2, 3, 1], DType::F32)), &["more than 1 spatial element"]);
    expect_err(ConvTranspose2d::<3, 2, 3>::init(0).forward(&Tensor::zeros(&[1, 4, 5, 5], DType::F32)), &["ConvTranspose2d<3, 2, 3, 1, 0, 0>", "[1, 4, 5, 5]"]);
    let bag = EmbeddingBag::<6, 4>::init(0);
    expect_err(bag.forward(&Tensor::from_vec(vec![1i64, 6], &[1, 2])), &["index 6", "size 6"]);
    expect_err(bag.forward_bags(&Tensor::from_vec(vec![1i64, 2], &[2]), Some(&Tensor::from_vec(vec![1i64], &[1]))), &["offsets [1]", "start at 0"]);
    let bad_pad = MaxPool2dWith::new(MaxPoolOptions::new([2, 2]).padding([2, 0]));
    expect_err(bad_pad.forward(&Tensor::zeros(&[1, 1, 4, 4], DType::F32)), &["padding (2)", "half"]);
    let too_big = AvgPool2dWith::new(AvgPoolOptions::new([5, 1]));
    expect_err(too_big.forward(&Tensor::zeros(&[1, 1, 4, 4], DType::F32)), &["kernel_size [5, 1]", "larger than the padded input"]);
}
