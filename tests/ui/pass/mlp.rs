use tensorbrain::prelude::*;

#[model]
pub struct Mlp {
    fc1: Linear<784, 256>,
    fc2: Linear<256, 10>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 784]) -> tb![B, 10] {
        self.fc2(self.fc1(x).relu())
    }
}

fn main() {
    let net = Mlp::init(0);
    let x: tb![_, 784] = Tensor::randn(&[2, 784], DType::F32).typed().unwrap();
    let y = net.forward(x);
    assert_eq!(y.shape(), &[2, 10]);
}
