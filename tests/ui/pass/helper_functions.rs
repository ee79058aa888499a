// Helpers called in forward: `#[model] fn`s (ordinary typed functions that models inline into
// their graphs) and helper methods of the model's impl.
use tensorbrain::prelude::*;
use tensorbrain::shape::{self, Shape};

/// Works on any shape: the result has the argument's shape.
#[model]
pub fn swish<S: Shape>(x: shape::Tensor<S>) -> shape::Tensor<S> {
    &x * &x.sigmoid()
}

/// A typed helper: rustc checks callers by its type, the macro by its declared shapes.
#[model]
pub fn pair_sum<B: Dim>(x: tb![B, 64]) -> tb![B, 32] {
    x.reshape([B, 2, 32]).sum(1)
}

#[model]
pub struct Net {
    fc: Linear<16, 64>,
    head: Linear<32, 10>,
}

#[model]
impl Net {
    fn features(&self, x: tb![B, 16]) -> tb![B, 32] {
        pair_sum(swish(self.fc(x)))
    }

    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 10] {
        self.head(self.features(x))
    }
}

fn main() {
    let net = Net::init(0);
    let x: tb![_, 16] = Tensor::randn(&[4, 16], DType::F32).typed().unwrap();
    assert_eq!(net.forward(x).shape(), &[4, 10]);
    // The helpers are plain functions too.
    let y: tb![_, 64] = Tensor::randn(&[2, 64], DType::F32).typed().unwrap();
    assert_eq!(pair_sum(swish(y)).shape(), &[2, 32]);
}
