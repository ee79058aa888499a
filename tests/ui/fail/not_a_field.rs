use tensorbrain::prelude::*;

#[model]
struct Net {
    fc1: Linear<8, 8>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 8]) -> tb![B, 8] {
        self.fc2(x)
    }
}

fn main() {}
