use tensorbrain::prelude::*;

#[model]
pub struct Heads<D: Dim, H: Dim> {
    q: Linear<D, D>,
}

#[model]
impl<D: Dim, H: Dim> Heads<D, H> {
    pub fn forward(&self, x: tb![B, T, D]) -> tb![B, H, T, { D / H }] {
        self.q(x).reshape([B, T, H, D / H]).transpose(1, 2)
    }
}

#[model]
pub struct Net {
    heads: Heads<64, 5>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, T, 64]) -> tb![B, 5, T, 12] {
        self.heads(x)
    }
}

fn main() {}
