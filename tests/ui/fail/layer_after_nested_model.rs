use tensorbrain::prelude::*;

#[model]
pub struct Stem {
    fc: Linear<16, 32>,
}

#[model]
impl Stem {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 32] {
        self.fc(x)
    }
}

#[model]
pub struct Net {
    stem: Stem,
    head: Linear<64, 10>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, 16]) -> tb![B, 10] {
        // The stem's signature says [B, 32]; the head wants 64.
        self.head(self.stem(x))
    }
}

fn main() {}
