use tensorbrain::prelude::*;

#[model]
pub struct Tokens {
    embed: Embedding<100, 16>,
}

#[model]
impl Tokens {
    pub fn forward(&self, ids: tb![B, T; i64]) -> tb![B, T, 16] {
        self.embed(ids)
    }
}

#[model]
pub struct Net {
    fc: Linear<8, 8>,
    tokens: Tokens,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, T, 8]) -> tb![B, T, 8, 16] {
        self.tokens(self.fc(x))
    }
}

fn main() {}
