use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<8, 8>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 8]) -> tb![B, 8] {
        let mut h = x;
        while true {
            h = self.fc(h);
        }
        h
    }
}

fn main() {}
