use tensorbrain::prelude::*;

#[model]
pub struct Block<D: Dim> {
    fc: Linear<D, D>,
}

#[model]
impl<D: Dim> Block<D> {
    pub fn forward(&self, x: tb![B, D]) -> tb![B, D] {
        self.fc(x).relu()
    }
}

#[model]
pub struct Deep<D: Dim, const L: usize> {
    blocks: [Block<D>; L],
}

#[model]
impl<D: Dim, const L: usize> Deep<D, L> {
    pub fn forward(&self, x: tb![B, D]) -> tb![B, D] {
        let mut h = x;
        for block in &self.blocks {
            h = h + block(h);
        }
        h
    }
}

fn main() {}
