use tensorbrain::prelude::*;

#[model]
enum Net {
    Small,
    Large,
}

fn main() {}
