//! A 20-layer model, for measuring build times of `#[model]` code:
//!
//!     cargo build --release --example deep20            # clean
//!     touch examples/deep20.rs && cargo build --release --example deep20   # incremental

use tensorbrain::prelude::*;

#[model]
pub struct Deep20 {
    l01: Linear<256, 256>,
    l02: Linear<256, 256>,
    l03: Linear<256, 256>,
    l04: Linear<256, 256>,
    l05: Linear<256, 256>,
    l06: Linear<256, 256>,
    l07: Linear<256, 256>,
    l08: Linear<256, 256>,
    l09: Linear<256, 256>,
    l10: Linear<256, 256>,
    l11: Linear<256, 256>,
    l12: Linear<256, 256>,
    l13: Linear<256, 256>,
    l14: Linear<256, 256>,
    l15: Linear<256, 256>,
    l16: Linear<256, 256>,
    l17: Linear<256, 256>,
    l18: Linear<256, 256>,
    l19: Linear<256, 256>,
    l20: Linear<256, 10>,
}

#[model]
impl Deep20 {
    pub fn forward(&self, x: tb![B, 256]) -> tb![B, 10] {
        let h = self.l01(x).relu();
        let h = self.l02(h).relu();
        let h = self.l03(h).relu();
        let h = self.l04(h).relu();
        let h = self.l05(h).relu();
        let h = self.l06(h).relu();
        let h = self.l07(h).relu();
        let h = self.l08(h).relu();
        let h = self.l09(h).relu();
        let h = self.l10(h).relu();
        let h = self.l11(h).relu();
        let h = self.l12(h).relu();
        let h = self.l13(h).relu();
        let h = self.l14(h).relu();
        let h = self.l15(h).relu();
        let h = self.l16(h).relu();
        let h = self.l17(h).relu();
        let h = self.l18(h).relu();
        let h = self.l19(h).relu();
        self.l20(h)
    }
}

fn main() {
    let net = Deep20::init(0);
    println!("{}", net.summary());
    let x: tb![_, 256] = Tensor::randn(&[8, 256], DType::F32).typed().unwrap();
    let y = net.forward(x);
    println!("output shape {:?}", y.shape());
}
