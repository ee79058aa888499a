use tensorbrain::prelude::*;

#[model]
pub struct Net<K: Dim> {
    conv: Conv2d<3, 16, K>,
}

fn main() {}
