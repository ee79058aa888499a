use tensorbrain::prelude::*;

#[model]
pub struct Net {
    // `B` is not a parameter of the struct: a batch size cannot size a layer.
    fc: Linear<B, 10>,
}

fn main() {}
