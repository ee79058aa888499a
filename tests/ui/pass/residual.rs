use tensorbrain::prelude::*;

#[model]
pub struct Block {
    norm: LayerNorm<32>,
    fc: Linear<32, 32>,
}

#[model]
impl Block {
    pub fn forward(&self, x: tb![B, 32]) -> tb![B, 32] {
        x + self.fc(self.norm(x)).silu()
    }
}

#[model]
pub struct Deep {
    input: Linear<16, 32>,
    blocks: [Block; 3],
    head: Linear<32, 4>,
}

#[model]
impl Deep {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 4] {
        let mut h = self.input(x);
        for block in &self.blocks {
            h = block(h);
        }
        if self.training {
            self.head(h)
        } else {
            self.head(h).softmax(1)
        }
    }
}

fn main() {
    let net = Deep::init(1);
    assert_eq!(net.named_parameters()[2].0, "blocks.0.norm.weight");
    let x: tb![_, 16] = Tensor::randn(&[5, 16], DType::F32).typed().unwrap();
    assert_eq!(net.forward(x).shape(), &[5, 4]);
}
