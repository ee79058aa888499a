//! Batch norm, RMS norm, adaptive average pooling and the activation layers against PyTorch
//! (`tests/parity/generate_nn.py` fixtures), both through the tape (`forward`) and through the
//! hand-written `StaticModel` backward a `#[model]` uses (`run_static`); float64 gradchecks;
//! running statistics, buffers in `state_dict`/save/load, `Sequential`, and the default inits.
//!
//! Tolerances: rtol 1e-5 / atol 1e-6, except normalised outputs and their gradients (a mean,
//! a variance and an rsqrt before the scale), compared at rtol 1e-5 / atol 2e-6.

mod nn_fixture;

use nn_fixture::{assert_close, Case, Fixture};
use tensorbrain::autograd::{gradcheck, GradcheckOptions};
use tensorbrain::nn::{
    run_static, AdaptiveAvgPool2d, BatchNorm, BatchNorm1d, BatchNorm2d, Conv2d, Embedding, Forward, LayerNorm, LeakyReLU, Linear, LogSoftmax,
    Module, ModuleExt, RMSNorm, ReLU, Sequential, Softmax, StaticModel, ELU,
};
use tensorbrain::{DType, Result, Tensor};
use tensorbrain::shape::Const;

/// A deep copy (fixture tensors share storage with the loaded map).
fn copy(t: &Tensor) -> Tensor {
    Tensor::from_vec(t.to_vec::<f32>(), t.shape())
}

fn batch_norm_with<const C: usize, const S: usize>(x: &[Tensor], rm: &Tensor, rv: &Tensor, training: bool) -> BatchNorm<Const<C>, S> {
    let mut bn = BatchNorm::<Const<C>, S>::init(0);
    bn.weight = x[1].clone();
    bn.bias = x[2].clone();
    bn.running_mean = rm.clone();
    bn.running_var = rv.clone();
    bn.set_training(training);
    bn
}

fn check_batch_norm<const C: usize, const S: usize>(fx: &Fixture, case: &Case) {
    let training = case.args["training"].as_bool().unwrap();
    for through_static in [false, true] {
        let rm = copy(&fx.get(&format!("{}/running_mean0", case.name)));
        let rv = copy(&fx.get(&format!("{}/running_var0", case.name)));
        let steps = Tensor::zeros(&[], DType::I64);
        fx.check(case, |x| {
            let mut bn = batch_norm_with::<C, S>(x, &rm, &rv, training);
            bn.num_batches_tracked = steps.clone();
            if through_static {
                run_static(&bn, &[x[0].clone()])
            } else {
                bn.forward(&x[0])
            }
        });
        let what = format!("{} (static: {through_static})", case.name);
        assert_close(&format!("{what} running_mean"), &rm, &fx.get(&format!("{}/running_mean1", case.name)), 1e-5, 1e-6);
        assert_close(&format!("{what} running_var"), &rv, &fx.get(&format!("{}/running_var1", case.name)), 1e-5, 1e-6);
        assert_eq!(steps.item::<i64>(), training as i64, "{what}: num_batches_tracked");
    }
}

#[test]
fn batch_norm_matches_pytorch_in_train_and_eval_mode() {
    let fx = Fixture::load();
    for case in fx.cases_of(&["batch_norm1d", "batch_norm2d"]) {
        match (case.op.as_str(), fx.get(&format!("{}/in0", case.name)).shape()[1]) {
            ("batch_norm1d", 3) => check_batch_norm::<3, 1>(&fx, case),
            ("batch_norm2d", 4) => check_batch_norm::<4, 2>(&fx, case),
            (op, c) => panic!("no layer for {op} with {c} channels"),
        }
    }
}

#[test]
fn rms_norm_matches_pytorch() {
    let fx = Fixture::load();
    for case in fx.cases_of(&["rms_norm"]) {
        for through_static in [false, true] {
            fx.check(case, |x| {
                let mut norm = RMSNorm::<6>::init(0);
                norm.weight = x[1].clone();
                norm.eps = case.args["eps"].as_f64();
                if through_static {
                    run_static(&norm, &[x[0].clone()])
                } else {
                    norm.forward(&x[0])
                }
            });
        }
    }
}

fn adaptive<const OH: usize, const OW: usize>(x: &Tensor, through_static: bool) -> Result<Tensor> {
    let pool = AdaptiveAvgPool2d::<OH, OW>;
    if through_static {
        // run_static records a tape node only when something needs a gradient: the input does.
        run_static(&pool, &[x.clone()])
    } else {
        pool.forward(x)
    }
}

#[test]
fn adaptive_avg_pool_matches_pytorch() {
    let fx = Fixture::load();
    for case in fx.cases_of(&["adaptive_avg_pool2d"]) {
        let size: Vec<u64> = case.args["output_size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        for through_static in [false, true] {
            fx.check(case, |x| match size.as_slice() {
                [3, 2] => adaptive::<3, 2>(&x[0], through_static),
                [1, 1] => adaptive::<1, 1>(&x[0], through_static),
                [4, 4] => adaptive::<4, 4>(&x[0], through_static),
                [7, 5] => adaptive::<7, 5>(&x[0], through_static),
                [9, 6] => adaptive::<9, 6>(&x[0], through_static),
                [2, 3] => adaptive::<2, 3>(&x[0], through_static),
                other => panic!("no case for output size {other:?}"),
            });
        }
    }
}

#[test]
fn activation_layers_match_pytorch() {
    let fx = Fixture::load();
    for case in fx.cases_of(&["elu", "leaky_relu", "softmax", "log_softmax"]) {
        fx.check(case, |x| {
            let layer: Box<dyn Forward> = match case.op.as_str() {
                "elu" => Box::new(ELU::new(case.args["alpha"].as_f64().unwrap())),
                "leaky_relu" => Box::new(LeakyReLU::new(case.args["negative_slope"].as_f64().unwrap())),
                "softmax" => Box::new(Softmax::new(case.args["dim"].as_i64().unwrap() as isize)),
                _ => Box::new(LogSoftmax::new(case.args["dim"].as_i64().unwrap() as isize)),
            };
            layer.forward(&x[0])
        });
    }
}

fn opts() -> GradcheckOptions {
    GradcheckOptions { eps: 1e-6, atol: 1e-7, rtol: 1e-6 }
}

fn randn64(shape: &[usize], seed: u64) -> Tensor {
    tensorbrain::manual_seed(seed);
    Tensor::randn(shape, DType::F64)
}

/// A batch norm with f64 parameters `x[1]`, `x[2]` and running statistics.
fn bn64<const C: usize, const S: usize>(x: &[Tensor], training: bool) -> BatchNorm<Const<C>, S> {
    let rm = randn64(&[C], 40).mul_scalar(0.1);
    let rv = randn64(&[C], 41).abs().add_scalar(0.5);
    batch_norm_with::<C, S>(x, &rm, &rv, training)
}

#[test]
fn norm_layers_gradcheck_f64() {
    for training in [true, false] {
        for through_static in [false, true] {
            let run = |bn: BatchNorm<Const<3>, 2>, x: &Tensor| if through_static { run_static(&bn, &[x.clone()]) } else { bn.forward(x) };
            let inputs = [randn64(&[2, 3, 2, 3], 42).mul_scalar(2.0), randn64(&[3], 43), randn64(&[3], 44)];
            gradcheck(|x| run(bn64::<3, 2>(x, training), &x[0]), &inputs, opts()).unwrap_or_else(|e| panic!("bn2d train {training}: {e}"));
            let run1 = |bn: BatchNorm<Const<3>, 1>, x: &Tensor| if through_static { run_static(&bn, &[x.clone()]) } else { bn.forward(x) };
            let inputs = [randn64(&[4, 3], 45), randn64(&[3], 46), randn64(&[3], 47)];
            gradcheck(|x| run1(bn64::<3, 1>(x, training), &x[0]), &inputs, opts()).unwrap_or_else(|e| panic!("bn1d train {training}: {e}"));
        }
    }
    for through_static in [false, true] {
        let inputs = [randn64(&[2, 3, 5], 48), randn64(&[5], 49)];
        gradcheck(
            |x| {
                let mut norm = RMSNorm::<5>::init(0);
                norm.weight = x[1].clone();
                if through_static {
                    run_static(&norm, &[x[0].clone()])
                } else {
                    norm.forward(&x[0])
                }
            },
            &inputs,
            opts(),
        )
        .unwrap();
        gradcheck(|x| adaptive::<3, 4>(&x[0], through_static), &[randn64(&[2, 2, 5, 7], 50)], opts()).unwrap();
    }
}

#[test]
fn rms_norm_default_eps_follows_the_dtype() {
    // eps = None: f32::EPSILON for f32, f64::EPSILON for f64 (torch.finfo(dtype).eps). On an
    // all-zero row with weight 1 that is invisible, so use a tiny row where eps matters.
    let norm = RMSNorm::<2>::init(0);
    let x = Tensor::from_vec(vec![1e-4f32, 1e-4], &[1, 2]);
    let y = norm.forward(&x).unwrap().to_vec::<f32>()[0] as f64;
    let want = 1e-4 / (1e-8 + f32::EPSILON as f64).sqrt();
    assert!((y - want).abs() < 1e-6 * want, "{y} vs {want}");
}

#[test]
fn batch_norm_running_stats_follow_pytorch_updates() {
    // Two steps by hand: running = 0.9·running + 0.1·batch (unbiased variance).
    let bn = BatchNorm1d::<2>::init(0);
    let x = Tensor::from_vec(vec![1.0f32, 10.0, 3.0, 20.0, 5.0, 60.0], &[3, 2]);
    bn.forward(&x).unwrap();
    bn.forward(&x).unwrap();
    let (m0, v0) = (3.0, 4.0); // channel 0: mean 3, unbiased var 4
    let (m1, v1) = (30.0, 700.0); // channel 1: mean 30, unbiased var 700
    let after = |start: f64, batch: f64| 0.81 * start + 0.09 * batch + 0.1 * batch;
    assert_close("running_mean", &bn.running_mean, &Tensor::from_vec(vec![after(0.0, m0) as f32, after(0.0, m1) as f32], &[2]), 1e-6, 1e-6);
    assert_close("running_var", &bn.running_var, &Tensor::from_vec(vec![after(1.0, v0) as f32, after(1.0, v1) as f32], &[2]), 1e-6, 1e-6);
    assert_eq!(bn.num_batches_tracked.item::<i64>(), 2);
}

#[test]
fn batch_norm_rejects_bad_input() {
    let bn = BatchNorm2d::<4>::init(0);
    let e = bn.forward(&Tensor::zeros(&[2, 3, 5, 5], DType::F32)).unwrap_err().to_string();
    assert!(e.contains("[N, C, H, W] with C = 4") && e.contains("[2, 3, 5, 5]"), "{e}");
    let e = BatchNorm1d::<3>::init(0).forward(&Tensor::zeros(&[1, 3], DType::F32)).unwrap_err().to_string();
    assert!(e.contains("more than 1 value per channel"), "{e}");
    let mut eval = BatchNorm1d::<3>::init(0);
    eval.eval();
    assert!(eval.forward(&Tensor::zeros(&[1, 3], DType::F32)).is_ok(), "eval mode takes a single sample");
}

#[test]
fn buffers_are_saved_and_loaded() {
    let mut model = Sequential::new().add(Linear::<3, 4>::init(0)).add(BatchNorm1d::<4>::init(0)).add(ReLU::init(0));
    let names: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]);
    model.forward(&Tensor::randn(&[5, 3], DType::F32)).unwrap();
    let path = std::env::temp_dir().join(format!("tb_norm_layers_{}.safetensors", std::process::id()));
    model.save(&path).unwrap();
    let mut fresh = Sequential::new().add(Linear::<3, 4>::init(7)).add(BatchNorm1d::<4>::init(0)).add(ReLU::init(0));
    fresh.load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    for ((n, a), (_, b)) in model.state_dict().iter().zip(fresh.state_dict().iter()) {
        assert_eq!(a.to_vec::<f64>(), b.to_vec::<f64>(), "{n}");
    }
    assert_eq!(fresh.state_dict()[6].1.item::<i64>(), 1);
    // Eval mode uses the loaded running statistics: same outputs.
    model.eval();
    fresh.eval();
    let x = Tensor::randn(&[2, 3], DType::F32);
    assert_eq!(model.forward(&x).unwrap().to_vec::<f32>(), fresh.forward(&x).unwrap().to_vec::<f32>());
}

#[test]
fn sequential_chains_layers_and_names_parameters_by_position() {
    let seq = Sequential::new().add(Linear::<4, 8>::init(1)).add(ReLU::init(0)).add(Linear::<8, 2>::init(2)).add(LogSoftmax::new(1));
    let names: Vec<String> = seq.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert_eq!(seq.len(), 4);
    let x = Tensor::randn(&[3, 4], DType::F32);
    let (a, b) = (Linear::<4, 8>::init(1), Linear::<8, 2>::init(2));
    let want = b.forward(&a.forward(&x).unwrap().relu()).unwrap().log_softmax(1);
    assert_eq!(seq.forward(&x).unwrap().to_vec::<f32>(), want.to_vec::<f32>());
    // Gradients reach every parameter through the chain.
    seq.forward(&x).unwrap().sum_all().backward();
    assert!(seq.parameters().iter().all(|p| p.grad().is_some()));
    let e = seq.forward(&Tensor::randn(&[3, 5], DType::F32)).unwrap_err().to_string();
    assert!(e.starts_with("Sequential layer 0 (Linear<4, 8>): linear: shapes [3, 5]"), "{e}");
    let summary = seq.summary();
    assert_eq!(summary.total_params(), 4 * 8 + 8 + 8 * 2 + 2);
}

#[test]
fn default_inits_follow_pytorch() {
    // kaiming_uniform(a = sqrt 5) gives U(±1/sqrt(fan_in)) for weights; biases the same bound.
    let lin = Linear::<50, 40>::init(3);
    let bound = 1.0 / 50f64.sqrt();
    for p in [&lin.weight, lin.bias.as_ref().unwrap()] {
        let v = p.to_vec::<f64>();
        assert!(v.iter().all(|x| x.abs() <= bound));
        assert!(v.iter().any(|x| x.abs() > 0.9 * bound), "spans the range");
    }
    let conv = Conv2d::<4, 6, 3>::init(3);
    let bound = 1.0 / 36f64.sqrt();
    assert!(conv.weight.to_vec::<f64>().iter().all(|x| x.abs() <= bound));
    assert!(conv.weight.to_vec::<f64>().iter().any(|x| x.abs() > 0.9 * bound));
    // Embedding: N(0, 1).
    let emb = Embedding::<100, 50>::init(3).weight.to_vec::<f64>();
    let mean = emb.iter().sum::<f64>() / emb.len() as f64;
    let var = emb.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / emb.len() as f64;
    assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "mean {mean}, var {var}");
    // Norm layers: weight 1, bias 0, running stats 0 and 1.
    let ln = LayerNorm::<5>::init(0);
    assert_eq!(ln.weight.to_vec::<f32>(), vec![1.0; 5]);
    assert_eq!(ln.bias.to_vec::<f32>(), vec![0.0; 5]);
    let bn = BatchNorm2d::<3>::init(0);
    assert_eq!((bn.weight.to_vec::<f32>(), bn.bias.to_vec::<f32>()), (vec![1.0; 3], vec![0.0; 3]));
    assert_eq!((bn.running_mean.to_vec::<f32>(), bn.running_var.to_vec::<f32>()), (vec![0.0; 3], vec![1.0; 3]));
    assert_eq!(RMSNorm::<4>::init(0).weight.to_vec::<f32>(), vec![1.0; 4]);
}

#[test]
fn static_interface_reports_one_input() {
    let bn = BatchNorm1d::<2>::init(0);
    let x = Tensor::zeros(&[2, 2], DType::F32);
    assert!(bn.forward_infer(&[x.clone(), x]).unwrap_err().to_string().contains("takes one input"));
}
