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
    blocks: [Widen; 2],
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 32]) -> tb![B, 32] {
        let mut h = x;
        for block in &self.blocks {
            h = block(h);
        }
        h
    }
}

fn main() {}
