use tensorbrain::prelude::*;

type Images = tb![B, 3, 32, 32; f8];

fn main() {}
