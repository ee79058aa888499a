use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<8, 8>,
}

#[model]
impl Net {
    fn predict(&self) {}
}

fn main() {}
