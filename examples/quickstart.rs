//! Quickstart: a two-layer classifier for scikit-learn's 8x8 digits, defined with `#[model]`
//! (shapes checked at compile time, backward generated) and trained with SGD and momentum,
//! the loss computed eagerly on the tape around the model.
//!
//!     cargo run --release --example quickstart [path/to/digits.csv.gz]
//!
//! The digits ship with the repository (`examples/data/digits.csv.gz`, from scikit-learn; see
//! `examples/data/LICENSE-digits.txt`), so this runs from any clone.

use std::process::ExitCode;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use tensorbrain::autograd::no_grad;
use tensorbrain::prelude::*;

/// The copy inside the repository, found wherever the command is run from.
const DEFAULT_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv.gz");

/// A 64-64-10 perceptron. `cargo build` checks every shape in `forward`, and the macro
/// generates its backward pass.
#[model]
pub struct Mlp {
    fc1: Linear<64, 64>,
    fc2: Linear<64, 10>,
}

#[model]
impl Mlp {
    pub fn forward(&self, x: tb![B, 64]) -> tb![B, 10] {
        self.fc2(self.fc1(x).relu())
    }
}

fn accuracy(model: &Mlp, images: &Tensor, labels: &Tensor) -> f64 {
    let images: tb![_, 64] = images.typed().expect("digits are [N, 64]");
    let predicted = no_grad(|| model.forward(images)).argmax(Some(1), false);
    predicted.eq(labels).to_vec::<f64>().iter().sum::<f64>() / labels.numel() as f64
}

fn main() -> ExitCode {
    let path = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_DATA.to_string());
    let (images, labels) = match tensorbrain::data::digits::load(&path) {
        Ok(data) => data,
        Err(e) => {
            eprintln!("error: {e}\n(pass the path to digits.csv.gz as the first argument)");
            return ExitCode::FAILURE;
        }
    };
    manual_seed(0);

    // Shuffle once, then hold out the last 297 images for testing.
    let n = labels.numel();
    let mut order: Vec<i64> = (0..n as i64).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(0));
    let order = Tensor::from_vec(order, &[n]);
    let (images, labels) = (images.index_select(0, &order), labels.index_select(0, &order));
    let n_train = n - 297;
    let (train_x, test_x) = (images.narrow(0, 0, n_train), images.narrow(0, n_train, n - n_train));
    let (train_y, test_y) = (labels.narrow(0, 0, n_train), labels.narrow(0, n_train, n - n_train));
    println!("digits: {n_train} training and {} test images of 8x8 pixels", n - n_train);

    let model = Mlp::init(0);
    println!("{}", model.summary());
    let params = model.parameters();
    let mut velocity: Vec<Tensor> = params.iter().map(|p| p.zeros_like()).collect();
    let (lr, momentum, batch) = (0.1, 0.9, 64);
    for epoch in 1..=20 {
        let mut total = 0.0;
        let mut batches = 0;
        for start in (0..n_train).step_by(batch) {
            let len = batch.min(n_train - start);
            let (x, y) = (train_x.narrow(0, start, len), train_y.narrow(0, start, len));
            let images: tb![_, 64] = x.typed().expect("digits are [N, 64]");
            let loss = cross_entropy(&model.forward(images), &y);
            loss.backward();
            no_grad(|| {
                for (p, v) in params.iter().zip(&mut velocity) {
                    *v = &(&*v * momentum) + &p.grad().expect("every parameter gets a gradient");
                    p.copy_from(&(p - &(&*v * lr)));
                    p.zero_grad();
                }
            });
            total += loss.item::<f32>() as f64;
            batches += 1;
        }
        if epoch == 1 || epoch % 5 == 0 {
            let train_acc = accuracy(&model, &train_x, &train_y);
            println!("epoch {epoch:>2}  loss {:.4}  train accuracy {:.1}%", total / batches as f64, 100.0 * train_acc);
        }
    }
    let test_acc = accuracy(&model, &test_x, &test_y);
    println!("test accuracy {:.1}%", 100.0 * test_acc);
    ExitCode::SUCCESS
}
