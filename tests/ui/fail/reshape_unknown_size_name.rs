use tensorbrain::prelude::*;

#[model]
pub struct Net {
    fc: Linear<64, 64>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, T, 64]) -> tb![B, T, 64] {
        let h = self.fc(x).reshape([B, Q, 64]);
        h
    }
}

fn main() {}
