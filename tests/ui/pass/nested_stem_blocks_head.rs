// A real network shape: a stem, four residual blocks and a head, each its own #[model].
// The outer model checks every call against the nested models' signatures, with no
// annotations, and knows each output shape to check the next layer.
use tensorbrain::prelude::*;

#[model]
pub struct Stem {
    fc: Linear<16, 32>,
}

#[model]
impl Stem {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 32] {
        self.fc(x).relu()
    }
}

#[model]
pub struct Block {
    norm: LayerNorm<32>,
    fc: Linear<32, 32>,
}

#[model]
impl Block {
    pub fn forward(&self, x: tb![B, 32]) -> tb![B, 32] {
        x + self.fc(self.norm(x)).gelu()
    }
}

#[model]
pub struct Net {
    stem: Stem,
    blocks: [Block; 4],
    head: Linear<32, 10>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 10] {
        let mut h = self.stem(x);
        for block in &self.blocks {
            h = block(h);
        }
        self.head(h)
    }
}

fn main() {
    let net = Net::init(0);
    let x: tb![_, 16] = Tensor::randn(&[3, 16], DType::F32).typed().unwrap();
    assert_eq!(net.forward(x).shape(), &[3, 10]);
}
