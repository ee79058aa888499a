use tensorbrain::prelude::*;

#[model]
struct Net {
    fc: Linear<400, 10>,
}

#[model]
impl Net {
    fn forward(&self, x: tb![B, 16, 4, 4]) -> tb![B, 10] {
        let flat = x.reshape([B, 400]);
        self.fc(flat)
    }
}

fn main() {}
