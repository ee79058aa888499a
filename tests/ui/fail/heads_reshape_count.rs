use tensorbrain::prelude::*;

#[model]
pub struct Attn {
    q: Linear<64, 64>,
}

#[model]
impl Attn {
    pub fn forward(&self, x: tb![B, T, 64]) -> tb![B, 4, T, 15] {
        self.q(x).reshape([B, T, 4, 15]).transpose(1, 2)
    }
}

fn main() {}
