//! Tensors on a GPU against the same ops on the CPU.
//!
//! The tests that need a GPU are `#[ignore = "needs a CUDA device"]`; run them on a machine with
//! an NVIDIA driver with
//! `cargo test -p tensorbrain --features cuda --test cuda_tensors -- --ignored --test-threads=1`
//! (one thread: `tf32_is_opt_in` flips the process-wide TF32 switch, which would change the
//! matmuls of tests running beside it)
//! (and `TENSORBRAIN_NVRTC_LIB` pointing at libnvrtc.so.12 when NVRTC is not on the loader
//! path; docs/cuda.md). None of them has run on a GPU yet.
//!
//! The CPU results are the references: the CPU ops are themselves checked against PyTorch
//! fixtures. f32 results agree to 1e-5 relative (different summation orders and libm), f64 to
//! 1e-12; TF32 is never enabled, so matmuls are full f32.
#![cfg(feature = "cuda")]

use tensorbrain::optim::{Adam, AdamOptions, Optimizer, Sgd, SgdOptions};
use tensorbrain::prelude::*;
use tensorbrain::Generator;
use tensorbrain::ops::MaxPoolOptions;

const GPU: Device = Device::Cuda(0);

/// On a machine without a driver (every CI machine) a tensor cannot move to a GPU, and the
/// error names the missing library; nothing panics.
#[test]
fn without_a_driver_moving_to_a_gpu_is_a_clear_error() {
    if tensorbrain::cuda::is_available() {
        return; // covered by the GPU tests below
    }
    let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    let err = x.try_to_device(GPU).unwrap_err().to_string();
    assert!(err.starts_with("to_device: device cuda:0 is not available: no CUDA driver found (libcuda.so.1)"), "{err}");
    let stats = tensorbrain::cuda::memory_stats(0).unwrap_err().to_string();
    assert!(stats.contains("no CUDA driver found"), "{stats}");
    assert_eq!(tensorbrain::cuda::device_count(), 0);
    // A model's parameters: the same error, and the model is left on the CPU.
    let mut lin = tensorbrain::nn::runtime::DynLinear::new(3, 2, true, &mut Generator::new(0));
    assert!(lin.to_device(GPU).is_err());
    assert!(lin.parameters().iter().all(|p| p.device() == Device::Cpu));
}

fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    Tensor::randn_with(shape, dtype, &mut Generator::new(seed))
}

fn assert_close(gpu: &Tensor, cpu: &Tensor, what: &str) {
    assert_eq!(gpu.device(), GPU, "{what}: result is not on the GPU");
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shapes");
    assert_eq!(gpu.dtype(), cpu.dtype(), "{what}: dtypes");
    let rtol = if cpu.dtype() == DType::F64 { 1e-12 } else { 1e-5 };
    let (g, c) = (gpu.to_vec::<f64>(), cpu.to_vec::<f64>());
    for (i, (a, b)) in g.iter().zip(&c).enumerate() {
        if a.is_nan() && b.is_nan() {
            continue;
        }
        assert!((a - b).abs() <= rtol * (1.0 + b.abs()), "{what}[{i}]: gpu {a} vs cpu {b}");
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn tensors_round_trip_in_every_dtype_and_layout() {
    let x = Tensor::arange(0.0, 24.0, 1.0, DType::F32).reshape(&[2, 3, 4]);
    for t in [x.clone(), x.transpose(0, 2), x.slice(2, 1, 4, 2), x.to_dtype(DType::F64), x.to_dtype(DType::I64), x.to_dtype(DType::F16), x.gt(&Tensor::scalar(5.0f32))] {
        let g = t.to_device(GPU);
        assert_eq!(g.device(), GPU);
        assert_eq!(g.shape(), t.shape());
        assert_eq!(g.dtype(), t.dtype());
        let back = g.to_device(Device::Cpu);
        assert_eq!(back.device(), Device::Cpu);
        assert_eq!(back.to_vec::<f64>(), t.to_vec::<f64>(), "{:?} {:?}", t.dtype(), t.strides());
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn elementwise_ops_match_the_cpu() {
    for dtype in [DType::F32, DType::F64] {
        let x = randn(&[7, 33], dtype, 1);
        let pos = x.abs().add_scalar(0.1);
        let (gx, gpos) = (x.to_device(GPU), pos.to_device(GPU));
        let unary: Vec<(&str, fn(&Tensor) -> Tensor)> = vec![
            ("neg", |t| t.neg()),
            ("exp", |t| t.exp()),
            ("tanh", |t| t.tanh()),
            ("sigmoid", |t| t.sigmoid()),
            ("relu", |t| t.relu()),
            ("gelu", |t| t.gelu()),
            ("silu", |t| t.silu()),
            ("abs", |t| t.abs()),
            ("square", |t| t.square()),
            ("erf", |t| t.erf()),
            ("add_scalar", |t| t.add_scalar(0.5)),
            ("mul_scalar", |t| t.mul_scalar(-3.0)),
            ("clamp", |t| t.clamp(Some(-0.5), Some(0.25))),
            ("leaky_relu", |t| t.leaky_relu(0.1)),
        ];
        for (name, f) in &unary {
            assert_close(&f(&gx), &f(&x), name);
            // Through a transposed view as well.
            assert_close(&f(&gx.transpose(0, 1)), &f(&x.transpose(0, 1)), name);
        }
        for (name, f) in [("log", Tensor::log as fn(&Tensor) -> Tensor), ("sqrt", Tensor::sqrt), ("reciprocal", Tensor::reciprocal)] {
            assert_close(&f(&gpos), &f(&pos), name);
        }
        assert_close(&gpos.pow_scalar(1.5), &pos.pow_scalar(1.5), "pow_scalar");
        // Broadcasting binary ops: [7, 33] with [33] and [7, 1].
        let (row, col) = (randn(&[33], dtype, 2), randn(&[7, 1], dtype, 3).abs().add_scalar(0.5));
        let (grow, gcol) = (row.to_device(GPU), col.to_device(GPU));
        assert_close(&gx.add(&grow), &x.add(&row), "add");
        assert_close(&gx.sub(&gcol), &x.sub(&col), "sub");
        assert_close(&gx.mul(&grow), &x.mul(&row), "mul");
        assert_close(&gx.div(&gcol), &x.div(&col), "div");
        assert_close(&gx.maximum(&grow), &x.maximum(&row), "maximum");
        // Comparisons give bool tensors on the GPU; where selects.
        let mask = gx.gt(&grow);
        assert_eq!((mask.device(), mask.dtype()), (GPU, DType::Bool));
        assert_eq!(mask.to_vec::<bool>(), x.gt(&row).to_vec::<bool>());
        assert_close(&Tensor::where_cond(&mask, &gx, &gx.mul_scalar(0.0)), &Tensor::where_cond(&x.gt(&row), &x, &x.mul_scalar(0.0)), "where");
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn matmul_matches_the_cpu_for_every_layout() {
    let cases: Vec<(Tensor, Tensor, &str)> = vec![
        (randn(&[5, 7], DType::F32, 1), randn(&[7, 3], DType::F32, 2), "2-D"),
        (randn(&[7, 5], DType::F32, 1).t(), randn(&[3, 7], DType::F32, 2).t(), "transposed operands"),
        (randn(&[2, 3, 4, 5], DType::F32, 3), randn(&[2, 3, 5, 6], DType::F32, 4), "batched"),
        (randn(&[2, 1, 4, 5], DType::F32, 3), randn(&[3, 5, 6], DType::F32, 4), "broadcast batch"),
        (randn(&[3, 4, 5], DType::F32, 5).permute(&[1, 0, 2]), randn(&[5, 2], DType::F32, 6), "permuted batch"),
        (randn(&[5], DType::F64, 7), randn(&[5, 3], DType::F64, 8), "vector · matrix"),
        (randn(&[4, 5], DType::F64, 7), randn(&[5], DType::F64, 8), "matrix · vector"),
        (randn(&[5], DType::F64, 7), randn(&[5], DType::F64, 8), "dot"),
        (randn(&[64, 784], DType::F32, 9), randn(&[256, 784], DType::F32, 10).t(), "MLP layer x·Wᵀ"),
        (Tensor::zeros(&[3, 0], DType::F32), Tensor::zeros(&[0, 4], DType::F32), "empty contraction"),
    ];
    for (a, b, what) in cases {
        let got = a.to_device(GPU).matmul(&b.to_device(GPU));
        assert_close(&got, &a.matmul(&b), what);
    }
}

#[test]
#[ignore = "needs a CUDA device"]
fn reductions_and_softmax_match_the_cpu() {
    for dtype in [DType::F32, DType::F64] {
        let x = randn(&[4, 5, 6], dtype, 11);
        let g = x.to_device(GPU);
        assert_close(&g.sum(&[], false), &x.sum(&[], false), "sum all");
        assert_close(&g.sum(&[1], true), &x.sum(&[1], true), "sum dim 1");
        assert_close(&g.sum(&[0, 2], false), &x.sum(&[0, 2], false), "sum dims 0, 2");
        assert_close(&g.mean(&[2], false), &x.mean(&[2], false), "mean");
        assert_close(&g.max(&[1], false), &x.max(&[1], false), "max");
        for d in [2isize, 1] {
            assert_close(&g.softmax(d), &x.softmax(d), "softmax");
            assert_close(&g.log_softmax(d), &x.log_softmax(d), "log_softmax");
        }
    }
}

/// A two-layer classifier's loss and every gradient, computed on the GPU by the same tape,
/// equal the CPU's.
#[test]
#[ignore = "needs a CUDA device"]
fn an_mlp_backward_on_the_gpu_matches_the_cpu() {
    let x = randn(&[16, 20], DType::F32, 1);
    let y = Tensor::from_vec((0..16).map(|i| i % 5).collect::<Vec<i64>>(), &[16]);
    let params: Vec<Tensor> = [randn(&[32, 20], DType::F32, 2), randn(&[32], DType::F32, 3), randn(&[5, 32], DType::F32, 4), randn(&[5], DType::F32, 5)]
        .into_iter()
        .map(|p| p.mul_scalar(0.2))
        .collect();
    let run = |device: Device| -> (Tensor, Vec<Tensor>) {
        let ps: Vec<Tensor> = params.iter().map(|p| p.to_device(device).detach().set_requires_grad(true)).collect();
        let h = x.to_device(device).linear(&ps[0], Some(&ps[1])).relu();
        let logits = h.linear(&ps[2], Some(&ps[3]));
        let loss = cross_entropy(&logits, &y.to_device(device));
        loss.backward();
        (loss, ps.iter().map(|p| p.grad().expect("a gradient")).collect())
    };
    let (cpu_loss, cpu_grads) = run(Device::Cpu);
    let (gpu_loss, gpu_grads) = run(GPU);
    assert_close(&gpu_loss, &cpu_loss, "loss");
    for (i, (g, c)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        assert_close(g, c, &format!("grad {i}"));
    }
}

/// SGD with momentum and Adam take the same steps on a GPU parameter as on a CPU one.
#[test]
#[ignore = "needs a CUDA device"]
fn optimizers_step_gpu_parameters_like_cpu_ones() {
    for adam in [false, true] {
        let w0 = randn(&[8, 3], DType::F32, 1);
        let x = randn(&[10, 8], DType::F32, 2);
        let run = |device: Device| -> Tensor {
            let w = w0.to_device(device).detach().set_requires_grad(true);
            let mut opt: Box<dyn Optimizer> = if adam {
                Box::new(Adam::new(vec![w.clone()], AdamOptions { lr: 1e-2, ..Default::default() }).unwrap())
            } else {
                Box::new(Sgd::new(vec![w.clone()], SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() }).unwrap())
            };
            for _ in 0..3 {
                opt.zero_grad();
                x.to_device(device).matmul(&w).square().mean(&[], false).backward();
                opt.step().unwrap();
            }
            w
        };
        let (cpu, gpu) = (run(Device::Cpu), run(GPU));
        assert_close(&gpu, &cpu, if adam { "adam" } else { "sgd" });
    }
}

/// An op without a CUDA kernel is an error naming the op and the device, not a crash, and
/// mixing devices is an error naming both.
#[test]
#[ignore = "needs a CUDA device"]
fn unsupported_ops_and_mixed_devices_are_clear_errors() {
    let x = randn(&[1, 1, 5, 5], DType::F32, 1).to_device(GPU);
    // Dilated max pooling has no CUDA kernel yet.
    let err = x.try_max_pool2d_with(&MaxPoolOptions::new([2, 2]).dilation([2, 2])).unwrap_err().to_string();
    assert!(err.contains("max_pool2d") && err.contains("cuda:0") && err.contains("dilation"), "{err}");
    let err = x.try_add(&randn(&[1, 1, 5, 5], DType::F32, 3)).unwrap_err().to_string();
    assert!(err.contains("different devices") && err.contains("cuda:0") && err.contains("cpu"), "{err}");
}

#[test]
#[ignore = "needs a CUDA device"]
fn the_caching_allocator_reuses_freed_memory_and_reports_it() {
    let before = tensorbrain::cuda::memory_stats(0).unwrap();
    let a = Tensor::zeros(&[1024, 1024], DType::F32).to_device(GPU);
    let during = tensorbrain::cuda::memory_stats(0).unwrap();
    assert!(during.allocated >= before.allocated + 4 << 20, "{before:?} -> {during:?}");
    drop(a);
    let after = tensorbrain::cuda::memory_stats(0).unwrap();
    assert_eq!(after.allocated, before.allocated);
    assert!(after.reserved >= during.allocated - before.allocated, "freed memory stays cached");
    // The same size again comes from the cache.
    let _b = Tensor::zeros(&[1024, 1024], DType::F32).to_device(GPU);
    assert!(tensorbrain::cuda::memory_stats(0).unwrap().cache_hits > after.cache_hits);
    tensorbrain::cuda::empty_cache(0).unwrap();
}

/// Runs `f` on CPU copies and on GPU copies of `inputs` (as leaves that require gradients),
/// backpropagates `sum(out * r)` for a fixed random `r`, and checks the outputs and every
/// input gradient agree.
fn check_forward_and_grads(what: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Tensor) {
    let run = |device: Device| -> (Tensor, Vec<Tensor>) {
        let xs: Vec<Tensor> = inputs.iter().map(|t| t.to_device(device).detach().set_requires_grad(true)).collect();
        let out = f(&xs);
        let r = randn(out.shape(), out.dtype(), 99).to_device(device);
        out.mul(&r).sum_all().backward();
        (out, xs.iter().map(|x| x.grad().expect("a gradient")).collect())
    };
    let (cpu, cpu_grads) = run(Device::Cpu);
    let (gpu, gpu_grads) = run(GPU);
    assert_close(&gpu, &cpu, what);
    for (i, (g, c)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        assert_close(g, c, &format!("{what}: grad of input {i}"));
    }
}

/// conv2d forward and both backwards (im2col + cuBLAS, col2im) equal the CPU's, for padding,
/// stride, dilation, groups and bias, in f32 and f64; and conv_transpose2d, which is built on
/// the input gradient.
#[test]
#[ignore = "needs a CUDA device"]
fn conv2d_and_its_gradients_match_the_cpu() {
    // (x shape, w shape, stride, padding, dilation, groups)
    let cases: [([usize; 4], [usize; 4], [usize; 2], [usize; 2], [usize; 2], usize); 4] = [
        ([2, 3, 9, 8], [4, 3, 3, 3], [1, 1], [1, 1], [1, 1], 1),
        ([3, 4, 11, 10], [6, 2, 3, 2], [2, 1], [1, 0], [1, 2], 2),
        ([1, 6, 7, 7], [6, 1, 5, 5], [2, 2], [2, 2], [1, 1], 6),
        ([4, 1, 28, 28], [8, 1, 5, 5], [1, 1], [0, 0], [1, 1], 1),
    ];
    for dtype in [DType::F32, DType::F64] {
        for (k, (xs, ws, stride, padding, dilation, groups)) in cases.into_iter().enumerate() {
            let inputs = [randn(&xs, dtype, 10 + k as u64), randn(&ws, dtype, 20 + k as u64).mul_scalar(0.3), randn(&[ws[0]], dtype, 30 + k as u64)];
            check_forward_and_grads(&format!("conv2d case {k} {dtype:?}"), &inputs, |t| t[0].conv2d(&t[1], Some(&t[2]), stride, padding, dilation, groups));
        }
        // Transposed convolution is conv2d's input gradient: [N, C_in, H, W] by [C_in, C_out/G, KH, KW].
        let inputs = [randn(&[2, 4, 5, 6], dtype, 40), randn(&[4, 3, 3, 3], dtype, 41).mul_scalar(0.3), randn(&[6], dtype, 42)];
        check_forward_and_grads(&format!("conv_transpose2d {dtype:?}"), &inputs, |t| t[0].conv_transpose2d(&t[1], Some(&t[2]), [2, 2], [1, 1], [1, 0], 2, [1, 1]));
    }
}

/// The conv backward ops are recorded on the device too: a gradient penalty (double backward)
/// equals the CPU's.
#[test]
#[ignore = "needs a CUDA device"]
fn conv2d_double_backward_matches_the_cpu() {
    let (x0, w0) = (randn(&[2, 2, 6, 6], DType::F64, 1), randn(&[3, 2, 3, 3], DType::F64, 2));
    let run = |device: Device| -> Vec<Tensor> {
        let x = x0.to_device(device).detach().set_requires_grad(true);
        let w = w0.to_device(device).detach().set_requires_grad(true);
        let y = x.conv2d(&w, None, [1, 1], [1, 1], [1, 1], 1).tanh().sum_all();
        let gx = tensorbrain::autograd::grad(&y, &[x.clone()], None, true).unwrap()[0].clone().unwrap();
        gx.square().sum_all().backward();
        vec![x.grad().unwrap(), w.grad().unwrap()]
    };
    let (cpu, gpu) = (run(Device::Cpu), run(GPU));
    assert_close(&gpu[0], &cpu[0], "d(|dy/dx|^2)/dx");
    assert_close(&gpu[1], &cpu[1], "d(|dy/dx|^2)/dw");
}

/// Max and average pooling, forward and backward, equal the CPU's, with padding, overlapping
/// windows, count_include_pad both ways, ties and NaN.
#[test]
#[ignore = "needs a CUDA device"]
fn pooling_and_its_gradients_match_the_cpu() {
    for dtype in [DType::F32, DType::F64] {
        let x = randn(&[2, 3, 9, 10], dtype, 1);
        check_forward_and_grads("max_pool2d 2x2", &[x.clone()], |t| t[0].max_pool2d([2, 2], [2, 2], [0, 0]));
        check_forward_and_grads("max_pool2d 3x3 s2 p1", &[x.clone()], |t| t[0].max_pool2d([3, 3], [2, 2], [1, 1]));
        for include in [false, true] {
            check_forward_and_grads(&format!("avg_pool2d 3x2 s2,1 p1 include_pad={include}"), &[x.clone()], |t| t[0].avg_pool2d([3, 2], [2, 1], [1, 1], include));
        }
        // Ties go to the first maximum in the window and NaN propagates, as on the CPU.
        let mut v = vec![1.0f64; 16];
        v[5] = f64::NAN;
        let tied = Tensor::from_vec(v, &[1, 1, 4, 4]).to_dtype(dtype);
        check_forward_and_grads("max_pool2d ties and NaN", &[tied], |t| t[0].max_pool2d([2, 2], [1, 1], [0, 0]));
    }
    // return_indices: the same indices on both devices, on the device of the input.
    let x = randn(&[1, 2, 6, 6], DType::F32, 5);
    let (_, cpu_idx) = x.try_max_pool2d_with(&MaxPoolOptions::new([3, 3]).stride([2, 2]).padding([1, 1])).unwrap();
    let (_, gpu_idx) = x.to_device(GPU).try_max_pool2d_with(&MaxPoolOptions::new([3, 3]).stride([2, 2]).padding([1, 1])).unwrap();
    assert_eq!(gpu_idx.device(), GPU);
    assert_eq!(gpu_idx.to_vec::<i64>(), cpu_idx.to_vec::<i64>());
}

/// A small CNN: convolution, batch norm (running statistics updated in training), ReLU, max
/// pooling and a linear head.
#[model]
struct SmallCnn {
    conv: Conv2d<1, 4, 3, 1, 1>,
    bn: BatchNorm2d<4>,
    pool: MaxPool2d<2>,
    fc: Linear<64, 3>,
}

#[model]
impl SmallCnn {
    fn forward(&self, x: tb![B, 1, 8, 8]) -> tb![B, 3] {
        self.fc(self.pool(self.bn(self.conv(x)).relu()).flatten(1))
    }
}

/// Three SGD steps of the CNN from the same initialisation: the GPU's parameters and batch-norm
/// running statistics (the state dict) equal the CPU's.
#[test]
#[ignore = "needs a CUDA device"]
fn a_cnn_with_batch_norm_trains_on_the_gpu_like_on_the_cpu() {
    let x = randn(&[6, 1, 8, 8], DType::F32, 1);
    let y = Tensor::from_vec((0..6).map(|i| i % 3).collect::<Vec<i64>>(), &[6]);
    let run = |device: Device| -> Vec<(String, Tensor)> {
        let mut model = SmallCnn::init(7);
        model.train();
        model.to_device(device).unwrap();
        let mut opt = Sgd::new(model.parameters(), SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() }).unwrap();
        let (x, y) = (x.to_device(device), y.to_device(device));
        for _ in 0..3 {
            opt.zero_grad();
            cross_entropy(&model.forward_dyn(std::slice::from_ref(&x)).unwrap(), &y).backward();
            opt.step().unwrap();
        }
        model.state_dict()
    };
    let (cpu, gpu) = (run(Device::Cpu), run(GPU));
    assert_eq!(cpu.len(), gpu.len());
    for ((name, c), (_, g)) in cpu.iter().zip(&gpu) {
        // Three steps compound f32 differences in summation order; 1e-4 relative.
        let (gv, cv) = (g.to_vec::<f64>(), c.to_vec::<f64>());
        for (i, (a, b)) in gv.iter().zip(&cv).enumerate() {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{name}[{i}]: gpu {a} vs cpu {b}");
        }
    }
}

/// index_select in every element width (f64, f32, f16, bool/u8, i64) and index_add (bit for
/// bit: the GPU adds in the CPU's order), masked_fill, a strided copy of an integer view, and an
/// out-of-range index that is the CPU's error.
#[test]
#[ignore = "needs a CUDA device"]
fn indexing_matches_the_cpu_in_every_dtype() {
    let idx = Tensor::from_vec(vec![3i64, 0, 3, 1, 3], &[5]);
    let base = randn(&[2, 4, 3], DType::F32, 1);
    for dtype in [DType::F64, DType::F32, DType::F16, DType::I64, DType::U8, DType::Bool] {
        let x = base.mul_scalar(3.0).to_dtype(dtype);
        for dim in [0isize, 1, 2] {
            let i = Tensor::from_vec(vec![1i64, 0, 1], &[3]);
            let i = if dim == 1 { idx.clone() } else { i };
            let cpu = x.index_select(dim, &i);
            let gpu = x.to_device(GPU).index_select(dim, &i.to_device(GPU));
            assert_eq!(gpu.device(), GPU);
            assert_eq!(gpu.to_vec::<f64>(), cpu.to_vec::<f64>(), "index_select {dtype:?} dim {dim}");
        }
    }
    for dtype in [DType::F32, DType::F64] {
        let x = randn(&[2, 4, 3], dtype, 2).mul_scalar(1e6);
        let src = randn(&[2, 5, 3], dtype, 3);
        let cpu = x.index_add(1, &idx, &src);
        let gpu = x.to_device(GPU).index_add(1, &idx.to_device(GPU), &src.to_device(GPU));
        assert_eq!(gpu.to_vec::<f64>(), cpu.to_vec::<f64>(), "index_add {dtype:?} (same order of addition)");
        check_forward_and_grads(&format!("index_select grad {dtype:?}"), &[x.clone()], |t| t[0].index_select(1, &idx.to_device(t[0].device())));
    }
    // masked_fill (an attention mask's op) through select, with its gradient.
    let mask = Tensor::from_vec(vec![true, false, false, true, false, true], &[1, 2, 3]);
    check_forward_and_grads("masked_fill", &[base.clone()], |t| t[0].masked_fill(&mask.to_device(t[0].device()), -1e9));
    // A transposed i64 view is copied contiguous on the device (the strided byte copy).
    let ints = Tensor::arange(0.0, 12.0, 1.0, DType::I64).reshape(&[3, 4]);
    assert_eq!(ints.to_device(GPU).t().contiguous().to_vec::<i64>(), ints.t().contiguous().to_vec::<i64>());
    let err = base.to_device(GPU).try_index_select(1, &Tensor::from_vec(vec![4i64], &[1]).to_device(GPU)).unwrap_err().to_string();
    let cpu_err = base.try_index_select(1, &Tensor::from_vec(vec![4i64], &[1])).unwrap_err().to_string();
    assert_eq!(err, cpu_err);
}

/// Embedding lookups with and without padding_idx, and bags, with the table's gradient.
#[test]
#[ignore = "needs a CUDA device"]
fn embeddings_and_their_gradients_match_the_cpu() {
    use tensorbrain::nn::functional::{try_embedding, try_embedding_bag, BagMode, EmbeddingOptions};
    let ids = Tensor::from_vec(vec![1i64, 4, 4, 0, 2, 4, 1, 3], &[2, 4]);
    let table = randn(&[5, 6], DType::F32, 1);
    for padding_idx in [None, Some(4)] {
        let o = EmbeddingOptions { padding_idx, ..Default::default() };
        check_forward_and_grads(&format!("embedding padding_idx {padding_idx:?}"), &[table.clone()], |t| {
            try_embedding(&ids.to_device(t[0].device()), &t[0], &o).unwrap()
        });
    }
    for mode in [BagMode::Sum, BagMode::Mean] {
        check_forward_and_grads(&format!("embedding_bag {mode:?}"), &[table.clone()], |t| {
            try_embedding_bag(&ids.to_device(t[0].device()), &t[0], None, mode, None, Some(4)).unwrap()
        });
    }
}

/// Adam and AdamW (L2 and decoupled decay, AMSGrad, maximize) step GPU parameters with the
/// fused kernel, their state stays on the GPU, and a state dict saved there resumes on the CPU
/// with the same steps.
#[test]
#[ignore = "needs a CUDA device"]
fn the_fused_adam_kernel_steps_like_the_cpu_and_keeps_its_state_on_the_gpu() {
    use tensorbrain::optim::{AdamW, AdamWOptions};
    for dtype in [DType::F32, DType::F64] {
        for (amsgrad, maximize, decoupled) in [(false, false, false), (true, false, true), (true, true, false)] {
            let w0 = randn(&[7, 5], dtype, 1);
            let x = randn(&[9, 7], dtype, 2);
            let make = |w: &Tensor| -> Box<dyn Optimizer> {
                if decoupled {
                    Box::new(AdamW::new(vec![w.clone()], AdamWOptions { lr: 1e-2, weight_decay: 0.1, amsgrad, maximize, ..Default::default() }).unwrap())
                } else {
                    Box::new(Adam::new(vec![w.clone()], AdamOptions { lr: 1e-2, weight_decay: 0.1, amsgrad, maximize, ..Default::default() }).unwrap())
                }
            };
            let steps = |device: Device, w: &Tensor, opt: &mut Box<dyn Optimizer>, n: usize| {
                for _ in 0..n {
                    opt.zero_grad();
                    x.to_device(device).matmul(w).tanh().square().mean(&[], false).backward();
                    opt.step().unwrap();
                }
            };
            let what = format!("{dtype:?} amsgrad={amsgrad} maximize={maximize} decoupled={decoupled}");
            let cpu_w = w0.detach().set_requires_grad(true);
            let mut cpu_opt = make(&cpu_w);
            steps(Device::Cpu, &cpu_w, &mut cpu_opt, 5);
            let gpu_w = w0.to_device(GPU).detach().set_requires_grad(true);
            let mut gpu_opt = make(&gpu_w);
            steps(GPU, &gpu_w, &mut gpu_opt, 3);
            // Resume the GPU run's state on the CPU for the last two steps.
            let state = gpu_opt.state_dict();
            let resumed_w = gpu_w.to_device(Device::Cpu).detach().set_requires_grad(true);
            let mut resumed = make(&resumed_w);
            resumed.load_state_dict(&state).unwrap();
            steps(Device::Cpu, &resumed_w, &mut resumed, 2);
            steps(GPU, &gpu_w, &mut gpu_opt, 2);
            assert_close(&gpu_w, &cpu_w, &what);
            let resumed_on_gpu = resumed_w.to_device(GPU);
            assert_close(&resumed_on_gpu, &cpu_w, &format!("{what}, resumed on the CPU"));
        }
    }
}

/// A block whose elementwise tail (gelu, scale, residual add, tanh·sigmoid, scale) the
/// `#[model]` compiler fuses into one program.
#[model]
struct FusedTail {
    norm: LayerNorm<8>,
    fc: Linear<8, 8>,
}

#[model]
impl FusedTail {
    fn forward(&self, x: tb![B, 8]) -> tb![B, 8] {
        let h = self.fc(self.norm(x)).gelu() * 0.5;
        let y = x + h;
        y.tanh() * y.sigmoid() + y * 0.25
    }
}

/// The generated forward and backward of a `#[model]` run on a GPU, their fused programs as
/// generated CUDA kernels, and give the CPU's output and gradients.
#[test]
#[ignore = "needs a CUDA device"]
fn generated_fused_kernels_run_a_models_forward_and_backward_like_the_cpu() {
    use tensorbrain::nn::{GradReady, StaticModel};
    let x = randn(&[6, 8], DType::F32, 1);
    let w = randn(&[6, 8], DType::F32, 2);
    let run = |device: Device| -> (Tensor, Vec<Tensor>) {
        let mut m = FusedTail::init(3);
        m.to_device(device).unwrap();
        let (out, saved) = m.forward_train(&[x.to_device(device)], true).unwrap();
        let (gi, gp) = FusedTail::backward(&saved, &w.to_device(device), &mut GradReady::none()).unwrap();
        let mut grads = vec![gi[0].clone().expect("input gradient")];
        grads.extend(gp.into_iter().map(|g| g.expect("parameter gradient")));
        (out, grads)
    };
    let (cpu_out, cpu_grads) = run(Device::Cpu);
    let (gpu_out, gpu_grads) = run(GPU);
    assert_close(&gpu_out, &cpu_out, "fused forward");
    for (i, (g, c)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        assert_close(g, c, &format!("fused backward grad {i}"));
    }
}

fn assert_close_rtol(gpu: &Tensor, cpu: &Tensor, rtol: f64, what: &str) {
    assert_eq!(gpu.device(), GPU, "{what}: result is not on the GPU");
    assert_eq!((gpu.shape(), gpu.dtype()), (cpu.shape(), cpu.dtype()), "{what}: shape and dtype");
    for (i, (a, b)) in gpu.to_vec::<f64>().iter().zip(&cpu.to_vec::<f64>()).enumerate() {
        assert!((a.is_nan() && b.is_nan()) || (a - b).abs() <= rtol * (1.0 + b.abs()), "{what}[{i}]: gpu {a} vs cpu {b}");
    }
}

/// f16 and bf16 tensors on a GPU: conversions (both ways, and from f64 through round-to-odd),
/// elementwise ops, matmul, softmax, reductions and conv, computed in f32 and rounded once
/// like the CPU; then a mixed-precision step whose gradients reach the f32 masters.
#[test]
#[ignore = "needs a CUDA device"]
fn half_precision_ops_and_a_mixed_precision_step_match_the_cpu() {
    for (half, rtol) in [(DType::F16, 2e-3), (DType::BF16, 1e-2)] {
        let x = randn(&[4, 6], DType::F32, 1);
        let (xh, gx) = (x.to_dtype(half), x.to_device(GPU).to_dtype(half));
        // One rounding of the same f32 values: identical bits.
        assert_eq!(gx.to_vec::<f64>(), xh.to_vec::<f64>(), "{half:?} from f32");
        let x64 = randn(&[1000], DType::F64, 2).mul_scalar(1e3);
        assert_close_rtol(&x64.to_device(GPU).to_dtype(half), &x64.to_dtype(half), rtol, "from f64");
        assert_eq!(gx.to_dtype(DType::F32).to_vec::<f32>(), xh.to_dtype(DType::F32).to_vec::<f32>(), "{half:?} to f32");
        let w = randn(&[6, 5], DType::F32, 3).to_dtype(half);
        let gw = w.to_device(GPU);
        assert_close_rtol(&gx.exp().mul(&gx.tanh()).add_scalar(0.5), &xh.exp().mul(&xh.tanh()).add_scalar(0.5), rtol, "elementwise");
        assert_close_rtol(&gx.matmul(&gw), &xh.matmul(&w), rtol, "matmul");
        assert_close_rtol(&gx.softmax(1), &xh.softmax(1), rtol, "softmax");
        assert_close_rtol(&gx.sum(&[1], false), &xh.sum(&[1], false), rtol, "sum");
        let img = randn(&[1, 2, 6, 6], DType::F32, 4).to_dtype(half);
        let k = randn(&[3, 2, 3, 3], DType::F32, 5).to_dtype(half);
        assert_close_rtol(&img.to_device(GPU).conv2d(&k.to_device(GPU), None, [1, 1], [1, 1], [1, 1], 1), &img.conv2d(&k, None, [1, 1], [1, 1], [1, 1], 1), rtol, "conv2d");
        // Mixed precision: f32 masters cast to the half type on the tape.
        let run = |device: Device| -> Vec<Tensor> {
            let master = randn(&[6, 5], DType::F32, 6).to_device(device).detach().set_requires_grad(true);
            let y = x.to_device(device).to_dtype(half).matmul(&master.to_dtype(half)).relu();
            y.to_dtype(DType::F32).square().mean(&[], false).backward();
            vec![master.grad().expect("a gradient on the f32 master")]
        };
        let (cpu, gpu) = (run(Device::Cpu), run(GPU));
        assert_eq!(gpu[0].dtype(), DType::F32);
        assert_close_rtol(&gpu[0], &cpu[0], rtol, "master gradient");
    }
}

/// Attention on a GPU (the materialised form: matmul, softmax, masks made on the device) and a
/// transformer encoder layer, forward and backward, equal the CPU's.
#[test]
#[ignore = "needs a CUDA device"]
fn attention_and_a_transformer_layer_match_the_cpu() {
    use tensorbrain::nn::attention::{AttentionMasks, Causal};
    use tensorbrain::nn::transformer::{TransformerConfig, TransformerEncoderLayer};
    use tensorbrain::ops::attention::{try_scaled_dot_product_attention, AttentionOptions};
    let (q, k, v) = (randn(&[2, 3, 5, 8], DType::F32, 1), randn(&[2, 3, 7, 8], DType::F32, 2), randn(&[2, 3, 7, 4], DType::F32, 3));
    let mask = Tensor::from_vec((0..2 * 5 * 7).map(|i| i % 4 != 0).collect::<Vec<bool>>(), &[2, 1, 5, 7]);
    for (what, causal, masked) in [("plain", Causal::None, false), ("causal", Causal::UpperLeft, false), ("masked, lower-right", Causal::LowerRight, true)] {
        check_forward_and_grads(&format!("attention {what}"), &[q.clone(), k.clone(), v.clone()], |t| {
            let mut o = AttentionOptions::new().causal(causal);
            if masked {
                o = o.mask(&mask.to_device(t[0].device()));
            }
            try_scaled_dot_product_attention(&t[0], &t[1], &t[2], &o).unwrap()
        });
    }
    let x = randn(&[2, 6, 16], DType::F32, 4);
    let padding = Tensor::from_vec(vec![false, false, false, false, true, true, false, false, false, false, false, false], &[2, 6]);
    let run = |device: Device| -> (Tensor, Vec<Tensor>) {
        let mut cfg = TransformerConfig::new(16, 4);
        cfg.dim_feedforward = 32;
        cfg.dropout = 0.0;
        let mut layer = TransformerEncoderLayer::new(&cfg, &mut Generator::new(5)).unwrap();
        layer.to_device(device).unwrap();
        let pad = padding.to_device(device);
        let masks = AttentionMasks { key_padding_mask: Some(&pad), attn_mask: None, causal: Causal::UpperLeft };
        let y = layer.forward(&x.to_device(device), &masks).unwrap();
        y.square().mean(&[], false).backward();
        (y, layer.parameters().iter().map(|p| p.grad().expect("a gradient")).collect())
    };
    let ((cpu_y, cpu_g), (gpu_y, gpu_g)) = (run(Device::Cpu), run(GPU));
    assert_close(&gpu_y, &cpu_y, "encoder layer output");
    for (i, (g, c)) in gpu_g.iter().zip(&cpu_g).enumerate() {
        assert_close_rtol(g, c, 1e-4, &format!("encoder layer grad {i}"));
    }
}

/// TF32 is opt-in: off, a matmul is full f32 (the CPU's to 1e-5); on, it agrees to TF32's
/// 1e-3 and differs from full f32 somewhere (the tensor cores really ran).
#[test]
#[ignore = "needs a CUDA device"]
fn tf32_is_opt_in() {
    let (a, b) = (randn(&[256, 512], DType::F32, 1), randn(&[512, 128], DType::F32, 2));
    let cpu = a.matmul(&b);
    assert!(!tensorbrain::cuda::allow_tf32());
    let full = a.to_device(GPU).matmul(&b.to_device(GPU));
    assert_close(&full, &cpu, "full f32");
    tensorbrain::cuda::set_allow_tf32(true);
    let tf32 = a.to_device(GPU).matmul(&b.to_device(GPU));
    tensorbrain::cuda::set_allow_tf32(false);
    assert_close_rtol(&tf32, &cpu, 5e-2, "tf32");
    assert_ne!(tf32.to_vec::<f32>(), full.to_vec::<f32>(), "TF32 changed nothing: the tensor-core path did not run");
}

/// argmax/argmin on a GPU: the first best index, the first NaN when there is one, along a dim,
/// over everything, with keepdim, in f32/f64/bf16, equal to the CPU's.
#[test]
#[ignore = "needs a CUDA device"]
fn argmax_and_argmin_match_the_cpu() {
    let mut v: Vec<f64> = (0..3 * 4 * 300).map(|i| ((i * 37) % 11) as f64).collect();
    v[5] = f64::NAN; // row 0 of dim 2 has a NaN; the other rows have ties (values repeat)
    v[1800] = f64::NAN;
    let base = Tensor::from_vec(v, &[3, 4, 300]);
    for dtype in [DType::F64, DType::F32, DType::BF16] {
        let x = base.to_dtype(dtype);
        let g = x.to_device(GPU);
        for dim in [Some(2isize), Some(0), Some(-2), None] {
            for keepdim in [false, true] {
                for max in [true, false] {
                    let (cpu, gpu) = if max { (x.argmax(dim, keepdim), g.argmax(dim, keepdim)) } else { (x.argmin(dim, keepdim), g.argmin(dim, keepdim)) };
                    assert_eq!(gpu.device(), GPU);
                    assert_eq!(gpu.shape(), cpu.shape());
                    assert_eq!(gpu.to_vec::<i64>(), cpu.to_vec::<i64>(), "{dtype:?} dim {dim:?} keepdim {keepdim} max {max}");
                }
            }
        }
    }
}
