use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<8, 8>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 8]) -> tb![B, 8] {
        let mut h = x;
        for layer in &self.fc {
            h = layer(h);
        }
        h
    }
}

fn main() {}
