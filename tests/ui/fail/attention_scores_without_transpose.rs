use tensorbrain::prelude::*;

#[model]
pub struct Attn {
    q: Linear<64, 64>,
    k: Linear<64, 64>,
}

#[model]
impl Attn {
    pub fn forward(&self, x: tb![B, T, 64]) -> tb![B, 4, T, T] {
        let q = self.q(x).reshape([B, T, 4, 16]).transpose(1, 2);
        let k = self.k(x).reshape([B, T, 4, 16]).transpose(1, 2);
        q.matmul(k)
    }
}

fn main() {}
