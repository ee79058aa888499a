use tensorbrain::prelude::*;

#[model]
struct Attention {
    proj: Linear<64, 64>,
}

#[model]
impl Attention {
    fn forward(&self, q: tb![B, 8, 64], k: tb![B, 16, 32]) -> tb![B, 8, 16] {
        let q = self.proj(q);
        q.matmul(k)
    }
}

fn main() {}
