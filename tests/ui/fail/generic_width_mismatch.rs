use tensorbrain::prelude::*;

#[model]
pub struct Ffn<D: Dim> {
    up: Linear<D, { 2 * D }>,
    down: Linear<{ 4 * D }, D>,
}

#[model]
impl<D: Dim> Ffn<D> {
    pub fn forward(&self, x: tb![B, D]) -> tb![B, D] {
        self.down(self.up(x))
    }
}

fn main() {}
