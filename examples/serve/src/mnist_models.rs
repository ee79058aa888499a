//! The two MNIST models, one definition for `examples/mnist.rs` (which trains them) and the
//! serving binaries (which load its checkpoints): the layer names are the checkpoint's names.

use tensorbrain::prelude::*;

/// 784-256-10 with ReLU.
#[model]
pub struct Mlp {
    fc1: Linear<784, 256>,
    fc2: Linear<256, 10>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        self.fc2(self.fc1(x.flatten(1)).relu())
    }
}

/// The network of pytorch/examples/mnist (without its final log_softmax).
#[model]
pub struct Cnn {
    conv1: Conv2d<1, 32, 3>,
    conv2: Conv2d<32, 64, 3>,
    pool: MaxPool2d<2>,
    dropout1: Dropout<25>,
    fc1: Linear<9216, 128>,
    dropout2: Dropout<50>,
    fc2: Linear<128, 10>,
}

#[model]
impl Cnn {
    pub fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        let h = self.conv2(self.conv1(x).relu()).relu();
        let h = self.dropout1(self.pool(h)).flatten(1);
        self.fc2(self.dropout2(self.fc1(h).relu()))
    }
}
