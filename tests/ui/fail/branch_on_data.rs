use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<8, 8>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 8]) -> tb![B, 8] {
        if self.deep { self.fc(x) } else { x }
    }
}

fn main() {}
