use tensorbrain::prelude::*;

#[model]
struct Net {
    conv: Conv2d<1, 16, 5>,
    pool: MaxPool2d<2>,
    flat: Flatten,
    fc: Linear<256, 10>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        let h = self.pool(self.conv(x).relu());
        self.fc(self.flat(h))
    }
}

fn main() {}
