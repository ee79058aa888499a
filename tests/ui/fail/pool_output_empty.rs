use tensorbrain::prelude::*;

#[model]
struct Net {
    pool: MaxPool2d<4>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 8, 2, 2]) -> tb![B, 8, 1, 1] {
        self.pool(x)
    }
}

fn main() {}
