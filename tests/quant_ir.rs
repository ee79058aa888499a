//! INT8 as IR: `model.quantize(loader, config)` on a `#[model]` gives a graph of int8 IR ops
//! (one quantize at the input, `qlinear`s requantizing straight into each other, f32 only at
//! the end), the same numbers after a safetensors round trip with `load_quantized`, int8
//! embeddings (per-row i8 tables, exactly `q · scale` per looked-up row), and the quantize /
//! dequantize / requantize ops running through the op executor as `quant::ops` do.

use tensorbrain::data::{DataLoader, TensorDataset};
use tensorbrain::ir::{Op, QuantParams};
use tensorbrain::prelude::*;
use tensorbrain::quant::{self, QDType, QEmbedding, QParams, Quantize, QuantConfig};

#[model]
pub struct Mlp {
    fc1: Linear<20, 32>,
    fc2: Linear<32, 16>,
    fc3: Linear<16, 4>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 20]) -> tb![B, 4] {
        self.fc3(self.fc2(self.fc1(x).relu()).relu())
    }
}

/// Token embedding -> (per-token) Linear: the table runs in i8, the Linear in int8.
#[model]
pub struct Tagger {
    embed: Embedding<50, 12>,
    head: Linear<12, 3>,
}

#[model]
impl Tagger {
    pub fn forward(&self, ids: tb![B, T; i64]) -> tb![B, T, 3] {
        self.head(self.embed(ids))
    }
}

/// Two int8 convolutions in a row: u8 stays channels-last from one to the next.
#[model]
pub struct TwoConv {
    conv1: Conv2d<1, 8, 3, 1, 1>,
    pool1: MaxPool2d<2>,
    conv2: Conv2d<8, 16, 3, 1, 1>,
    pool2: MaxPool2d<2>,
    fc: Linear<64, 5>,
}

#[model]
impl TwoConv {
    pub fn forward(&self, x: tb![B, 1, 8, 8]) -> tb![B, 5] {
        let h = self.pool1(self.conv1(x).relu());
        let h = self.pool2(self.conv2(h).relu()).flatten(1);
        self.fc(h)
    }
}

fn copy_of<M: ModuleExt>(from: &M, mut to: M) -> M {
    let src: std::collections::HashMap<String, Tensor> = from.state_dict().into_iter().collect();
    to.visit_params_mut("", &mut |n, t| *t = src[n].clone());
    to.visit_buffers_mut("", &mut |n, t| *t = src[n].clone());
    to
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.to_vec::<f32>().iter().zip(b.to_vec::<f32>()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn peak(a: &Tensor) -> f32 {
    a.to_vec::<f32>().iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn op_names(g: &tensorbrain::ir::Graph) -> Vec<String> {
    g.nodes.iter().map(|n| n.op.name()).collect()
}

#[test]
fn quantize_method_on_a_loader_gives_int8_ir_ops_and_round_trips() {
    manual_seed(7);
    let model = Mlp::init(1);
    let x = Tensor::randn(&[256, 20], DType::F32);
    let y = Tensor::zeros(&[256], DType::I64);
    let loader = DataLoader::builder(TensorDataset::new(vec![x.clone(), y]).unwrap()).batch_size(64).build().unwrap();
    let mut reference = copy_of(&model, Mlp::init(0));
    reference.eval();
    let want = no_grad(|| reference.forward_dyn(&[x.clone()])).unwrap();

    let mut q = copy_of(&model, Mlp::init(0));
    // The loader yields [x, labels]; calibration takes the model's one input from each batch.
    let plan = q.quantize(&loader, &QuantConfig::static_ptq()).unwrap();
    let g = plan.graph();
    let names = op_names(g);
    // x -> quantize -> qlinear fc1 (u8 out) -> qlinear fc2 (u8 out) -> qlinear fc3 (f32 out):
    // every weight lives in the layers, every dequantize/quantize pair between them is gone.
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(matches!(g.nodes[1].op, Op::Quantize(_)), "{names:?}");
    let layers: Vec<(String, bool, bool)> = g
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::QLinear(l) => Some((l.layer.clone(), l.input.is_some(), l.output.is_some())),
            _ => None,
        })
        .collect();
    assert_eq!(
        layers,
        [("fc1".to_string(), true, true), ("fc2".to_string(), true, true), ("fc3".to_string(), true, false)],
        "{names:?}"
    );
    // Each layer requantizes to exactly what the next one reads.
    let Op::QLinear(fc1) = &g.nodes[2].op else { unreachable!() };
    let Op::QLinear(fc2) = &g.nodes[3].op else { unreachable!() };
    assert_eq!(fc1.output, fc2.input);
    assert!(g.to_dot().contains("qlinear fc2"));

    // The model's own typed forward now runs the int8 graph.
    let got = no_grad(|| q.forward_dyn(&[x.clone()])).unwrap();
    assert_eq!(got.shape(), [256, 4]);
    let err = max_abs_diff(&got, &want);
    assert!(err < 0.05 * peak(&want), "int8 vs f32: max diff {err}, peak {}", peak(&want));

    // Saved and loaded into a fresh model with no calibration data: the same numbers.
    let dir = std::env::temp_dir().join(format!("tb-quant-ir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mlp-int8.safetensors");
    plan.save(&path).unwrap();
    let mut fresh = Mlp::init(99);
    let loaded = fresh.load_quantized(&path).unwrap();
    assert_eq!(op_names(loaded.graph()), names);
    let again = no_grad(|| fresh.forward_dyn(&[x.clone()])).unwrap();
    assert_eq!(again.to_vec::<f32>(), got.to_vec::<f32>());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn quantize_method_errors_name_the_problem() {
    let mut q = Mlp::init(0);
    // A calibration batch without the model's input.
    let err = q.quantize(Vec::<Vec<Tensor>>::from([vec![]]), &QuantConfig::static_ptq()).unwrap_err().to_string();
    assert!(err.contains("batch 0 holds 0 tensor(s) but the model takes 1 input"), "{err}");
    let err = q.quantize(Vec::<Tensor>::new(), &QuantConfig::static_ptq()).unwrap_err().to_string();
    assert!(err.contains("calibration set is empty"), "{err}");
    // NaN in calibration names the layer whose input held it.
    let mut bad = Tensor::randn(&[4, 20], DType::F32).to_vec::<f32>();
    bad[5] = f32::NAN;
    let err = q.quantize([Tensor::from_vec(bad, &[4, 20])], &QuantConfig::static_ptq()).unwrap_err().to_string();
    assert!(err.contains("input of `fc1`") && err.contains("NaN"), "{err}");
    // Dynamic mode reads no calibration data at all.
    let plan = q.quantize(Vec::<Tensor>::new(), &QuantConfig::dynamic()).unwrap();
    assert!(op_names(plan.graph()).iter().all(|n| !n.starts_with("quantize")), "{:?}", op_names(plan.graph()));
    // A missing file is an error that names it.
    let err = Mlp::init(0).load_quantized("/nonexistent/mlp-int8.safetensors").unwrap_err().to_string();
    assert!(err.contains("/nonexistent/mlp-int8.safetensors"), "{err}");
}

#[test]
fn channels_last_u8_between_convolutions_gives_the_channels_first_bytes() {
    use tensorbrain::quant::{Act, QLayer};
    manual_seed(11);
    let model = TwoConv::init(4);
    let x = Tensor::randn(&[6, 1, 8, 8], DType::F32);
    let mut reference = copy_of(&model, TwoConv::init(0));
    reference.eval();
    let want = no_grad(|| reference.forward_dyn(&[x.clone()])).unwrap();
    let mut q = copy_of(&model, TwoConv::init(0));
    let plan = q.quantize([x.clone()], &QuantConfig::static_ptq()).unwrap();
    let names = op_names(plan.graph());
    assert_eq!(names.iter().filter(|n| n.starts_with("quantize")).count(), 1, "{names:?}");
    let got = no_grad(|| q.forward_dyn(&[x.clone()])).unwrap();
    let err = max_abs_diff(&got, &want);
    assert!(err < 0.05 * peak(&want), "int8 vs f32: max diff {err}, peak {}", peak(&want));

    // conv1's u8 output comes channels-last; conv2 on it, and on the same bytes transposed to
    // channels-first, gives the same bytes.
    let (QLayer::Conv2d(conv1), QLayer::Conv2d(conv2)) = (&plan.layers()[0], &plan.layers()[1]) else { panic!("two convolutions first") };
    let h = conv1.forward(&Act::F32(x.clone())).unwrap();
    assert!(matches!(h, Act::U8ChannelsLast { .. }), "{h:?}");
    assert_eq!(h.shape(), [6, 8, 8, 8]);
    // conv2's input parameters are conv1's output parameters (conv1 requantizes to them), so
    // both layouts of this value are valid conv2 inputs (the pool in between is skipped here).
    let last = conv2.forward(&h).unwrap();
    let first = conv2.forward(&h.clone().channels_first()).unwrap();
    let bytes = |a: Act| match a.channels_first() {
        Act::U8 { data, .. } => data.to_vec::<u8>(),
        other => panic!("u8 expected, got {other:?}"),
    };
    assert_eq!(bytes(last), bytes(first));
}

#[test]
fn embedding_tables_run_in_int8_per_row() {
    manual_seed(3);
    let model = Tagger::init(2);
    let ids = Tensor::from_vec((0..40).map(|i| (i * 7 % 50) as i64).collect::<Vec<i64>>(), &[4, 10]);
    let mut reference = copy_of(&model, Tagger::init(0));
    reference.eval();
    let want = no_grad(|| reference.forward_dyn(&[ids.clone()])).unwrap();
    for config in [QuantConfig::dynamic(), QuantConfig::static_ptq()] {
        let mut q = copy_of(&model, Tagger::init(0));
        let plan = q.quantize([ids.clone()], &config).unwrap();
        let kinds: Vec<(&str, &str)> = plan.report().quantized.iter().map(|l| (l.name.as_str(), l.kind.as_str())).collect();
        assert_eq!(kinds, [("head", "Linear"), ("embed", "Embedding")], "{}", plan.report());
        assert!(plan.report().kept_f32.is_empty(), "{}", plan.report());
        assert!(op_names(plan.graph()).contains(&"qembedding embed".to_string()), "{:?}", op_names(plan.graph()));
        let got = no_grad(|| q.forward_dyn(&[ids.clone()])).unwrap();
        assert_eq!(got.shape(), [4, 10, 3]);
        let err = max_abs_diff(&got, &want);
        assert!(err < 0.05 * peak(&want), "{:?}: max diff {err}, peak {}", config.mode, peak(&want));
    }
}

#[test]
fn qembedding_rows_are_exactly_the_i8_row_times_its_scale() {
    manual_seed(5);
    let table = Tensor::randn(&[6, 5], DType::F32);
    let e = QEmbedding::from_f32("emb", &table).unwrap();
    assert_eq!((e.num_embeddings(), e.dim()), (6, 5));
    let q = e.table().to_vec::<i8>();
    let params = e.params();
    let ids = Tensor::from_vec(vec![5i64, 0, 5, 2], &[2, 2]);
    let out = e.forward(&ids).unwrap();
    assert_eq!(out.shape(), [2, 2, 5]);
    let f = table.to_vec::<f32>();
    for (slot, &row) in [5usize, 0, 5, 2].iter().enumerate() {
        let scale = params.scales[row];
        // Symmetric per row: the largest magnitude maps to ±127.
        let amax = f[row * 5..row * 5 + 5].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((scale - amax / 127.5).abs() <= 1e-6 * amax || (scale - amax / 127.0).abs() <= 1e-6 * amax, "row {row}: scale {scale}, |max| {amax}");
        for j in 0..5 {
            let got = out.to_vec::<f32>()[slot * 5 + j];
            assert_eq!(got, q[row * 5 + j] as f32 * scale, "row {row} col {j}");
            assert!((got - f[row * 5 + j]).abs() <= scale / 2.0 + 1e-7, "row {row} col {j}: {got} vs {}", f[row * 5 + j]);
        }
    }
    let err = e.forward(&Tensor::from_vec(vec![6i64], &[1])).unwrap_err().to_string();
    assert!(err.contains("emb") && err.contains('6'), "{err}");
    assert!(QEmbedding::from_f32("bad", &Tensor::from_vec(vec![f32::INFINITY, 0.0], &[1, 2])).is_err());
}

#[test]
fn quantize_ops_run_through_the_executor_as_quant_ops_do() {
    manual_seed(9);
    let x = Tensor::randn(&[3, 7], DType::F32);
    let (p, p2) = (QuantParams { scale: 0.02, zero_point: 128 }, QuantParams { scale: 0.05, zero_point: 100 });
    let qp = |p: QuantParams| QParams::per_tensor(QDType::U8, p.scale, p.zero_point);
    let q = tensorbrain::exec::apply(&Op::Quantize(p), &[&x], &[]).unwrap();
    assert_eq!(q.to_vec::<u8>(), quant::quantize_tensor(&x, &qp(p)).unwrap().to_vec::<u8>());
    let back = tensorbrain::exec::apply(&Op::Dequantize(p), &[&q], &[]).unwrap();
    assert_eq!(back.to_vec::<f32>(), quant::dequantize(&q, &qp(p)).unwrap().to_vec::<f32>());
    let r = tensorbrain::exec::apply(&Op::Requantize { from: p, to: p2 }, &[&q], &[]).unwrap();
    assert_eq!(r.to_vec::<u8>(), quant::requantize(&q, &qp(p), &qp(p2)).unwrap().to_vec::<u8>());
}
