use tensorbrain::prelude::*;

#[model]
pub struct Net {
    fc: Linear<16, 16>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, Q] {
        self.fc(x)
    }
}

fn main() {}
