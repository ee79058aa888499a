use tensorbrain::prelude::*;

#[model]
struct Net {
    conv: Conv2d<1, 8, 3>,
    bn: BatchNorm2d<16>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 8, 26, 26] {
        self.bn(self.conv(x))
    }
}

fn main() {}
