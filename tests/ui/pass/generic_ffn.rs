// A model generic over its width: `Linear<D, {4 * D}>` on stable Rust. The macro writes the
// sizes as types (`Prod<Const<4>, D>`); the same definition is used at two widths, nested in
// a generic block, and instantiated directly with a number type.
use tensorbrain::prelude::*;

#[model]
pub struct Ffn<D: Dim> {
    up: Linear<D, { 4 * D }>,
    down: Linear<{ D * 4 }, D>,
}

#[model]
impl<D: Dim> Ffn<D> {
    pub fn forward(&self, x: tb![B, T, D]) -> tb![B, T, D] {
        self.down(self.up(x).gelu())
    }
}

// Generic over a width, holding an Ffn at twice that width: sizes compose symbolically.
#[model]
pub struct Wide<C: Dim> {
    inp: Linear<C, { 2 * C }>,
    ffn: Ffn<{ 2 * C }>,
    out: Linear<{ C + C }, C>,
}

#[model]
impl<C: Dim> Wide<C> {
    pub fn forward(&self, x: tb![B, T, C]) -> tb![B, T, C] {
        self.out(self.ffn(self.inp(x)))
    }
}

#[model]
pub struct Net {
    small: Ffn<16>,
    big: Ffn<32>,
    lift: Linear<16, 32>,
    wide: Wide<32>,
}

#[model]
impl Net {
    pub fn forward(&self, x: tb![B, T, 16]) -> tb![B, T, 32] {
        let h = self.lift(self.small(x));
        self.wide(self.big(h))
    }
}

fn main() {
    let net = Net::init(0);
    assert_eq!(net.big.up.weight.shape(), &[128, 32]);
    assert_eq!(net.wide.ffn.up.weight.shape(), &[256, 64]);
    let x: tb![_, _, 16] = Tensor::randn(&[2, 5, 16], DType::F32).typed().unwrap();
    assert_eq!(net.forward(x).shape(), &[2, 5, 32]);
    // Instantiated from plain Rust, with typenum's numbers or `Const`.
    let f = Ffn::<tensorbrain::typenum::U8>::init(1);
    assert_eq!(f.up.weight.shape(), &[32, 8]);
    let g = Ffn::<Const<4>>::init(1);
    let y = g.forward_dyn(&[Tensor::randn(&[1, 3, 4], DType::F32)]).unwrap();
    assert_eq!(y.shape(), &[1, 3, 4]);
    assert!(g.forward_dyn(&[Tensor::randn(&[1, 3, 5], DType::F32)]).is_err());
}
