//! Static shapes on real model shapes: every model below is checked by `cargo build`, and each
//! trains a few steps on random data here to show the generated backward at work.
//!
//! - a nested model (`Stem` -> `[Block; 4]` -> `Head`), checked across model boundaries with no
//!   annotations;
//! - a residual CNN generic over its width (`ResNet<C>`), used at three widths;
//! - a transformer encoder block on `tb![B, T, D]` with symbolic batch `B` and length `T`,
//!   generic in width and head count (`EncoderBlock<D, H>`), used at three sizes and run at two
//!   sequence lengths;
//! - a feed-forward block generic in width (`Ffn<D>`, `Linear<D, {4 * D}>`), at three widths.
//!
//!     cargo run --release --example static_shapes

use tensorbrain::optim::{Adam, AdamOptions, Optimizer};
use tensorbrain::prelude::*;
use tensorbrain::shape::{self, Shape};

// --- nested ------------------------------------------------------------------------------------

#[model]
pub struct Stem {
    fc: Linear<32, 64>,
    norm: LayerNorm<64>,
}

#[model]
impl Stem {
    pub fn forward(&self, x: tb![B, 32]) -> tb![B, 64] {
        self.norm(self.fc(x)).gelu()
    }
}

#[model]
pub struct Block {
    norm: LayerNorm<64>,
    ffn: Ffn<64>,
}

#[model]
impl Block {
    pub fn forward(&self, x: tb![B, 64]) -> tb![B, 64] {
        let h: tb![B, 1, 64] = self.norm(x).reshape([B, 1, 64]);
        x + self.ffn(h).reshape([B, 64])
    }
}

#[model]
pub struct Head {
    fc: Linear<64, 10>,
}

#[model]
impl Head {
    pub fn forward(&self, x: tb![B, 64]) -> tb![B, 10] {
        self.fc(x).log_softmax(-1)
    }
}

#[model]
pub struct Classifier {
    stem: Stem,
    blocks: [Block; 4],
    head: Head,
}

#[model]
impl Classifier {
    pub fn forward(&self, x: tb![B, 32]) -> tb![B, 10] {
        let mut h = self.stem(x);
        for block in &self.blocks {
            h = block(h);
        }
        self.head(h)
    }
}

// --- generic feed-forward --------------------------------------------------------------------

#[model]
pub fn swish<S: Shape>(x: shape::Tensor<S>) -> shape::Tensor<S> {
    &x * &x.sigmoid()
}

#[model]
pub struct Ffn<D: Dim> {
    up: Linear<D, { 4 * D }>,
    down: Linear<{ 4 * D }, D>,
}

#[model]
impl<D: Dim> Ffn<D> {
    pub fn forward(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        self.down(swish(self.up(x)))
    }
}

// --- generic ResNet ----------------------------------------------------------------------------

#[model]
pub struct ResBlock<C: Dim> {
    conv1: Conv2d<C, C, 3, 1, 1>,
    bn1: BatchNorm2d<C>,
    conv2: Conv2d<C, C, 3, 1, 1>,
    bn2: BatchNorm2d<C>,
}

#[model]
impl<C: Dim> ResBlock<C> {
    pub fn forward(&self, x: tb![N, C, H, W]) -> tb![N, C, H, W] {
        let h = self.bn1(self.conv1(x)).relu();
        (x + self.bn2(self.conv2(h))).relu()
    }
}

#[model]
pub struct ResNet<C: Dim> {
    stem: Conv2d<1, C, 3, 1, 1>,
    stage1: [ResBlock<C>; 2],
    down: Conv2d<C, { 2 * C }, 3, 2, 1>,
    stage2: ResBlock<{ 2 * C }>,
    pool: AdaptiveAvgPool2d<1, 1>,
    flat: Flatten,
    head: Linear<{ 2 * C }, 10>,
}

#[model]
impl<C: Dim> ResNet<C> {
    pub fn forward(&self, x: tb![N, 1, 16, 16]) -> tb![N, 10] {
        let mut h = self.stem(x);
        for block in &self.stage1 {
            h = block(h);
        }
        let h = self.stage2(self.down(h));
        self.head(self.flat(self.pool(h))).log_softmax(-1)
    }
}

// --- transformer encoder block on [B, T, D] ----------------------------------------------------

#[model]
pub struct EncoderBlock<D: Dim, H: Dim> {
    norm1: LayerNorm<D>,
    q: Linear<D, D>,
    k: Linear<D, D>,
    v: Linear<D, D>,
    proj: Linear<D, D>,
    norm2: LayerNorm<D>,
    ffn: Ffn<D>,
}

#[model]
impl<D: Dim, H: Dim> EncoderBlock<D, H> {
    /// `[B, T, D]` -> `[B, H, T, D/H]`: `D` divisible by `H` is required of every size used.
    fn heads(&self, x: tb![B, T, D]) -> tb![B, H, T, { D / H }] {
        x.reshape([B, T, H, D / H]).transpose(1, 2)
    }

    fn attention(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        let (q, k, v) = (self.heads(self.q(x)), self.heads(self.k(x)), self.heads(self.v(x)));
        let scores = q.matmul(k.transpose(2, 3)) * 0.125;
        self.proj(scores.softmax(-1).matmul(v).transpose(1, 2).reshape([B, T, D]))
    }

    pub fn forward(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        let h = x + self.attention(self.norm1(x));
        h + self.ffn(self.norm2(h))
    }
}

/// A few Adam steps on random data; the loss must fall.
fn train<M: ModuleExt>(name: &str, model: &mut M, loss_of: impl Fn(&M) -> Tensor) {
    let mut opt = Adam::new(model.parameters(), AdamOptions { lr: 3e-3, ..Default::default() }).expect("optimizer");
    let mut losses = Vec::new();
    for _ in 0..8 {
        opt.zero_grad();
        let loss = loss_of(model);
        loss.backward();
        opt.step().expect("step");
        losses.push(loss.item::<f32>());
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    println!("{name:<34} {:>9} params   loss {first:.4} -> {last:.4}", model.summary().total_params());
    assert!(last < first, "{name}: the loss did not fall");
}

/// A target for the sequence models: the input with its features reversed.
fn flip_last(x: &Tensor) -> Tensor {
    let d = x.shape()[x.rank() - 1];
    let idx: Vec<i64> = (0..d as i64).rev().collect();
    x.try_index_select(-1, &Tensor::from_vec(idx, &[d])).expect("flip")
}

fn main() {
    manual_seed(0);
    println!("8 Adam steps per model on random data");

    let x = Tensor::randn(&[16, 32], DType::F32);
    let y = Tensor::randint(0, 10, &[16]);
    train("Classifier (Stem, [Block; 4], Head)", &mut Classifier::init(0), |m| nll_loss(&m.forward_dyn(&[x.clone()]).unwrap(), &y));

    let img = Tensor::randn(&[8, 1, 16, 16], DType::F32);
    let y = Tensor::randint(0, 10, &[8]);
    train("ResNet<4>", &mut ResNet::<Const<4>>::init(1), |m| nll_loss(&m.forward_dyn(&[img.clone()]).unwrap(), &y));
    train("ResNet<8>", &mut ResNet::<Const<8>>::init(1), |m| nll_loss(&m.forward_dyn(&[img.clone()]).unwrap(), &y));
    train("ResNet<16>", &mut ResNet::<Const<16>>::init(1), |m| nll_loss(&m.forward_dyn(&[img.clone()]).unwrap(), &y));

    // One compiled EncoderBlock<32, 4> runs at any sequence length.
    for t in [12, 20] {
        let seq = Tensor::randn(&[4, t, 32], DType::F32);
        let target = flip_last(&seq);
        train(&format!("EncoderBlock<32, 4>, T = {t}"), &mut EncoderBlock::<Const<32>, Const<4>>::init(2), |m| {
            mse_loss(&m.forward_dyn(&[seq.clone()]).unwrap(), &target)
        });
    }
    let seq = Tensor::randn(&[4, 12, 64], DType::F32);
    let target = flip_last(&seq);
    train("EncoderBlock<64, 8>", &mut EncoderBlock::<Const<64>, Const<8>>::init(3), |m| mse_loss(&m.forward_dyn(&[seq.clone()]).unwrap(), &target));
    let seq = Tensor::randn(&[4, 12, 48], DType::F32);
    let target = flip_last(&seq);
    train("EncoderBlock<48, 3>", &mut EncoderBlock::<Const<48>, Const<3>>::init(4), |m| mse_loss(&m.forward_dyn(&[seq.clone()]).unwrap(), &target));

    let seq = Tensor::randn(&[4, 6, 16], DType::F32);
    let target = flip_last(&seq);
    train("Ffn<16>", &mut Ffn::<Const<16>>::init(5), |m| mse_loss(&m.forward_dyn(&[seq.clone()]).unwrap(), &target));
    let seq = Tensor::randn(&[4, 6, 24], DType::F32);
    let target = flip_last(&seq);
    train("Ffn<24>", &mut Ffn::<Const<24>>::init(6), |m| mse_loss(&m.forward_dyn(&[seq.clone()]).unwrap(), &target));
    let seq = Tensor::randn(&[4, 6, 40], DType::F32);
    let target = flip_last(&seq);
    train("Ffn<40>", &mut Ffn::<Const<40>>::init(7), |m| mse_loss(&m.forward_dyn(&[seq.clone()]).unwrap(), &target));
}
