use tensorbrain::prelude::*;

fn swish(x: &Tensor) -> Tensor {
    x * &x.sigmoid()
}

#[model]
pub struct Net {
    fc: Linear<16, 16>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 16] {
        swish(self.fc(x))
    }
}

fn main() {}
