//! INT8 post-training quantization: quantization parameters, quantize/dequantize and
//! quantized Linear against PyTorch (fixtures from tests/quant/make_fixtures.py), observers,
//! errors, and whole `#[model]`s quantized dynamically and statically: outputs close to f32,
//! an MNIST MLP within 0.5 points of f32, and a safetensors round trip. Quantization-aware
//! training: fake quantization against PyTorch's (fixtures from
//! tests/quant/make_fake_quant_fixtures.py), and a QAT fine-tune converted with no calibration.

use std::collections::HashMap;
use std::path::Path;

use tensorbrain::checkpoint::load_safetensors;
use tensorbrain::nn::loss::cross_entropy;
use tensorbrain::optim::{Adam, AdamOptions, Optimizer};
use tensorbrain::prelude::*;
use tensorbrain::quant::{
    self, dequantize, quantize_tensor, Act, Granularity, InputQuant, Mode, ObserverKind, QDType, QLinear, QParams, QSpec,
    QuantConfig, Qat, Scheme,
};

fn fixtures() -> HashMap<String, Tensor> {
    load_safetensors(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quant/torch_quant.safetensors").as_path())
        .expect("tests/quant/torch_quant.safetensors (regenerate with tests/quant/make_fixtures.py)")
}

fn f32s(fx: &HashMap<String, Tensor>, name: &str) -> Vec<f32> {
    fx[name].to_vec::<f32>()
}

fn i32s(fx: &HashMap<String, Tensor>, name: &str) -> Vec<i32> {
    fx[name].to_vec::<i32>()
}

fn range(v: &[f32]) -> (f32, f32) {
    v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)))
}

#[test]
fn qparams_match_pytorch_observers() {
    let fx = fixtures();
    let x = f32s(&fx, "x");
    let (lo, hi) = range(&x);
    for (name, spec) in [
        ("minmax_affine_u8", QSpec::ACTIVATIONS),
        ("minmax_symmetric_i8", QSpec::WEIGHTS_PER_TENSOR),
    ] {
        let p = QParams::from_range(spec, &[lo], &[hi]).unwrap();
        assert_eq!(p.scales, f32s(&fx, &format!("{name}.scale")), "{name} scale");
        assert_eq!(p.zero_points, i32s(&fx, &format!("{name}.zero_point")), "{name} zero point");
    }
    // Moving average, PyTorch's constant.
    let mut obs = ObserverKind::MovingAverage { averaging_constant: 0.01 }.build();
    for i in 0..3 {
        obs.observe(&f32s(&fx, &format!("ma_batch{i}"))).unwrap();
    }
    let p = obs.qparams(QSpec::ACTIVATIONS).unwrap();
    let want = f32s(&fx, "moving_average_u8.scale")[0];
    assert!((p.scales[0] - want).abs() <= 1e-6 * want, "moving average scale {} vs {want}", p.scales[0]);
    assert_eq!(p.zero_points, i32s(&fx, "moving_average_u8.zero_point"));
    // Per output channel, symmetric.
    let w = &fx["w"];
    let (n, k) = (w.shape()[0], w.shape()[1]);
    let rows = w.to_vec::<f32>();
    let (mins, maxs): (Vec<f32>, Vec<f32>) = rows.chunks(k).map(range).unzip();
    let p = QParams::from_range(QSpec::WEIGHTS_PER_CHANNEL, &mins, &maxs).unwrap();
    assert_eq!(p.scales, f32s(&fx, "w_scale"));
    assert_eq!(p.zero_points, i32s(&fx, "w_zero_point"));
    assert_eq!(p.scales.len(), n);
}

#[test]
fn quantize_and_dequantize_match_pytorch() {
    let fx = fixtures();
    let x = &fx["x"];
    let u8p = QParams::per_tensor(QDType::U8, f32s(&fx, "minmax_affine_u8.scale")[0], i32s(&fx, "minmax_affine_u8.zero_point")[0]);
    let q = quantize_tensor(x, &u8p).unwrap();
    assert_eq!(q.dtype(), DType::U8);
    assert_eq!(q.to_vec::<u8>(), fx["x_q_u8"].to_vec::<u8>(), "per-tensor u8");
    assert_eq!(dequantize(&q, &u8p).unwrap().to_vec::<f32>(), f32s(&fx, "x_dq_u8"), "dequantize u8");

    let i8p = QParams::per_tensor(QDType::I8, f32s(&fx, "minmax_symmetric_i8.scale")[0], 0);
    assert_eq!(quantize_tensor(x, &i8p).unwrap().to_vec::<i8>(), fx["x_q_i8"].to_vec::<i8>(), "per-tensor i8");

    // Exact .5 ties round to even, as nearbyint does.
    let ties = QParams::per_tensor(QDType::U8, 0.5, 10);
    assert_eq!(quantize_tensor(&fx["ties"], &ties).unwrap().to_vec::<u8>(), fx["ties_q_u8"].to_vec::<u8>(), "ties");

    let wp = QParams { dtype: QDType::I8, scales: f32s(&fx, "w_scale"), zero_points: i32s(&fx, "w_zero_point"), axis: Some(0) };
    let wq = quantize_tensor(&fx["w"], &wp).unwrap();
    assert_eq!(wq.to_vec::<i8>(), fx["w_q"].to_vec::<i8>(), "per-channel i8");
    let back = dequantize(&wq, &wp).unwrap().to_vec::<f32>();
    for (a, b) in back.iter().zip(f32s(&fx, "w_dq")) {
        assert!((a - b).abs() <= 1e-7 * b.abs().max(1e-3), "per-channel dequantize {a} vs {b}");
    }
}

#[test]
fn qlinear_matches_pytorch_quantized_linear() {
    let fx = fixtures();
    let (n, k) = (fx["w_q"].shape()[0], fx["w_q"].shape()[1]);
    let wp = QParams { dtype: QDType::I8, scales: f32s(&fx, "w_scale"), zero_points: vec![0; n], axis: Some(0) };
    let input = QParams::per_tensor(QDType::U8, f32s(&fx, "lin.in_scale")[0], i32s(&fx, "lin.in_zero_point")[0]);
    let output = QParams::per_tensor(QDType::U8, f32s(&fx, "lin.out_scale")[0], i32s(&fx, "lin.out_zero_point")[0]);
    let w = fx["w_q"].to_vec::<i8>();
    let a = Act::U8 { data: fx["lin.a_q"].clone(), scale: input.scales[0], zero: input.zero_points[0] };
    for (relu, want) in [(false, "lin.y_q"), (true, "lin.y_relu_q")] {
        let layer = QLinear::from_parts("lin", &w, n, k, wp.clone(), Some(f32s(&fx, "lin.bias")), relu, InputQuant::Static(input.clone()), Some(output.clone()))
            .unwrap();
        let Act::U8 { data, scale, zero } = layer.forward(&a).unwrap() else { panic!("u8 output expected") };
        assert_eq!((scale, zero), output.get(0));
        let got = data.to_vec::<u8>();
        let want = fx[want].to_vec::<u8>();
        // fbgemm requantizes with its own float rounding order: allow one step, rarely.
        let off: Vec<i32> = got.iter().zip(&want).map(|(&g, &w)| i32::from(g) - i32::from(w)).collect();
        let max = off.iter().map(|d| d.abs()).max().unwrap();
        let differ = off.iter().filter(|&&d| d != 0).count();
        assert!(max <= 1 && differ * 50 <= off.len(), "relu={relu}: max diff {max}, {differ} of {} differ", off.len());
    }
    // Dynamic: f32 in and out; PyTorch picks the input range its own way, so compare values.
    let layer = QLinear::from_parts("lin", &w, n, k, wp, Some(f32s(&fx, "lin.bias")), false, InputQuant::Dynamic, None).unwrap();
    let got = layer.forward(&Act::F32(fx["lin.a"].clone())).unwrap().into_f32().to_vec::<f32>();
    let want = f32s(&fx, "lin.y_dynamic");
    let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 0.01 * peak, "dynamic linear differs by {worst} (peak {peak})");
}

#[test]
fn histogram_observers_cut_outliers_and_reject_nan() {
    let mut values: Vec<f32> = (0..10_000).map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0).collect();
    values.push(50.0); // one outlier
    let minmax = {
        let mut o = ObserverKind::MinMax.build();
        o.observe(&values).unwrap();
        o.range().unwrap()
    };
    assert_eq!(minmax.1, 50.0);
    let mut o = ObserverKind::Percentile { percentile: 99.9 }.build();
    o.observe(&values[..5000]).unwrap();
    o.observe(&values[5000..]).unwrap(); // holds the outlier: the histogram widens
    let (lo, hi) = o.range().unwrap();
    assert!((-1.05..=-0.8).contains(&lo) && (0.8..5.0).contains(&hi), "percentile chose [{lo}, {hi}]");

    // MSE: never worse than min-max on what it saw (by the squared error of a quantize /
    // dequantize round trip), inside the seen range.
    let mut seed = 1u64;
    let mut uniform = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    };
    let heavy: Vec<f32> = (0..20_000).map(|_| uniform().powi(12) * 40.0 - 0.5).collect();
    let sq_error = |(lo, hi): (f32, f32)| -> f64 {
        let p = QParams::from_range(QSpec::ACTIVATIONS, &[lo], &[hi]).unwrap();
        let t = Tensor::from_slice(&heavy, &[heavy.len()]);
        let back = dequantize(&quantize_tensor(&t, &p).unwrap(), &p).unwrap().to_vec::<f32>();
        heavy.iter().zip(&back).map(|(a, b)| f64::from(a - b).powi(2)).sum()
    };
    let (mut mse, mut minmax) = (ObserverKind::Mse.build(), ObserverKind::MinMax.build());
    for part in heavy.chunks(5000) {
        mse.observe(part).unwrap();
        minmax.observe(part).unwrap();
    }
    let (full, chosen) = (minmax.range().unwrap(), mse.range().unwrap());
    assert!(chosen.0 >= full.0 && chosen.1 <= full.1, "MSE range {chosen:?} is outside {full:?}");
    assert!(sq_error(chosen) <= sq_error(full), "MSE range {chosen:?}: error {} vs min-max {}", sq_error(chosen), sq_error(full));
    let mut o = ObserverKind::MinMax.build();
    let err = o.observe(&[1.0, f32::NAN]).unwrap_err().to_string();
    assert!(err.contains("NaN") && err.contains("index 1"), "{err}");
    assert!(QParams::from_range(QSpec::ACTIVATIONS, &[0.0], &[f32::INFINITY]).is_err());
}

#[test]
fn quantize_round_trip_error_is_at_most_half_a_step() {
    let x = Tensor::randn(&[4, 33], DType::F32);
    let v = x.to_vec::<f32>();
    let (lo, hi) = range(&v);
    for scheme in [Scheme::Affine, Scheme::Symmetric] {
        let spec = QSpec { dtype: QDType::U8, scheme, granularity: Granularity::PerTensor };
        let p = QParams::from_range(spec, &[lo], &[hi]).unwrap();
        let back = dequantize(&quantize_tensor(&x, &p).unwrap(), &p).unwrap().to_vec::<f32>();
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() <= p.scales[0] * 0.5 + 1e-6, "{scheme:?}: {a} -> {b}");
        }
    }
    let wrong = QParams::per_tensor(QDType::I8, 0.1, 0);
    let err = dequantize(&Tensor::from_vec(vec![1u8, 2], &[2]), &wrong).unwrap_err().to_string();
    assert!(err.contains("the parameters are for i8, but the tensor is u8"), "{err}");
}

// ---- whole models ----

#[model]
pub struct Mlp {
    fc1: Linear<784, 128>,
    fc2: Linear<128, 64>,
    fc3: Linear<64, 10>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        self.fc3(self.fc2(self.fc1(x.flatten(1)).relu()).relu())
    }
}

/// Linear -> BatchNorm -> ReLU -> Linear: the norm folds into fc1 before quantization.
#[model]
pub struct Normed {
    fc1: Linear<20, 32>,
    bn: BatchNorm1d<32>,
    fc2: Linear<32, 5>,
}

#[model]
impl Normed {
    pub fn forward(&self, x: tb![B, 20]) -> tb![B, 5] {
        self.fc2(self.bn(self.fc1(x)).relu())
    }
}

/// Conv -> BatchNorm -> ReLU -> MaxPool -> Linear -> ReLU -> Linear: the norm folds into the
/// convolution, which runs in int8 through im2col; the pool stays f32.
#[model]
pub struct ConvNet {
    conv: Conv2d<1, 4, 3>,
    bn: BatchNorm2d<4>,
    pool: MaxPool2d<2>,
    fc1: Linear<36, 16>,
    fc2: Linear<16, 3>,
}

#[model]
impl ConvNet {
    pub fn forward(&self, x: tb![B, 1, 8, 8]) -> tb![B, 3] {
        let h = self.pool(self.bn(self.conv(x)).relu()).flatten(1);
        self.fc2(self.fc1(h).relu())
    }
}

/// Conv -> ReLU -> MaxPool -> Linear -> ReLU -> Linear with no norm, for QAT.
#[model]
pub struct PlainConvNet {
    conv: Conv2d<1, 4, 3>,
    pool: MaxPool2d<2>,
    fc1: Linear<36, 16>,
    fc2: Linear<16, 3>,
}

#[model]
impl PlainConvNet {
    pub fn forward(&self, x: tb![B, 1, 8, 8]) -> tb![B, 3] {
        let h = self.pool(self.conv(x).relu()).flatten(1);
        self.fc2(self.fc1(h).relu())
    }
}

/// Random batch-norm statistics, so that folding them is visible.
fn randomise_norm_stats<M: ModuleExt>(model: &mut M) {
    model.visit_buffers_mut("", &mut |name, t| {
        let n = t.numel();
        if name.ends_with("running_mean") {
            *t = Tensor::randn(&[n], DType::F32);
        } else if name.ends_with("running_var") {
            *t = Tensor::rand(&[n], DType::F32) + 0.5;
        }
    });
}

/// A second model with the same weights and buffers, in eval mode (models are not `Clone`).
fn copy_of<M: ModuleExt>(from: &M, mut to: M) -> M {
    let src: std::collections::HashMap<String, Tensor> = from.state_dict().into_iter().collect();
    to.visit_params_mut("", &mut |n, t| *t = src[n].clone());
    to.visit_buffers_mut("", &mut |n, t| *t = src[n].clone());
    to.eval();
    to
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.to_vec::<f32>().iter().zip(b.to_vec::<f32>()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn peak(a: &Tensor) -> f32 {
    a.to_vec::<f32>().iter().fold(0.0, |m, v| m.max(v.abs()))
}

#[test]
fn batch_norm_folds_and_both_modes_stay_close_to_f32() {
    manual_seed(1);
    let mut model = Normed::init(3);
    randomise_norm_stats(&mut model);
    model.eval();
    let x = Tensor::randn(&[32, 20], DType::F32);
    let want = no_grad(|| model.forward_dyn(&[x.clone()])).unwrap();
    let calib: Vec<Vec<Tensor>> = (0..4).map(|_| vec![Tensor::randn(&[32, 20], DType::F32)]).chain([vec![x.clone()]]).collect();
    for config in [QuantConfig::dynamic(), QuantConfig::static_ptq(), QuantConfig::static_ptq().with_observer(ObserverKind::Mse)] {
        let mut q = copy_of(&model, Normed::init(0));
        let plan = quant::quantize(&mut q, &model.graph(), &calib, &config).unwrap();
        let names: Vec<&str> = plan.report().quantized.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["fc1", "fc2"], "{}", plan.report());
        assert!(plan.report().quantized[0].relu, "the ReLU after the folded norm fuses into fc1");
        assert_eq!(plan.report().quantized[0].output_u8, config.mode == Mode::Static);
        let got = no_grad(|| q.forward_dyn(&[x.clone()])).unwrap();
        let err = max_abs_diff(&got, &want);
        assert!(err <= 0.03 * peak(&want), "{config:?}: int8 differs from f32 by {err} (peak {})\n{}", peak(&want), plan.report());
    }
}

#[test]
fn convolutions_run_in_int8_and_the_report_lists_what_stayed_f32() {
    manual_seed(2);
    let mut model = ConvNet::init(5);
    randomise_norm_stats(&mut model);
    model.eval();
    let x = Tensor::randn(&[8, 1, 8, 8], DType::F32);
    let want = no_grad(|| model.forward_dyn(&[x.clone()])).unwrap();
    let calib = vec![vec![x.clone()], vec![Tensor::randn(&[8, 1, 8, 8], DType::F32)]];
    for config in [QuantConfig::dynamic(), QuantConfig::static_ptq()] {
        let plan = quant::quantize(&mut copy_of(&model, ConvNet::init(0)), &model.graph(), &calib, &config).unwrap();
        let report = plan.report().to_string();
        let kinds: Vec<(&str, &str, bool)> = plan.report().quantized.iter().map(|l| (l.name.as_str(), l.kind.as_str(), l.relu)).collect();
        assert_eq!(kinds, [("conv", "Conv2d 3x3", true), ("fc1", "Linear", true), ("fc2", "Linear", false)], "{report}");
        assert!(plan.report().kept_f32.iter().any(|k| k.label.contains("pool") && k.op.contains("pool")), "{report}");
        assert!(!plan.report().kept_f32.iter().any(|k| k.label.contains("bn")), "the norm should fold away:\n{report}");
        // Static: the conv's output stays u8 through the max pool and the flatten into fc1.
        assert_eq!(plan.report().quantized[0].output_u8, config.mode == Mode::Static, "{report}");
        let mut q = copy_of(&model, ConvNet::init(0));
        quant::install(&mut q, plan.clone()).unwrap();
        let got = no_grad(|| q.forward_dyn(&[x.clone()])).unwrap();
        let err = max_abs_diff(&got, &want);
        assert!(err <= 0.03 * peak(&want), "{:?}: int8 differs from f32 by {err} (peak {})\n{report}", config.mode, peak(&want));

        // Round trip through safetensors into a fresh model.
        let path = std::env::temp_dir().join(format!("tb-quant-conv-{}-{:?}.safetensors", std::process::id(), config.mode));
        plan.save(&path).unwrap();
        let mut fresh = ConvNet::init(9);
        fresh.eval();
        let graph = fresh.graph();
        quant::load_quantized(&mut fresh, &graph, &path).unwrap();
        let again = no_grad(|| fresh.forward_dyn(&[x.clone()])).unwrap();
        assert_eq!(again.to_vec::<f32>(), got.to_vec::<f32>(), "{:?}: loaded model differs", config.mode);
        std::fs::remove_file(&path).ok();
    }
}

#[test]
fn bad_calibration_gives_clear_errors() {
    let model = Mlp::init(0);
    let graph = model.graph();
    let err = quant::quantize(&mut copy_of(&model, Mlp::init(0)), &graph, &[], &QuantConfig::static_ptq()).unwrap_err().to_string();
    assert!(err.contains("calibration set is empty"), "{err}");
    let mut bad = vec![0.5f32; 2 * 784];
    bad[900] = f32::NAN;
    let calib = vec![vec![Tensor::rand(&[2, 1, 28, 28], DType::F32)], vec![Tensor::from_vec(bad, &[2, 1, 28, 28])]];
    let err = quant::quantize(&mut copy_of(&model, Mlp::init(0)), &graph, &calib, &QuantConfig::static_ptq()).unwrap_err().to_string();
    assert!(err.contains("calibration batch 1") && err.contains("input of `fc1`") && err.contains("NaN"), "{err}");
    // Dynamic mode needs no calibration data.
    assert!(quant::quantize(&mut copy_of(&model, Mlp::init(0)), &graph, &[], &QuantConfig::dynamic()).is_ok());
}

/// MNIST from `../shared/data/mnist` (the test split: the first 8 000 images train, the last
/// 2 000 are held out), or `None` with a message naming the path.
fn mnist_test_split() -> Option<(Tensor, Tensor)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist");
    if !dir.join("t10k-images-idx3-ubyte.gz").exists() && !dir.join("t10k-images-idx3-ubyte").exists() {
        eprintln!("SKIPPED: MNIST not found at {} (t10k-images-idx3-ubyte[.gz])", dir.display());
        return None;
    }
    Some(tensorbrain::data::mnist::load(&dir, tensorbrain::data::Split::Test).expect("MNIST test split"))
}

fn accuracy(model: &Mlp, x: &Tensor, y: &[i64]) -> f64 {
    let logits = no_grad(|| model.forward_dyn(&[x.clone()])).unwrap();
    let pred = logits.try_argmax(Some(1), false).unwrap().to_vec::<i64>();
    100.0 * pred.iter().zip(y).filter(|(p, t)| p == t).count() as f64 / y.len() as f64
}

/// A copy of `model` with its own parameter storage, still requiring gradients.
fn deep_copy_of<M: ModuleExt>(from: &M, mut to: M) -> M {
    let src: HashMap<String, Tensor> = from.state_dict().into_iter().collect();
    to.visit_params_mut("", &mut |n, t| *t = Tensor::from_vec(src[n].to_vec::<f32>(), src[n].shape()).set_requires_grad(true));
    to
}

/// Quantization-aware fine-tuning of `model` for `steps` batches; returns the trained copy
/// and its QAT state.
fn qat_fine_tune(model: &Mlp, train_x: &Tensor, train_y: &Tensor, steps: usize) -> (Mlp, Qat) {
    let q = deep_copy_of(model, Mlp::init(0));
    let mut qat = Qat::prepare(&q, &q.graph(), &QuantConfig::static_ptq()).unwrap();
    assert_eq!(qat.layers(), ["fc1", "fc2", "fc3"]);
    let mut opt = Adam::new(q.parameters(), AdamOptions { lr: 2e-4, ..Default::default() }).unwrap();
    for step in 0..steps {
        let at = (step * 64 + 17) % (8000 - 64);
        let (x, y) = (train_x.try_narrow(0, at, 64).unwrap(), train_y.try_narrow(0, at, 64).unwrap());
        opt.zero_grad();
        let loss = cross_entropy(&qat.forward(&q, &[x]).unwrap(), &y);
        loss.backward();
        opt.step().unwrap();
    }
    (q, qat)
}

#[test]
fn int8_mnist_mlp_is_within_half_a_point_of_f32_and_round_trips_through_safetensors() {
    let Some((images, labels)) = mnist_test_split() else { return };
    let (train_x, test_x) = (images.try_narrow(0, 0, 8000).unwrap(), images.try_narrow(0, 8000, 2000).unwrap());
    let (train_y, test_y) = (labels.try_narrow(0, 0, 8000).unwrap(), labels.try_narrow(0, 8000, 2000).unwrap().to_vec::<i64>());
    manual_seed(0);
    let mut model = Mlp::init(0);
    let mut opt = Adam::new(model.parameters(), AdamOptions { lr: 2e-3, ..Default::default() }).unwrap();
    for step in 0..375 {
        let at = (step * 64) % (8000 - 64);
        let (x, y) = (train_x.try_narrow(0, at, 64).unwrap(), train_y.try_narrow(0, at, 64).unwrap());
        opt.zero_grad();
        let loss = cross_entropy(&model.forward_dyn(&[x]).unwrap(), &y);
        loss.backward();
        opt.step().unwrap();
    }
    model.eval();
    let f32_acc = accuracy(&model, &test_x, &test_y);
    assert!(f32_acc > 90.0, "the f32 MLP reached only {f32_acc:.2}%");
    let calib: Vec<Vec<Tensor>> = (0..4).map(|i| vec![train_x.try_narrow(0, i * 64, 64).unwrap()]).collect();
    let graph = model.graph();
    let dir = std::env::temp_dir().join(format!("tb-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for config in [QuantConfig::dynamic(), QuantConfig::static_ptq()] {
        let mut q = copy_of(&model, Mlp::init(0));
        let plan = quant::quantize(&mut q, &graph, &calib, &config).unwrap();
        assert_eq!(plan.report().quantized.len(), 3, "{}", plan.report());
        let int8_acc = accuracy(&q, &test_x, &test_y);
        eprintln!("{:?}: f32 {f32_acc:.2}%  int8 {int8_acc:.2}%", config.mode);
        assert!((int8_acc - f32_acc).abs() <= 0.5, "{:?}: int8 {int8_acc:.2}% vs f32 {f32_acc:.2}%\n{}", config.mode, plan.report());

        // Save, then load into a fresh model with no calibration data: the same outputs.
        let path = dir.join(format!("{:?}.safetensors", config.mode));
        plan.save(&path).unwrap();
        let mut fresh = Mlp::init(123);
        fresh.eval();
        let fresh_graph = fresh.graph();
        let loaded = quant::load_quantized(&mut fresh, &fresh_graph, &path).unwrap();
        assert_eq!(loaded.report().quantized, plan.report().quantized);
        let probe = test_x.try_narrow(0, 0, 100).unwrap();
        let (a, b) = no_grad(|| (q.forward_dyn(&[probe.clone()]).unwrap(), fresh.forward_dyn(&[probe.clone()]).unwrap()));
        assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>(), "{:?}: loaded model differs", config.mode);
        let on_disk = std::fs::metadata(&path).unwrap().len();
        let tensors = load_safetensors(&path).unwrap();
        assert_eq!(tensors["int8.0.weight"].dtype(), DType::I8);
        assert_eq!(tensors["int8.0.weight_scale"].shape(), [128]);
        assert!(on_disk < 130_000, "{on_disk} bytes: int8 weights should take about a quarter of f32's 437 KB");
    }
    std::fs::remove_dir_all(&dir).ok();

    // Quantization-aware fine-tuning from the f32 weights, converted with the ranges it learnt.
    let (mut q, mut qat) = qat_fine_tune(&model, &train_x, &train_y, 60);
    qat.eval();
    let probe = test_x.try_narrow(0, 0, 200).unwrap();
    let simulated = no_grad(|| qat.forward(&q, &[probe.clone()])).unwrap();
    q.eval();
    let graph = q.graph();
    let plan = qat.convert(&mut q, &graph).unwrap();
    assert_eq!(plan.report().quantized.len(), 3, "{}", plan.report());
    assert!(plan.report().quantized[..2].iter().all(|l| l.output_u8), "u8 between layers:\n{}", plan.report());
    // The int8 model computes what training simulated: the same grids, integer sums.
    let int8 = no_grad(|| q.forward_dyn(&[probe])).unwrap();
    let err = max_abs_diff(&int8, &simulated);
    assert!(err <= 0.02 * peak(&simulated), "int8 after QAT differs from the fake-quantized forward by {err} (peak {})", peak(&simulated));
    let qat_acc = accuracy(&q, &test_x, &test_y);
    eprintln!("QAT: f32 {f32_acc:.2}%  int8 {qat_acc:.2}%");
    // Fine-tuning goes on learning (this f32 model is short of converged), so QAT may beat the
    // f32 model it started from; it must not lose more than half a point to it.
    assert!(qat_acc >= f32_acc - 0.5, "QAT int8 {qat_acc:.2}% vs f32 {f32_acc:.2}%\n{}", plan.report());
}

fn fake_quant_fixtures() -> HashMap<String, Tensor> {
    load_safetensors(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quant/torch_fake_quant.safetensors").as_path())
        .expect("tests/quant/torch_fake_quant.safetensors (regenerate with tests/quant/make_fake_quant_fixtures.py)")
}

#[test]
fn fake_quantize_matches_pytorch_values_and_straight_through_gradients() {
    let fx = fake_quant_fixtures();
    let cases = [
        ("pt", "x", "dx", QParams::per_tensor(QDType::U8, f32s(&fx, "pt.scale")[0], i32s(&fx, "pt.zero_point")[0])),
        ("pc", "w", "dw", QParams { dtype: QDType::I8, scales: f32s(&fx, "pc.scale"), zero_points: i32s(&fx, "pc.zero_point"), axis: Some(1) }),
    ];
    for (case, x, dx, params) in cases {
        let input = fx[&format!("{case}.{x}")].clone().set_requires_grad(true);
        let out = quant::fake_quantize(&input, &params).unwrap();
        // Same rounding (half to even, on x·(1/scale)) and clamping: equal to the bit.
        assert_eq!(out.to_vec::<f32>(), f32s(&fx, &format!("{case}.y")), "{case}: forward");
        (out * fx[&format!("{case}.g")].clone()).sum(&[], false).backward();
        let got = input.grad().unwrap().to_vec::<f32>();
        let want = f32s(&fx, &format!("{case}.{dx}"));
        assert_eq!(got, want, "{case}: gradient (zero exactly where PyTorch clamps)");
        assert!(want.iter().any(|&g| g == 0.0) && want.iter().any(|&g| g != 0.0), "{case}: the fixture should clip some values");
    }
}

#[test]
fn qat_refuses_what_it_cannot_train_and_convert() {
    let normed = Normed::init(0);
    let err = Qat::prepare(&normed, &normed.graph(), &QuantConfig::static_ptq()).err().unwrap().to_string();
    assert!(err.contains("nested layer `bn`"), "{err}");
    let mut mlp = Mlp::init(0);
    let err = Qat::prepare(&PlainConvNet::init(0), &mlp.graph(), &QuantConfig::static_ptq()).err().unwrap().to_string();
    assert!(err.contains("`fc3.weight`, which the model does not have"), "{err}");
    let qat = Qat::prepare(&mlp, &mlp.graph(), &QuantConfig::static_ptq()).unwrap();
    let graph = mlp.graph();
    let err = qat.convert(&mut mlp, &graph).unwrap_err().to_string();
    assert!(err.contains("run forward in training first"), "{err}");
    let mut qat = qat;
    let mut bad = vec![0.5f32; 2 * 784];
    bad[3] = f32::INFINITY;
    let err = qat.forward(&mlp, &[Tensor::from_vec(bad, &[2, 1, 28, 28])]).unwrap_err().to_string();
    assert!(err.contains("input of `fc1`") && err.contains("inf"), "{err}");
}

#[test]
fn qat_on_a_convnet_converts_to_what_it_simulated_with_u8_through_the_pool() {
    manual_seed(4);
    let model = PlainConvNet::init(4);
    let mut qat = Qat::prepare(&model, &model.graph(), &QuantConfig::static_ptq()).unwrap();
    assert_eq!(qat.layers(), ["conv", "fc1", "fc2"]);
    let mut opt = Adam::new(model.parameters(), AdamOptions { lr: 1e-3, ..Default::default() }).unwrap();
    let target = Tensor::from_vec((0..16).map(|i| i % 3).collect::<Vec<i64>>(), &[16]);
    for _ in 0..10 {
        opt.zero_grad();
        let loss = cross_entropy(&qat.forward(&model, &[Tensor::randn(&[16, 1, 8, 8], DType::F32)]).unwrap(), &target);
        loss.backward();
        opt.step().unwrap();
    }
    assert!(model.parameters().iter().all(|p| p.grad().is_some()), "gradients reach every parameter through fake quantization");
    qat.eval();
    let x = Tensor::randn(&[16, 1, 8, 8], DType::F32);
    let simulated = no_grad(|| qat.forward(&model, &[x.clone()])).unwrap();
    let mut model = model;
    model.eval();
    let graph = model.graph();
    let plan = qat.convert(&mut model, &graph).unwrap();
    let u8_out: Vec<bool> = plan.report().quantized.iter().map(|l| l.output_u8).collect();
    assert_eq!(u8_out, [true, true, false], "{}", plan.report());
    let int8 = no_grad(|| model.forward_dyn(&[x])).unwrap();
    let err = max_abs_diff(&int8, &simulated);
    assert!(err <= 0.02 * peak(&simulated), "int8 differs from the simulated forward by {err} (peak {})", peak(&simulated));
}
