use tensorbrain::prelude::*;

#[model]
struct Net {
    conv: Conv2d<3, 16, 5>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 3, 4, 4]) -> tb![B, 16, 1, 1] {
        self.conv(x)
    }
}

fn main() {}
