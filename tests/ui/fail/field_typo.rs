use tensorbrain::prelude::*;

#[model]
pub struct Net {
    fc_1: Linear<16, 16>,
    fc_3: Linear<16, 4>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 4] {
        self.fc3(self.fc_1(x))
    }
}

fn main() {}
