use tensorbrain::prelude::*;

#[model]
struct Net {
    conv: Conv2d<1, 8, 3>,
    bn: BatchNorm2d<8>,
    pool: AdaptiveAvgPool2d<4, 4>,
    flat: Flatten,
    fc: Linear<64, 10>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        let h = self.pool(self.bn(self.conv(x)).relu());
        self.fc(self.flat(h))
    }
}

fn main() {}
