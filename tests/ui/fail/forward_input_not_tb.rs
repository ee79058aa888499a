use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<8, 8>,
}

#[model]
impl Net {
    fn forward(&self, x: Tensor) -> tb![B, 8] {
        self.fc(x)
    }
}

fn main() {}
