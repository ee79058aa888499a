use tensorbrain::prelude::*;

#[model]
pub struct Deep<const L: usize> {
    layers: [Linear<8, 8>; L],
}

fn main() {}
