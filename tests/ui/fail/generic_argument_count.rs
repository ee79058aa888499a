use tensorbrain::prelude::*;

#[model]
pub struct Ffn<D: Dim> {
    up: Linear<D, D>,
}

#[model]
impl<D: Dim> Ffn<D> {
    pub fn forward(&self, x: tb![B, D]) -> tb![B, D] {
        self.up(x)
    }
}

#[model]
pub struct Net {
    ffn: Ffn<32, 64>,
}

fn main() {}
