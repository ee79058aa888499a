use tensorbrain::prelude::*;

fn combine<B: Dim>(a: tb![B, 3], b: tb![B, 4]) -> tb![B, 3] {
    a + b
}

fn main() {}
