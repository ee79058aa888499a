// A residual CNN stack generic over its channel count, used at two widths.
use tensorbrain::prelude::*;

#[model]
pub struct ResBlock<C: Dim> {
    conv1: Conv2d<C, C, 3, 1, 1>,
    bn1: BatchNorm2d<C>,
    conv2: Conv2d<C, C, 3, 1, 1>,
    bn2: BatchNorm2d<C>,
}

#[model]
impl<C: Dim> ResBlock<C> {
    pub fn forward(&self, x: tb![N, C, H, W]) -> tb![N, C, H, W] {
        let h = self.bn1(self.conv1(x)).relu();
        (x + self.bn2(self.conv2(h))).relu()
    }
}

#[model]
pub struct ResNet<C: Dim> {
    stem: Conv2d<1, C, 3, 1, 1>,
    blocks: [ResBlock<C>; 2],
    down: Conv2d<C, { 2 * C }, 3, 2, 1>,
    pool: AdaptiveAvgPool2d<1, 1>,
    flat: Flatten,
    head: Linear<{ 2 * C }, 10>,
}

#[model]
impl<C: Dim> ResNet<C> {
    pub fn forward(&self, x: tb![N, 1, 28, 28]) -> tb![N, 10] {
        let mut h = self.stem(x);
        for block in &self.blocks {
            h = block(h);
        }
        self.head(self.flat(self.pool(self.down(h))))
    }
}

fn main() {
    let narrow = ResNet::<Const<4>>::init(0);
    let wide = ResNet::<Const<8>>::init(0);
    let x = Tensor::randn(&[2, 1, 28, 28], DType::F32);
    assert_eq!(narrow.forward_dyn(&[x.clone()]).unwrap().shape(), &[2, 10]);
    assert_eq!(wide.forward_dyn(&[x]).unwrap().shape(), &[2, 10]);
    assert!(wide.parameters().len() == narrow.parameters().len());
}
