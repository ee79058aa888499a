use tensorbrain::prelude::*;

#[model]
struct Net<L> {
    layer: L,
}

fn main() {}
