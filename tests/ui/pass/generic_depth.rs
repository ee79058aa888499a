// A model generic over its width and its depth: a loop over `[Block<D>; L]` runs the blocks
// in sequence, each checked to keep its input's shape.
use tensorbrain::prelude::*;

#[model]
pub struct Block<D: Dim> {
    norm: LayerNorm<D>,
    fc: Linear<D, D>,
}

#[model]
impl<D: Dim> Block<D> {
    pub fn forward(&self, x: tb![B, D]) -> tb![B, D] {
        x + self.fc(self.norm(x)).gelu()
    }
}

#[model]
pub struct Deep<D: Dim, const L: usize> {
    blocks: [Block<D>; L],
    head: Linear<D, 3>,
}

#[model]
impl<D: Dim, const L: usize> Deep<D, L> {
    pub fn forward(&self, x: tb![B, D]) -> tb![B, 3] {
        let mut h = x;
        for block in &self.blocks {
            h = block(h);
        }
        self.head(h)
    }
}

fn main() {
    let shallow = Deep::<Const<8>, 2>::init(0);
    let deep = Deep::<Const<8>, 6>::init(0);
    assert_eq!(deep.parameters().len(), 6 * 4 + 2);
    assert_eq!(deep.named_parameters()[20].0, "blocks.5.norm.weight");
    let x = Tensor::randn(&[4, 8], DType::F32);
    assert_eq!(shallow.forward_dyn(&[x.clone()]).unwrap().shape(), &[4, 3]);
    assert_eq!(deep.forward_dyn(&[x]).unwrap().shape(), &[4, 3]);
}
