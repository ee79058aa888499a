//! Checkpoints cross between PyTorch and TensorBrain through safetensors with the same tensor
//! names. `loads_a_pytorch_checkpoint` reads fixtures that `tests/interop/interop.py` wrote
//! with PyTorch; the script also runs `writes_a_checkpoint_for_pytorch` (ignored here: it
//! only writes files) and checks TensorBrain's outputs in PyTorch.

use std::path::PathBuf;

use tensorbrain::checkpoint::load_safetensors;
use tensorbrain::prelude::*;

/// A small CNN with every kind of stored tensor that crosses over: conv and linear weights,
/// batch-norm parameters and buffers (`running_mean`, `running_var`, `num_batches_tracked`);
/// the same field names as `SmallCnn` in interop.py.
#[model]
pub struct SmallCnn {
    conv1: Conv2d<1, 4, 3>,
    bn1: BatchNorm2d<4>,
    pool: MaxPool2d<2>,
    fc1: Linear<676, 16>,
    fc2: Linear<16, 10>,
}

#[model]
impl SmallCnn {
    pub fn forward(&self, x: tb![B, 1, 28, 28]) -> tb![B, 10] {
        let h = self.pool(self.bn1(self.conv1(x)).relu()).flatten(1);
        self.fc2(self.fc1(h).tanh())
    }
}

/// The fixture directory, from the crate root under cargo, else from the current directory
/// (a test binary run from the repository root on another machine).
fn fixtures() -> PathBuf {
    let rel = PathBuf::from("tests/interop/fixtures");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if root.join(&rel).is_dir() {
        root.join(rel)
    } else {
        rel
    }
}

#[test]
fn loads_a_pytorch_checkpoint() {
    let dir = fixtures();
    let mut net = SmallCnn::init(0);
    net.load(dir.join("torch_small_cnn.safetensors")).unwrap();
    net.eval();
    let io = load_safetensors(&dir.join("torch_small_cnn_io.safetensors")).unwrap();
    let got = net.forward_dyn(&[io["input"].clone()]).unwrap().to_vec::<f32>();
    let want = io["output"].to_vec::<f32>();
    assert_eq!(got.len(), want.len());
    // f32 with a different summation order than PyTorch's conv and GEMM.
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / (1e-5 + 1e-4 * b.abs())).fold(0.0f32, f32::max);
    println!("worst error / (atol 1e-5 + rtol 1e-4 |want|): {worst:.3}");
    assert!(worst <= 1.0, "outputs differ from PyTorch's");
}

#[test]
#[ignore = "run by tests/interop/interop.py, which checks the files in PyTorch"]
fn writes_a_checkpoint_for_pytorch() {
    let out = PathBuf::from(std::env::var("TB_INTEROP_OUT").expect("TB_INTEROP_OUT: where to write"));
    std::fs::create_dir_all(&out).unwrap();
    let mut net = SmallCnn::init(42);
    let mut gen = tensorbrain::Generator::new(3);
    // Move the batch-norm running statistics away from their initial values.
    for _ in 0..3 {
        let batch = Tensor::randn_with(&[8, 1, 28, 28], DType::F32, &mut gen).mul_scalar(2.0).add_scalar(0.5);
        no_grad(|| net.forward_dyn(&[batch])).unwrap();
    }
    let moved = net.state_dict().into_iter().find(|(n, _)| n == "bn1.running_mean").unwrap().1;
    assert!(moved.to_vec::<f32>().iter().any(|&v| v != 0.0), "training-mode forwards update the running mean");
    net.eval();
    net.save(out.join("tb_small_cnn.safetensors")).unwrap();
    let input = Tensor::randn_with(&[5, 1, 28, 28], DType::F32, &mut gen);
    let output = net.forward_dyn(std::slice::from_ref(&input)).unwrap();
    tensorbrain::checkpoint::save_safetensors(&out.join("tb_small_cnn_io.safetensors"), &[("input".into(), input), ("output".into(), output)]).unwrap();
}
