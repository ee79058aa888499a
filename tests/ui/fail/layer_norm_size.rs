use tensorbrain::prelude::*;

#[model]
struct Net {
    norm: LayerNorm<64>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, T, 32]) -> tb![B, T, 32] {
        self.norm(x)
    }
}

fn main() {}
