use tensorbrain::prelude::*;

#[model]
pub fn pair_sum<B: Dim>(x: tb![B, 64]) -> tb![B, 32] {
    x.reshape([B, 2, 32]).sum(1)
}

#[model]
pub struct Net {
    fc: Linear<16, 32>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 16] {
        pair_sum(self.fc(x))
    }
}

fn main() {}
