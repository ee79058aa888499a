//! The two MNIST models of `examples/mnist.rs`, with the same layer names, so the checkpoints
//! it writes (`runs/mlp-mnist/model.safetensors`, `runs/cnn-mnist/model.safetensors`) load
//! into the serving binaries `serve-mlp` and `serve-cnn` as they are.

mod mnist_models;

pub use mnist_models::{Cnn, Mlp};
