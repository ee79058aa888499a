use tensorbrain::prelude::*;

#[model]
pub struct Attention {
    embed: Embedding<100, 16>,
    q: Linear<16, 16, false>,
    k: Linear<16, 16, false>,
    out: Linear<16, 100>,
}

#[model]
impl Attention {
    pub fn forward(&self, tokens: tb![B, T; i64]) -> tb![B, T, 100] {
        let h = self.embed(tokens);
        let scores = self.q(h).matmul(self.k(h).transpose(1, 2)) * 0.25;
        let mixed = scores.softmax(-1).matmul(h);
        self.out(mixed + h)
    }
}

fn main() {
    let net = Attention::init(0);
    let tokens: tb![_, _; i64] = Tensor::randint(0, 100, &[2, 7]).typed().unwrap();
    assert_eq!(net.forward(tokens).shape(), &[2, 7, 100]);
}
