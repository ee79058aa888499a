//! Losses against PyTorch (`tests/parity/generate_nn.py` fixtures: every option combination of
//! each loss, outputs and input gradients at rtol 1e-5 / atol 1e-6), float64 gradchecks, and
//! the errors bad inputs give.

mod nn_fixture;

use nn_fixture::{assert_close, Case, Fixture};
use tensorbrain::autograd::{gradcheck, GradcheckOptions};
use tensorbrain::nn::{
    binary_cross_entropy, cross_entropy, mse_loss, try_cross_entropy, BceLoss, BceWithLogitsLoss, CrossEntropyLoss, L1Loss, MseLoss, NllLoss,
    Reduction,
};
use tensorbrain::{DType, Tensor};

fn reduction(case: &Case) -> Reduction {
    match case.args["reduction"].as_str().expect("reduction") {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "none" => Reduction::None,
        other => panic!("unknown reduction {other}"),
    }
}

fn flag(case: &Case, key: &str) -> bool {
    case.args[key].as_bool().unwrap_or(false)
}

#[test]
fn cross_entropy_matches_pytorch() {
    let fx = Fixture::load();
    for case in fx.cases_of(&["cross_entropy"]) {
        fx.check(case, |x| {
            let mut loss = CrossEntropyLoss::new()
                .reduction(reduction(case))
                .ignore_index(case.args["ignore_index"].as_i64().unwrap())
                .label_smoothing(case.args["label_smoothing"].as_f64().unwrap());
            if flag(case, "weight") {
                loss = loss.weight(x[2].clone());
            }
            loss.forward(&x[0], &x[1])
        });
    }
}

#[test]
fn nll_loss_matches_pytorch() {
    let fx = Fixture::load();
    for case in fx.cases_of(&["nll_loss"]) {
        fx.check(case, |x| {
            let mut loss = NllLoss::new().reduction(reduction(case)).ignore_index(case.args["ignore_index"].as_i64().unwrap());
            if flag(case, "weight") {
                loss = loss.weight(x[2].clone());
            }
            loss.forward(&x[0], &x[1])
        });
    }
}

#[test]
fn regression_losses_match_pytorch() {
    let fx = Fixture::load();
    for case in fx.cases_of(&["mse_loss", "l1_loss"]) {
        fx.check(case, |x| match case.op.as_str() {
            "mse_loss" => MseLoss::new().reduction(reduction(case)).forward(&x[0], &x[1]),
            _ => L1Loss::new().reduction(reduction(case)).forward(&x[0], &x[1]),
        });
    }
}

#[test]
fn binary_cross_entropy_matches_pytorch() {
    let fx = Fixture::load();
    for case in fx.cases_of(&["binary_cross_entropy"]) {
        fx.check(case, |x| {
            let mut loss = BceLoss::new().reduction(reduction(case));
            if flag(case, "weight") {
                loss = loss.weight(x[2].clone());
            }
            loss.forward(&x[0], &x[1])
        });
    }
    for case in fx.cases_of(&["binary_cross_entropy_with_logits"]) {
        fx.check(case, |x| {
            let mut loss = BceWithLogitsLoss::new().reduction(reduction(case));
            let mut next = 2;
            if flag(case, "weight") {
                loss = loss.weight(x[next].clone());
                next += 1;
            }
            if flag(case, "pos_weight") {
                loss = loss.pos_weight(x[next].clone());
            }
            loss.forward(&x[0], &x[1])
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

#[test]
fn cross_entropy_gradcheck_f64() {
    let target = Tensor::from_vec(vec![2i64, 0, 1, 2, -100], &[5]);
    let target3 = Tensor::from_vec(vec![1i64, 0, 2, 2, 1, 0], &[2, 3]);
    let weight = Tensor::from_vec(vec![0.5f64, 2.0, 1.5], &[3]);
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let loss = CrossEntropyLoss::new().weight(weight.clone()).label_smoothing(0.2).reduction(red);
        gradcheck(|x| loss.forward(&x[0], &target), &[randn64(&[5, 3], 1)], opts()).unwrap();
        gradcheck(|x| loss.forward(&x[0], &target3), &[randn64(&[2, 3, 3], 2)], opts()).unwrap();
        let nll = NllLoss::new().weight(weight.clone()).ignore_index(1).reduction(red);
        let nll_target = Tensor::from_vec(vec![2i64, 0, 1, 2, 1], &[5]);
        gradcheck(|x| nll.forward(&x[0].log_softmax(1), &nll_target), &[randn64(&[5, 3], 3)], opts()).unwrap();
    }
    // Probability targets: gradients reach both logits and target.
    let probs = randn64(&[4, 3], 4).softmax(1);
    gradcheck(|x| CrossEntropyLoss::new().label_smoothing(0.1).forward(&x[0], &x[1]), &[randn64(&[4, 3], 5), probs], opts()).unwrap();
}

#[test]
fn elementwise_losses_gradcheck_f64() {
    let x = randn64(&[3, 4], 6);
    let t = randn64(&[3, 4], 7);
    gradcheck(|v| MseLoss::new().forward(&v[0], &v[1]), &[x.clone(), t.clone()], opts()).unwrap();
    gradcheck(|v| L1Loss::new().reduction(Reduction::Sum).forward(&v[0], &v[1]), &[x.clone(), t.clone()], opts()).unwrap();
    let p = randn64(&[3, 4], 8).sigmoid();
    let target = randn64(&[3, 4], 9).sigmoid();
    let w = randn64(&[4], 10).abs();
    gradcheck(|v| BceLoss::new().weight(w.clone()).forward(&v[0], &v[1]), &[p, target.clone()], opts()).unwrap();
    let pos = randn64(&[4], 11).abs();
    let logits = randn64(&[3, 4], 12).mul_scalar(4.0);
    gradcheck(
        |v| BceWithLogitsLoss::new().weight(w.clone()).pos_weight(pos.clone()).reduction(Reduction::None).forward(&v[0], &v[1]),
        &[logits, target],
        opts(),
    )
    .unwrap();
}

#[test]
fn bce_with_logits_is_finite_for_huge_logits() {
    let z = Tensor::from_vec(vec![1000.0f32, -1000.0, 1000.0, -1000.0], &[4]).set_requires_grad(true);
    let t = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0], &[4]);
    let loss = BceWithLogitsLoss::new().reduction(Reduction::None).forward(&z, &t).unwrap();
    assert_eq!(loss.to_vec::<f32>(), vec![0.0, 0.0, 1000.0, 1000.0]);
    loss.sum_all().backward();
    assert_eq!(z.grad().unwrap().to_vec::<f32>(), vec![0.0, 0.0, 1.0, -1.0]);
}

#[test]
fn plain_forms_use_the_mean() {
    let x = Tensor::from_vec(vec![1.0f32, 2.0, 0.5, 0.1, 0.2, 3.0], &[2, 3]);
    let t = Tensor::from_vec(vec![1i64, 2], &[2]);
    // -log_softmax picked, averaged: computed by hand.
    let row = |a: f32, b: f32, c: f32, k: f32| (a.exp() + b.exp() + c.exp()).ln() - k;
    let want = (row(1.0, 2.0, 0.5, 2.0) + row(0.1, 0.2, 3.0, 3.0)) / 2.0;
    assert!((cross_entropy(&x, &t).item::<f32>() - want).abs() < 1e-6);
    let y = Tensor::zeros(&[2, 3], DType::F32);
    assert!((mse_loss(&x, &y).item::<f32>() - (1.0 + 4.0 + 0.25 + 0.01 + 0.04 + 9.0) / 6.0).abs() < 1e-6);
    let p = Tensor::from_vec(vec![0.5f32], &[1]);
    assert!((binary_cross_entropy(&p, &Tensor::ones(&[1], DType::F32)).item::<f32>() - std::f32::consts::LN_2).abs() < 1e-6);
}

#[test]
fn all_ignored_mean_is_nan_like_pytorch() {
    let x = Tensor::zeros(&[2, 3], DType::F32);
    let t = Tensor::from_vec(vec![-100i64, -100], &[2]);
    assert!(cross_entropy(&x, &t).item::<f32>().is_nan());
    let sum = CrossEntropyLoss::new().reduction(Reduction::Sum).forward(&x, &t).unwrap();
    assert_eq!(sum.item::<f32>(), 0.0);
}

#[test]
fn errors_name_expected_shapes_and_dtypes() {
    let x = Tensor::zeros(&[4, 3], DType::F32);
    let msg = |r: tensorbrain::Result<Tensor>| r.unwrap_err().to_string();
    let e = msg(try_cross_entropy(&x, &Tensor::zeros(&[3], DType::I64)));
    assert!(e.contains("[4]") && e.contains("[3]"), "{e}");
    let e = msg(try_cross_entropy(&x, &Tensor::zeros(&[4], DType::I32)));
    assert!(e.contains("i64") && e.contains("i32"), "{e}");
    let e = msg(try_cross_entropy(&x, &Tensor::from_vec(vec![0i64, 1, 3, 2], &[4])));
    assert!(e.contains("target value 3") && e.contains("3 classes"), "{e}");
    let e = msg(CrossEntropyLoss::new().weight(Tensor::ones(&[4], DType::F32)).forward(&x, &Tensor::zeros(&[4], DType::I64)));
    assert!(e.contains("weight must have shape [3]"), "{e}");
    let e = msg(MseLoss::new().forward(&x, &Tensor::zeros(&[3, 4], DType::F32)));
    assert!(e.contains("[4, 3]") && e.contains("[3, 4]"), "{e}");
    let e = msg(BceLoss::new().forward(&x.add_scalar(2.0), &x));
    assert!(e.contains("[0, 1]"), "{e}");
}

#[test]
#[should_panic(expected = "cross_entropy: target must have shape [4]")]
fn plain_form_panics_with_the_message() {
    cross_entropy(&Tensor::zeros(&[4, 3], DType::F32), &Tensor::zeros(&[2], DType::I64));
}

#[test]
fn weighted_mean_divides_by_the_total_weight() {
    // Two samples of classes 0 and 1 with weights 1 and 3: mean = (1·l0 + 3·l1) / 4.
    let x = Tensor::from_vec(vec![0.3f64, -0.2, 1.0, 0.5], &[2, 2]);
    let t = Tensor::from_vec(vec![0i64, 1], &[2]);
    let w = Tensor::from_vec(vec![1.0f64, 3.0], &[2]);
    let per = CrossEntropyLoss::new().reduction(Reduction::None).forward(&x, &t).unwrap().to_vec::<f64>();
    let mean = CrossEntropyLoss::new().weight(w).forward(&x, &t).unwrap();
    assert_close("weighted mean", &mean, &Tensor::scalar((per[0] + 3.0 * per[1]) / 4.0), 1e-12, 0.0);
}
