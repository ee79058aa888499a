use tensorbrain::prelude::*;

#[model]
pub struct Widen {
    fc: Linear<32, 64>,
}

#[model]
impl Widen {
    pub fn forward(&self, x: tb![B, 32]) -> tb![B, 64] {
        self.fc(x)
    }
}

#[model]
pub struct Net {
    block: Widen,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 32]) -> tb![B, 64] {
        x + self.block(x)
    }
}

fn main() {}
