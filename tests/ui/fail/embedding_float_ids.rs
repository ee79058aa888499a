use tensorbrain::prelude::*;

#[model]
pub struct Net {
    embed: Embedding<100, 16>,
}

#[model]
impl Net {
    pub fn forward(&self, tokens: tb![B, T]) -> tb![B, T, 16] {
        self.embed(tokens)
    }
}

fn main() {}
