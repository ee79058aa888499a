use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<8, 4>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 8]) -> tb![B, 4] {
        self.fc(x).softmax(2)
    }
}

fn main() {}
