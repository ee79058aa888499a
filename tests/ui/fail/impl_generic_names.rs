use tensorbrain::prelude::*;

#[model]
pub struct Ffn<D: Dim> {
    up: Linear<D, D>,
}

#[model]
impl<E: Dim> Ffn<E> {
    pub fn forward(&self, x: tb![B, E]) -> tb![B, E] {
        self.up(x)
    }
}

fn main() {}
