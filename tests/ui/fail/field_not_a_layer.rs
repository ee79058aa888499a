use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<8, 8>,
    steps: usize,
}

fn main() {}
