use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<8, 8>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, T, 8], y: tb![B, S, 8]) -> tb![B, T, 8] {
        self.fc(x) + y
    }
}

fn main() {}
