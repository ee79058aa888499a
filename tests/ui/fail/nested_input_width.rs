use tensorbrain::prelude::*;

#[model]
pub struct Block {
    fc: Linear<32, 32>,
}

#[model]
impl Block {
    pub fn forward(&self, x: tb![B, 32]) -> tb![B, 32] {
        self.fc(x).relu()
    }
}

#[model]
pub struct Net {
    inp: Linear<8, 16>,
    block: Block,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 8]) -> tb![B, 32] {
        // A 16-wide tensor into a block that takes 32.
        self.block(self.inp(x))
    }
}

fn main() {}
