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
    tokens: Tokens,
}

#[model]
impl Net {
    // Float "ids" into a model that takes i64 ids.
    pub fn forward(&self, x: tb![B, T]) -> tb![B, T, 16] {
        self.tokens(x)
    }
}

fn main() {}
