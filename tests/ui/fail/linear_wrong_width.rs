use tensorbrain::prelude::*;

#[model]
struct Net {
    fc1: Linear<784, 256>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 100]) -> tb![B, 256] {
        self.fc1(x)
    }
}

fn main() {}
