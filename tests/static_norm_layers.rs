//! `BatchNorm1d/2d`, `RMSNorm` and `AdaptiveAvgPool2d` as fields of a `#[model]`: the macro
//! checks their shapes at compile time and calls their hand-written `StaticModel` interface;
//! here the generated backward must give the eager tape's gradients (rtol 1e-5, atol 1e-6),
//! the running statistics must move the same way on both paths, and a small CNN must train.

use tensorbrain::autograd::no_grad;
use tensorbrain::prelude::*;

mod common;
use common::{close, output_and_grads};

#[model]
pub struct BnCnn {
    conv: Conv2d<2, 4, 3, 1, 1>,
    bn: BatchNorm2d<4>,
    pool: AdaptiveAvgPool2d<2, 2>,
    flat: Flatten,
    norm: RMSNorm<16>,
    fc: Linear<16, 3>,
}

#[model]
impl BnCnn {
    pub fn forward(&self, x: tb![B, 2, 7, 6]) -> tb![B, 3] {
        let h = self.bn(self.conv(x)).relu();
        let h = self.flat(self.pool(h));
        self.fc(self.norm(h))
    }
}

fn eager_bn_cnn(m: &BnCnn, x: &Tensor) -> Tensor {
    let h = m.bn.forward(&m.conv.forward(x).unwrap()).unwrap().relu();
    let h = m.flat.forward(&m.pool.forward(&h).unwrap()).unwrap();
    m.fc.forward(&m.norm.forward(&h).unwrap()).unwrap()
}

/// Batch norm straight on the data input: the call's input needs no gradient, only its
/// parameters do.
#[model]
pub struct BnMlp {
    bn_in: BatchNorm1d<5>,
    fc: Linear<5, 6>,
    bn: BatchNorm1d<6>,
    head: Linear<6, 2>,
}

#[model]
impl BnMlp {
    pub fn forward(&self, x: tb![B, 5]) -> tb![B, 2] {
        self.head(self.bn(self.fc(self.bn_in(x))).tanh())
    }
}

fn eager_bn_mlp(m: &BnMlp, x: &Tensor) -> Tensor {
    let h = m.fc.forward(&m.bn_in.forward(x).unwrap()).unwrap();
    m.head.forward(&m.bn.forward(&h).unwrap().tanh()).unwrap()
}

/// Runs the static and eager paths on two copies of the model (same parameters, separate
/// running statistics), in training and then eval mode, and compares everything.
fn compare<M: ModuleExt>(
    name: &str,
    mut a: M,
    mut b: M,
    x: Tensor,
    static_fwd: impl Fn(&M, &Tensor) -> Tensor,
    eager_fwd: impl Fn(&M, &Tensor) -> Tensor,
) {
    for training in [true, false] {
        a.set_training(training);
        b.set_training(training);
        let (out_s, g_s) = output_and_grads(&a, &x, 11, |x| static_fwd(&a, x));
        let (out_e, g_e) = output_and_grads(&b, &x, 11, |x| eager_fwd(&b, x));
        close(&format!("{name} output (training {training})"), &out_s, &out_e);
        for (i, (p, q)) in g_s.iter().zip(&g_e).enumerate() {
            close(&format!("{name} gradient {i} (training {training})"), p, q);
        }
        for ((n, p), (_, q)) in a.state_dict().iter().zip(b.state_dict().iter()) {
            close(&format!("{name} {n}"), &p.to_vec::<f32>(), &q.to_vec::<f32>());
        }
    }
    let steps = a.state_dict().into_iter().find(|(n, _)| n.ends_with("num_batches_tracked")).expect("a batch norm buffer").1;
    assert_eq!(steps.item::<i64>(), 1, "one training step was taken");
}

#[test]
fn bn_cnn_static_backward_equals_tape() {
    let x = Tensor::randn(&[3, 2, 7, 6], DType::F32).set_requires_grad(true);
    compare("BnCnn", BnCnn::init(1), BnCnn::init(1), x, |m, x| m.forward_dyn(&[x.clone()]).unwrap(), eager_bn_cnn);
}

#[test]
fn bn_on_data_input_static_backward_equals_tape() {
    let x = Tensor::randn(&[4, 5], DType::F32).mul_scalar(3.0).add_scalar(1.0);
    compare("BnMlp", BnMlp::init(2), BnMlp::init(2), x, |m, x| m.forward_dyn(&[x.clone()]).unwrap(), eager_bn_mlp);
}

#[test]
fn static_layers_keep_shapes_known_for_the_typed_forward() {
    let m = BnCnn::init(0);
    let x: tb![_, 2, 7, 6] = Tensor::randn(&[2, 2, 7, 6], DType::F32).typed().unwrap();
    let y = m.forward(x);
    assert_eq!(y.shape(), &[2, 3]);
    let g = m.graph();
    let text = g.graph.to_string();
    assert!(text.contains("call bn") && text.contains("call pool") && text.contains("call norm"), "{text}");
}

#[test]
fn bn_cnn_trains() {
    manual_seed(3);
    let model = BnCnn::init(3);
    let x = Tensor::randn(&[8, 2, 7, 6], DType::F32);
    let target = Tensor::from_vec(vec![0i64, 1, 2, 0, 1, 2, 0, 1], &[8]);
    let step = |lr: f64| -> f32 {
        model.zero_grad();
        let loss = cross_entropy(&model.forward_dyn(&[x.clone()]).unwrap(), &target);
        loss.backward();
        no_grad(|| {
            for p in model.parameters() {
                p.copy_from(&p.sub(&p.grad().expect("gradient").mul_scalar(lr)));
            }
        });
        loss.item::<f32>()
    };
    let first = step(0.2);
    let mut last = first;
    for _ in 0..30 {
        last = step(0.2);
    }
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    let steps = model.state_dict().into_iter().find(|(n, _)| n == "bn.num_batches_tracked").unwrap().1;
    assert_eq!(steps.item::<i64>(), 31);
}

#[test]
fn one_input_models_are_sequential_layers() {
    let seq = Sequential::new().add(BnMlp::init(0)).add(Softmax::new(1));
    let names: Vec<String> = seq.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "0.bn_in.weight");
    assert!(names.contains(&"0.bn.running_var".to_string()), "{names:?}");
    let y = seq.forward(&Tensor::randn(&[4, 5], DType::F32)).unwrap();
    assert_eq!(y.shape(), &[4, 2]);
}
