use tensorbrain::prelude::*;

#[model]
struct Net {
    a: Linear<10, 3>,
    b: Linear<10, 4>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 10]) -> tb![B, 3] {
        self.a(x) + self.b(x)
    }
}

fn main() {}
