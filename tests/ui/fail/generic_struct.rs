use tensorbrain::prelude::*;

// A model's generic parameters are sizes; a field holds a layer.
#[model]
struct Net<L: Dim> {
    layer: L,
}

fn main() {}
