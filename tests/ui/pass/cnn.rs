use tensorbrain::prelude::*;

#[model]
pub struct Cnn {
    conv1: Conv2d<1, 8, 3, 1, 1>,
    pool: MaxPool2d<2>,
    conv2: Conv2d<8, 16, 3>,
    avg: AvgPool2d<2>,
    flat: Flatten,
    drop: Dropout<25>,
    fc: Linear<576, 10>,
}

#[model]
impl Cnn {
    pub fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        let h = self.pool(self.conv1(x).relu()); // [B, 8, 14, 14]
        let h = self.avg(self.conv2(h).gelu()); // [B, 16, 6, 6] = 576 features
        let h = self.flat(h) * 0.5 - 1.0;
        self.fc(self.drop(h)).log_softmax(-1)
    }
}

fn main() {
    let mut net = Cnn::init(0);
    net.eval();
    let x: tb![_, 1, 28, 28] = Tensor::randn(&[2, 1, 28, 28], DType::F32).typed().unwrap();
    assert_eq!(net.forward(x).shape(), &[2, 10]);
}
