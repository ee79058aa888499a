//! The MNIST MLP as an Open Inference Protocol server:
//!
//!     cargo run --release -p serve-mnist --bin serve-mlp -- --weights runs/mlp-mnist/model.safetensors

tensorbrain_serve::serve_main!(serve_mnist::Mlp);
