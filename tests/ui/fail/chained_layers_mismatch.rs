use tensorbrain::prelude::*;

#[model]
struct Net {
    fc1: Linear<784, 256>,
    fc2: Linear<128, 10>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {
        let h = self.fc1(x).relu();
        self.fc2(h)
    }
}

fn main() {}
