use tensorbrain::prelude::*;

#[model]
pub struct Net {
    conv: Conv2d<1, 16, 3, 1, 1>,
    fc: Linear<{ 16 * 8 * 8 }, 10>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 1, 8, 8]) -> tb![B, 10] {
        self.fc(self.conv(x))
    }
}

fn main() {}
