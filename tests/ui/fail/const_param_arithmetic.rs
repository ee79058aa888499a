use tensorbrain::prelude::*;

#[model]
pub struct Inner<const W: usize> {
    fc: Linear<W, W>,
}

#[model]
impl<const W: usize> Inner<W> {
    pub fn forward(&self, x: tb![B, W]) -> tb![B, W] {
        self.fc(x)
    }
}

#[model]
pub struct Outer<const H: usize> {
    // A const parameter cannot take arithmetic on another on stable Rust.
    inner: Inner<{ 2 * H }>,
}

fn main() {}
