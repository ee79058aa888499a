//! The layers added after the first `#[model]` set, as fields of a `#[model]`: `GroupNorm`,
//! `InstanceNorm2d`, `ConvTranspose2d`, `EmbeddingBag` (shapes checked at compile time),
//! `LeakyReLU`/`ELU`/`Softmax`/`LogSoftmax` (shape kept), and `MaxPool2dWith`/`Sequential`
//! (shapes checked at run time). They run through their tape-backed `StaticModel` impls; the
//! generated backward must give the eager tape's gradients (rtol 1e-5, atol 1e-6).

use tensorbrain::ops::MaxPoolOptions;
use tensorbrain::prelude::*;

mod common;
use common::{close, output_and_grads};

#[model]
pub struct Decoder {
    up: ConvTranspose2d<4, 6, 3, 2, 1, 1>,
    gn: GroupNorm<3, 6>,
    act: LeakyReLU,
    inorm: InstanceNorm2d<6>,
    pool: MaxPool2dWith,
    flat: Flatten,
    fc: Linear<96, 5>,
    soft: LogSoftmax,
}

#[model]
impl Decoder {
    pub fn forward(&self, x: tb![B, 4, 4, 4]) -> tb![B, 5] {
        // 4x4 upsampled by stride 2 (k 3, p 1, output padding 1) is 8x8.
        let h: tb![B, 6, 8, 8] = self.up(x);
        let h = self.act(self.gn(h));
        let h = self.inorm(h);
        // The pooling window is set at run time, so its output shape is stated.
        let h: tb![B, 6, 4, 4] = self.pool(h);
        self.soft(self.fc(self.flat(h)))
    }
}

fn eager_decoder(m: &Decoder, x: &Tensor) -> Tensor {
    let h = m.up.forward(x).unwrap();
    let h = m.act.forward(&m.gn.forward(&h).unwrap()).unwrap();
    let h = m.inorm.forward(&h).unwrap();
    let h = m.pool.forward(&h).unwrap();
    m.soft.forward(&m.fc.forward(&m.flat.forward(&h).unwrap()).unwrap()).unwrap()
}

#[model]
pub struct Bag {
    bag: EmbeddingBag<20, 8>,
    act: ELU,
    head: Linear<8, 3>,
    probs: Softmax,
}

#[model]
impl Bag {
    pub fn forward(&self, ids: tb![B, 5; i64]) -> tb![B, 3] {
        self.probs(self.head(self.act(self.bag(ids))))
    }
}

#[model]
pub struct WithSequential {
    fc: Linear<6, 8>,
    rest: Sequential,
}

#[model]
impl WithSequential {
    pub fn forward(&self, x: tb![B, 6]) -> tb![B, 2] {
        let h: tb![B, 2] = self.rest(self.fc(x).tanh());
        h
    }
}

fn compare<M: ModuleExt>(name: &str, m: &M, x: &Tensor, static_fwd: impl Fn(&Tensor) -> Tensor, eager_fwd: impl Fn(&Tensor) -> Tensor) {
    let (out_s, g_s) = output_and_grads(m, x, 5, static_fwd);
    let (out_e, g_e) = output_and_grads(m, x, 5, eager_fwd);
    close(&format!("{name} output"), &out_s, &out_e);
    assert_eq!(g_s.len(), g_e.len());
    for (i, (p, q)) in g_s.iter().zip(&g_e).enumerate() {
        close(&format!("{name} gradient {i}"), p, q);
    }
}

#[test]
fn decoder_static_backward_equals_tape() {
    let mut m = Decoder::init(3);
    m.act.negative_slope = 0.2;
    m.pool = MaxPool2dWith::new(MaxPoolOptions::new([2, 2]));
    let x = Tensor::randn(&[2, 4, 4, 4], DType::F32).set_requires_grad(true);
    compare("Decoder", &m, &x, |x| m.forward_dyn(&[x.clone()]).unwrap(), |x| eager_decoder(&m, x));
    // The typed forward knows the output shape.
    let x: tb![_, 4, 4, 4] = Tensor::randn(&[3, 4, 4, 4], DType::F32).typed().unwrap();
    let y = m.forward(x);
    assert_eq!(y.shape(), &[3, 5]);
}

#[test]
fn embedding_bag_takes_ids_and_gives_floats() {
    let m = Bag::init(4);
    let ids = Tensor::from_vec((0..15).map(|i| (i * 7 % 20) as i64).collect::<Vec<_>>(), &[3, 5]);
    let eager = |ids: &Tensor| m.probs.forward(&m.head.forward(&m.act.forward(&m.bag.forward(ids).unwrap()).unwrap()).unwrap()).unwrap();
    compare("Bag", &m, &ids, |x| m.forward_dyn(&[x.clone()]).unwrap(), eager);
    let rows = m.forward_dyn(&[ids]).unwrap().sum(&[1], false).to_vec::<f32>();
    assert!(rows.iter().all(|s| (s - 1.0).abs() < 1e-5), "softmax rows sum to 1: {rows:?}");
}

#[test]
fn sequential_field_is_checked_at_run_time() {
    let mut m = WithSequential::init(6);
    m.rest = Sequential::new().add(Linear::<8, 4>::init(1)).add(ReLU::default()).add(Linear::<4, 2>::init(2));
    let x = Tensor::randn(&[5, 6], DType::F32).set_requires_grad(true);
    let eager = |x: &Tensor| m.rest.forward(&m.fc.forward(x).unwrap().tanh()).unwrap();
    compare("WithSequential", &m, &x, |x| m.forward_dyn(&[x.clone()]).unwrap(), eager);
    // A Sequential that gives the wrong shape is an error naming the stated shape.
    m.rest = Sequential::new().add(Linear::<8, 3>::init(1));
    let err = m.forward_dyn(&[Tensor::randn(&[5, 6], DType::F32)]).unwrap_err().to_string();
    assert!(err.contains('2') && err.contains('3'), "{err}");
}
