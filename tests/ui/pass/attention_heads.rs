// Multi-head self-attention on [B, T, D] with symbolic B and T: the head split reshapes
// [B, T, D] to [B, T, H, D / H] and back. The macro checks element counts as polynomials
// in B, T, D and H; D divisible by H is required of every instantiation.
use tensorbrain::prelude::*;

#[model]
pub struct SelfAttention<D: Dim, H: Dim> {
    q: Linear<D, D>,
    k: Linear<D, D>,
    v: Linear<D, D>,
    out: Linear<D, D>,
}

#[model]
impl<D: Dim, H: Dim> SelfAttention<D, H> {
    fn heads(&self, x: tb![B, T, D]) -> tb![B, H, T, { D / H }] {
        x.reshape([B, T, H, D / H]).transpose(1, 2)
    }

    pub fn forward(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        let q = self.heads(self.q(x));
        let k = self.heads(self.k(x));
        let v = self.heads(self.v(x));
        let scores = q.matmul(k.transpose(2, 3)) * 0.25;
        let mixed = scores.softmax(-1).matmul(v);
        self.out(mixed.transpose(1, 2).reshape([B, T, D]))
    }
}

#[model]
pub struct Literal {
    attn: SelfAttention<64, 4>,
    norm: LayerNorm<64>,
}

#[model]
impl Literal {
    pub fn forward(&self, x: tb![B, T, 64]) -> tb![B, T, 64] {
        // The same split written with numbers and -1.
        let h = x.reshape([B, T, 4, 16]).transpose(1, 2);
        let back = h.transpose(1, 2).reshape([B, T, -1]);
        self.norm(back + self.attn(x))
    }
}

fn main() {
    let net = Literal::init(0);
    let x: tb![_, _, 64] = Tensor::randn(&[2, 7, 64], DType::F32).typed().unwrap();
    assert_eq!(net.forward(x).shape(), &[2, 7, 64]);
}
