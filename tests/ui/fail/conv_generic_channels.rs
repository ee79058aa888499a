use tensorbrain::prelude::*;

#[model]
pub struct Down<C: Dim> {
    conv: Conv2d<C, { 2 * C }, 3, 2, 1>,
    again: Conv2d<C, C, 3>,
}

#[model]
impl<C: Dim> Down<C> {
    pub fn forward(&self, x: tb![N, C, H, W]) -> tb![N, C, H, W] {
        self.again(self.conv(x))
    }
}

fn main() {}
