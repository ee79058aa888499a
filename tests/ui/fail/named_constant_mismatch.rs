use tensorbrain::prelude::*;

const D_MODEL: usize = 64;

#[model]
pub struct Net {
    fc: Linear<32, 10>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, D_MODEL]) -> tb![B, 10] {
        // D_MODEL is 64, the layer takes 32: a const assertion rustc evaluates.
        self.fc(x)
    }
}

fn main() {}
