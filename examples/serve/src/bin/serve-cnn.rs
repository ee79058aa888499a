//! The MNIST CNN as an Open Inference Protocol server:
//!
//!     cargo run --release -p serve-mnist --bin serve-cnn -- --weights runs/cnn-mnist/model.safetensors

tensorbrain_serve::serve_main!(serve_mnist::Cnn);
