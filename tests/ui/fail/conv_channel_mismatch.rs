use tensorbrain::prelude::*;

#[model]
struct Net {
    conv: Conv2d<3, 16, 3>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 16, 26, 26] {
        self.conv(x)
    }
}

fn main() {}
