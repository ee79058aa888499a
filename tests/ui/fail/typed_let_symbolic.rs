use tensorbrain::prelude::*;

#[model]
pub struct Net {
    fc: Linear<64, 64>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, T, 64]) -> tb![B, T, 64] {
        let h: tb![B, T, 16] = self.fc(x).reshape([B, T, 4, 16]);
        h
    }
}

fn main() {}
