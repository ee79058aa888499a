// Sizes as const generic parameters, named constants and const expressions.
use tensorbrain::prelude::*;

const D_MODEL: usize = 64;
const D_FF: usize = 4 * D_MODEL;

#[model]
pub struct Mlp<const H: usize> {
    fc1: Linear<784, H>,
    fc2: Linear<H, { 2 * H }>,
    fc3: Linear<{ H * 2 }, 10>,
}

#[model]
impl<const H: usize> Mlp<H> {
    pub fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {
        self.fc3(self.fc2(self.fc1(x).relu()).relu())
    }
}

#[model]
pub struct Named {
    up: Linear<D_MODEL, D_FF>,
    down: Linear<D_FF, D_MODEL>,
    lit: Linear<64, { 4 * 64 }>,
    mix: Linear<256, 64>,
}

#[model]
impl Named {
    pub fn forward(&self, x: tb![B, D_MODEL]) -> tb![B, 64] {
        let h = self.down(self.up(x).relu());
        // [B, D_MODEL] into a Linear<64, ..>: D_MODEL == 64 is checked by a const assertion.
        self.mix(self.lit(h))
    }
}

fn main() {
    let m = Mlp::<128>::init(0);
    let x: tb![_, 784] = Tensor::randn(&[2, 784], DType::F32).typed().unwrap();
    assert_eq!(m.forward(x).shape(), &[2, 10]);
    assert_eq!(m.fc2.weight.shape(), &[256, 128]);
    let n = Named::init(0);
    let x = Tensor::randn(&[3, 64], DType::F32);
    assert_eq!(n.forward_dyn(&[x]).unwrap().shape(), &[3, 64]);
}
