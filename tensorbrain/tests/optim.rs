//! Optimizers, clipping and LR schedulers: replay of PyTorch fixtures
//! (tests/optim/fixtures.safetensors, made by tests/optim/generate.py) plus unit tests.

use std::sync::OnceLock;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use tensorbrain::optim::lr_scheduler::{
    Anneal, CosineAnnealingLR, ExponentialLR, LinearWarmupCosine, LrScheduler, MultiStepLR, OneCycleLR, OneCycleOptions,
    PlateauMode, PlateauOptions, ReduceLROnPlateau, SchedulerState, StepLR, ThresholdMode,
};
use tensorbrain::optim::{
    AdadeltaOptions, AdagradOptions, AdamaxOptions, NAdam, NAdamOptions, RAdamOptions,
    clip_grad_norm, clip_grad_value, Adam, AdamOptions, AdamW, AdamWOptions, ElementwiseOptimizer, Lion, LionOptions,
    Optimizer, OptimizerState, ParamGroup, RmsProp, RmsPropOptions, Sgd, SgdOptions, UpdateRule,
};
use tensorbrain::{DType, Tensor};

// ---------------------------------------------------------------------------------------------
// Fixture access
// ---------------------------------------------------------------------------------------------

struct Fixtures {
    bytes: Vec<u8>,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/optim/fixtures.safetensors");
        Fixtures { bytes: std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}")) }
    })
}

impl Fixtures {
    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("fixture file parses")
    }

    fn meta(&self, key: &str) -> Value {
        let (_, m) = SafeTensors::read_metadata(&self.bytes).unwrap();
        let s = m.metadata().as_ref().and_then(|m| m.get(key)).unwrap_or_else(|| panic!("metadata {key}")).clone();
        serde_json::from_str(&s).unwrap()
    }

    /// A fixture tensor in its own dtype.
    fn tensor(&self, name: &str) -> Tensor {
        let st = self.st();
        let v = st.tensor(name).unwrap_or_else(|_| panic!("fixture tensor {name} missing"));
        let shape = v.shape().to_vec();
        match v.dtype() {
            Dtype::F32 => Tensor::from_vec(v.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), &shape),
            Dtype::F64 => Tensor::from_vec(v.data().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(), &shape),
            d => panic!("unexpected fixture dtype {d:?}"),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.st().tensor(name).is_ok()
    }
}

fn assert_close(actual: &[f64], expected: &[f64], rtol: f64, atol: f64, ctx: &str) {
    assert_eq!(actual.len(), expected.len(), "{ctx}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= atol + rtol * e.abs() || (a.is_nan() && e.is_nan()),
            "{ctx}: element {i}: got {a}, expected {e} (diff {})",
            (a - e).abs()
        );
    }
}

/// Row `t` of a [T, ...] tensor, as f64.
fn row(t: &Tensor, i: usize) -> Vec<f64> {
    let per: usize = t.shape()[1..].iter().product();
    t.to_vec::<f64>()[i * per..(i + 1) * per].to_vec()
}

// ---------------------------------------------------------------------------------------------
// Building optimizers and schedulers from the fixture descriptions
// ---------------------------------------------------------------------------------------------

fn num(o: &Value, key: &str, default: f64) -> f64 {
    o.get(key).map(|v| v.as_f64().or_else(|| v.as_bool().map(|b| b as u8 as f64)).unwrap()).unwrap_or(default)
}

fn flag(o: &Value, key: &str) -> bool {
    num(o, key, 0.0) != 0.0
}

fn build<R: UpdateRule>(params: &[Tensor], groups: &[Value], options: impl Fn(&Value) -> R) -> ElementwiseOptimizer<R> {
    let groups = groups
        .iter()
        .map(|g| {
            let ps = g["params"].as_array().unwrap().iter().map(|i| params[i.as_u64().unwrap() as usize].clone()).collect();
            ParamGroup::new(ps, options(&g["options"]))
        })
        .collect();
    ElementwiseOptimizer::with_groups(groups).unwrap()
}

fn make_optimizer(kind: &str, params: &[Tensor], groups: &[Value]) -> Box<dyn Optimizer> {
    match kind {
        "sgd" => Box::new(build(params, groups, |o| SgdOptions {
            lr: num(o, "lr", 1e-3),
            momentum: num(o, "momentum", 0.0),
            dampening: num(o, "dampening", 0.0),
            weight_decay: num(o, "weight_decay", 0.0),
            nesterov: flag(o, "nesterov"),
            maximize: flag(o, "maximize"),
        })),
        "adam" => Box::new(build(params, groups, |o| AdamOptions {
            lr: num(o, "lr", 1e-3),
            betas: (num(o, "beta1", 0.9), num(o, "beta2", 0.999)),
            eps: num(o, "eps", 1e-8),
            weight_decay: num(o, "weight_decay", 0.0),
            amsgrad: flag(o, "amsgrad"),
            maximize: flag(o, "maximize"),
        })),
        "adamw" => Box::new(build(params, groups, |o| AdamWOptions {
            lr: num(o, "lr", 1e-3),
            betas: (num(o, "beta1", 0.9), num(o, "beta2", 0.999)),
            eps: num(o, "eps", 1e-8),
            weight_decay: num(o, "weight_decay", 1e-2),
            amsgrad: flag(o, "amsgrad"),
            maximize: flag(o, "maximize"),
        })),
        "lion" => Box::new(build(params, groups, |o| LionOptions {
            lr: num(o, "lr", 1e-4),
            betas: (num(o, "beta1", 0.9), num(o, "beta2", 0.99)),
            weight_decay: num(o, "weight_decay", 0.0),
            maximize: flag(o, "maximize"),
        })),
        "rmsprop" => Box::new(build(params, groups, |o| RmsPropOptions {
            lr: num(o, "lr", 1e-2),
            alpha: num(o, "alpha", 0.99),
            eps: num(o, "eps", 1e-8),
            weight_decay: num(o, "weight_decay", 0.0),
            momentum: num(o, "momentum", 0.0),
            centered: flag(o, "centered"),
            maximize: flag(o, "maximize"),
        })),
        "adagrad" => Box::new(build(params, groups, |o| AdagradOptions {
            lr: num(o, "lr", 1e-2),
            lr_decay: num(o, "lr_decay", 0.0),
            weight_decay: num(o, "weight_decay", 0.0),
            initial_accumulator_value: num(o, "initial_accumulator_value", 0.0),
            eps: num(o, "eps", 1e-10),
            maximize: flag(o, "maximize"),
        })),
        "adamax" => Box::new(build(params, groups, |o| AdamaxOptions {
            lr: num(o, "lr", 2e-3),
            betas: (num(o, "beta1", 0.9), num(o, "beta2", 0.999)),
            eps: num(o, "eps", 1e-8),
            weight_decay: num(o, "weight_decay", 0.0),
            maximize: flag(o, "maximize"),
        })),
        "adadelta" => Box::new(build(params, groups, |o| AdadeltaOptions {
            lr: num(o, "lr", 1.0),
            rho: num(o, "rho", 0.9),
            eps: num(o, "eps", 1e-6),
            weight_decay: num(o, "weight_decay", 0.0),
            maximize: flag(o, "maximize"),
        })),
        "radam" => Box::new(build(params, groups, |o| RAdamOptions {
            lr: num(o, "lr", 1e-3),
            betas: (num(o, "beta1", 0.9), num(o, "beta2", 0.999)),
            eps: num(o, "eps", 1e-8),
            weight_decay: num(o, "weight_decay", 0.0),
            decoupled_weight_decay: flag(o, "decoupled_weight_decay"),
            maximize: flag(o, "maximize"),
        })),
        "nadam" => Box::new(build(params, groups, |o| NAdamOptions {
            lr: num(o, "lr", 2e-3),
            betas: (num(o, "beta1", 0.9), num(o, "beta2", 0.999)),
            eps: num(o, "eps", 1e-8),
            weight_decay: num(o, "weight_decay", 0.0),
            momentum_decay: num(o, "momentum_decay", 4e-3),
            decoupled_weight_decay: flag(o, "decoupled_weight_decay"),
            maximize: flag(o, "maximize"),
        })),
        k => panic!("unknown optimizer {k}"),
    }
}

fn make_scheduler(opt: &mut dyn Optimizer, s: &Value) -> Box<dyn LrScheduler> {
    let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("scheduler arg {k}"));
    let u = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("scheduler arg {k}")) as usize;
    match s["kind"].as_str().unwrap() {
        "step" => Box::new(StepLR::new(opt, u("step_size"), f("gamma")).unwrap()),
        "multistep" => {
            let m: Vec<usize> = s["milestones"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            Box::new(MultiStepLR::new(opt, &m, f("gamma")).unwrap())
        }
        "exponential" => Box::new(ExponentialLR::new(opt, f("gamma")).unwrap()),
        "cosine" => Box::new(CosineAnnealingLR::new(opt, u("t_max"), f("eta_min")).unwrap()),
        "warmup_cosine" | "warmup_cosine_sequential" => Box::new(
            LinearWarmupCosine::new(opt, u("warmup_steps"), u("total_steps"), f("start_factor"), f("min_lr")).unwrap(),
        ),
        "onecycle" => {
            let mut o = OneCycleOptions::new(0.0, u("total_steps"));
            o.max_lr = s["max_lr"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let g = |k: &str, d: f64| s.get(k).and_then(Value::as_f64).unwrap_or(d);
            o.pct_start = g("pct_start", 0.3);
            o.anneal = if s.get("anneal").and_then(Value::as_str) == Some("linear") { Anneal::Linear } else { Anneal::Cos };
            o.cycle_momentum = s.get("cycle_momentum").and_then(Value::as_bool).unwrap_or(true);
            o.base_momentum = g("base_momentum", 0.85);
            o.max_momentum = g("max_momentum", 0.95);
            o.div_factor = g("div_factor", 25.0);
            o.final_div_factor = g("final_div_factor", 1e4);
            o.three_phase = s.get("three_phase").and_then(Value::as_bool).unwrap_or(false);
            Box::new(OneCycleLR::new(opt, o).unwrap())
        }
        "plateau" => {
            let mut o = PlateauOptions {
                mode: if s["mode"] == "max" { PlateauMode::Max } else { PlateauMode::Min },
                factor: f("factor"),
                patience: u("patience"),
                threshold: f("threshold"),
                threshold_mode: if s["threshold_mode"] == "abs" { ThresholdMode::Abs } else { ThresholdMode::Rel },
                cooldown: u("cooldown"),
                ..Default::default()
            };
            match &s["min_lr"] {
                Value::Array(a) => o.min_lrs = Some(a.iter().map(|v| v.as_f64().unwrap()).collect()),
                v => o.min_lr = v.as_f64().unwrap(),
            }
            Box::new(ReduceLROnPlateau::new(opt, o).unwrap())
        }
        k => panic!("unknown scheduler {k}"),
    }
}

/// A contiguous copy of the transpose of a 2-D tensor, viewed back as the original shape: same
/// values, non-contiguous strides.
fn non_contiguous(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape()[0], t.shape()[1]);
    let v = t.to_vec::<f64>();
    let mut tv = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            tv[j * r + i] = v[i * c + j];
        }
    }
    let out = Tensor::from_vec(tv, &[c, r]).to_dtype(t.dtype()).t();
    assert!(!out.is_contiguous());
    out
}

fn quadratic_loss(w: &Tensor, b: &Tensor, x: &Tensor, y: &Tensor) -> Tensor {
    let r = w.mul(x).add(b).sub(y);
    r.mul(&r).mean(&[], false).add(&w.pow_scalar(4.0).mean(&[], false).mul_scalar(0.1))
}

// ---------------------------------------------------------------------------------------------
// Optimizer fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn optimizers_match_pytorch() {
    let fx = fixtures();
    let cases = fx.meta("optimizer_cases");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 25, "expected the full case list, got {}", cases.len());
    let (g0, g1, mask) = (fx.tensor("grads.g0"), fx.tensor("grads.g1"), fx.tensor("grads.mask1").to_vec::<f32>());
    let (x, y) = (fx.tensor("problem.x"), fx.tensor("problem.y"));
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let grads_problem = case["problem"] == "grads";
        let prefix = if grads_problem { "grads" } else { "problem" };
        let w = fx.tensor(&format!("{prefix}.W0")).set_requires_grad(true);
        let b = fx.tensor(&format!("{prefix}.b0")).set_requires_grad(true);
        let params = [w.clone(), b.clone()];
        let mut opt = make_optimizer(case["optimizer"].as_str().unwrap(), &params, case["groups"].as_array().unwrap());
        let mut sched = case.get("scheduler").map(|s| make_scheduler(opt.as_mut(), s));
        let (ep0, ep1) = (fx.tensor(&format!("{name}.p0")), fx.tensor(&format!("{name}.p1")));
        let (rtol, atol) = if grads_problem { (1e-5, 1e-6) } else { (1e-9, 1e-12) };
        for t in 0..case["steps"].as_u64().unwrap() as usize {
            opt.zero_grad();
            if grads_problem {
                let gw = g0.slice(0, t as isize, t as isize + 1, 1).reshape(&[3, 4]);
                // Odd steps hand the optimizer a non-contiguous gradient.
                w.set_grad(Some(if t % 2 == 1 { non_contiguous(&gw) } else { gw.contiguous() }));
                b.set_grad((mask[t] > 0.0).then(|| g1.slice(0, t as isize, t as isize + 1, 1).reshape(&[4])));
            } else {
                quadratic_loss(&w, &b, &x, &y).backward();
            }
            opt.step().unwrap();
            if let Some(s) = sched.as_mut() {
                s.step(opt.as_mut());
                let expected = row(&fx.tensor(&format!("{name}.lr")), t);
                assert_close(&s.get_lr(), &expected, 1e-12, 1e-15, &format!("{name} lr after step {t}"));
                let actual: Vec<f64> = (0..opt.num_groups()).map(|g| opt.group_lr(g)).collect();
                assert_close(&actual, &expected, 1e-12, 1e-15, &format!("{name} optimizer lr after step {t}"));
            }
            assert_close(&w.to_vec::<f64>(), &row(&ep0, t), rtol, atol, &format!("{name}: W after step {}", t + 1));
            assert_close(&b.to_vec::<f64>(), &row(&ep1, t), rtol, atol, &format!("{name}: b after step {}", t + 1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scheduler fixtures
// ---------------------------------------------------------------------------------------------

/// Two groups (one parameter each) with the fixture's base lrs.
fn scheduler_optimizer(kind: &str, base_lrs: &[f64]) -> Box<dyn Optimizer> {
    let params = || (0..base_lrs.len()).map(|i| Tensor::zeros(&[i + 2], DType::F32).set_requires_grad(true));
    if kind == "sgd" {
        let groups = params()
            .zip(base_lrs)
            .map(|(p, &lr)| ParamGroup::new(vec![p], SgdOptions { lr, momentum: 0.9, ..Default::default() }))
            .collect();
        Box::new(Sgd::with_groups(groups).unwrap())
    } else {
        let groups =
            params().zip(base_lrs).map(|(p, &lr)| ParamGroup::new(vec![p], AdamOptions { lr, ..Default::default() })).collect();
        Box::new(Adam::with_groups(groups).unwrap())
    }
}

fn step_once(opt: &mut dyn Optimizer) {
    for p in opt.params() {
        p.set_grad(Some(Tensor::ones(p.shape(), p.dtype())));
    }
    opt.step().unwrap();
}

#[test]
fn schedulers_match_pytorch() {
    let fx = fixtures();
    let cases = fx.meta("scheduler_cases");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 12);
    for s in cases {
        let name = s["name"].as_str().unwrap();
        let base: Vec<f64> = s["base_lrs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let mut opt = scheduler_optimizer(s["optimizer"].as_str().unwrap(), &base);
        let mut sched = make_scheduler(opt.as_mut(), s);
        let lrs = fx.tensor(&format!("sched.{name}.lr"));
        let mom_name = format!("sched.{name}.momentum");
        let moms = fx.has(&mom_name).then(|| fx.tensor(&mom_name));
        let metrics = fx.has(&format!("sched.{name}.metrics")).then(|| fx.tensor(&format!("sched.{name}.metrics")).to_vec::<f64>());
        let steps = s["steps"].as_u64().unwrap() as usize;
        assert!(steps >= 30, "{name}: {steps} steps");
        let check = |opt: &dyn Optimizer, sched: &dyn LrScheduler, t: usize| {
            let actual: Vec<f64> = (0..opt.num_groups()).map(|g| opt.group_lr(g)).collect();
            assert_close(&actual, &row(&lrs, t), 1e-10, 1e-15, &format!("{name}: lr at step {t}"));
            assert_close(&sched.get_lr(), &row(&lrs, t), 1e-10, 1e-15, &format!("{name}: get_lr at step {t}"));
            assert_eq!(sched.last_epoch(), t, "{name}");
            if let Some(m) = &moms {
                let actual: Vec<f64> = (0..opt.num_groups()).map(|g| opt.group_momentum(g).unwrap()).collect();
                assert_close(&actual, &row(m, t), 1e-10, 1e-15, &format!("{name}: momentum at step {t}"));
            }
        };
        check(opt.as_ref(), sched.as_ref(), 0);
        for t in 0..steps {
            step_once(opt.as_mut());
            match &metrics {
                Some(m) => sched.step_with_metric(opt.as_mut(), m[t]),
                None => sched.step(opt.as_mut()),
            }
            check(opt.as_ref(), sched.as_ref(), t + 1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State dicts
// ---------------------------------------------------------------------------------------------

/// Serialises optimizer state through a real safetensors buffer and back.
fn through_safetensors(state: &OptimizerState) -> OptimizerState {
    let tensors = state.to_tensors();
    let data: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = tensors
        .iter()
        .map(|(n, t)| match t.dtype() {
            DType::F32 => (n.clone(), t.to_vec::<f32>().iter().flat_map(|x| x.to_le_bytes()).collect(), t.shape().to_vec(), Dtype::F32),
            DType::F64 => (n.clone(), t.to_vec::<f64>().iter().flat_map(|x| x.to_le_bytes()).collect(), t.shape().to_vec(), Dtype::F64),
            d => panic!("{d}"),
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, b, s, d)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, &Some(state.metadata())).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let loaded: Vec<(String, Tensor)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let t = match v.dtype() {
                Dtype::F32 => Tensor::from_vec(v.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(), v.shape()),
                Dtype::F64 => Tensor::from_vec(v.data().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(), v.shape()),
                d => panic!("{d:?}"),
            };
            (n, t)
        })
        .collect();
    OptimizerState::from_tensors(loaded, meta.metadata().as_ref().unwrap()).unwrap()
}

fn grad_at(shape: &[usize], t: usize, salt: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i as f64 * 0.37 + t as f64 * 1.3 + salt).sin() * 2.0) as f32).collect();
    Tensor::from_vec(v, shape)
}

fn set_grads(params: &[Tensor], t: usize) {
    for (k, p) in params.iter().enumerate() {
        // The second parameter skips every third step: its state must lag behind.
        let g = (k == 0 || t % 3 != 1).then(|| grad_at(p.shape(), t, k as f64));
        p.set_grad(g);
    }
}

fn fresh_params() -> Vec<Tensor> {
    vec![grad_at(&[3, 4], 99, 0.5).set_requires_grad(true), grad_at(&[5], 98, 0.1).set_requires_grad(true)]
}

fn copies(params: &[Tensor]) -> Vec<Tensor> {
    params.iter().map(|p| Tensor::from_vec(p.to_vec::<f32>(), p.shape()).set_requires_grad(true)).collect()
}

/// Trains 5 steps, snapshots, then checks that continuing and restoring-then-continuing give
/// bit-identical parameters.
fn check_round_trip(make: &dyn Fn(Vec<Tensor>) -> Box<dyn Optimizer>) {
    let params = fresh_params();
    let mut a = make(params.clone());
    for t in 0..5 {
        set_grads(&params, t);
        a.step().unwrap();
    }
    let state = a.state_dict();
    let restored_params = copies(&params);
    for t in 5..10 {
        set_grads(&params, t);
        a.step().unwrap();
    }
    // A second optimizer with different hyperparameters: loading must restore them.
    let mut b = make(restored_params.clone());
    b.set_lr(123.0);
    b.load_state_dict(&through_safetensors(&state)).unwrap();
    assert_eq!(b.lr(), state.groups[0].hyperparameters.0["lr"]);
    for t in 5..10 {
        set_grads(&restored_params, t);
        b.step().unwrap();
    }
    for (p, q) in params.iter().zip(&restored_params) {
        assert_eq!(p.to_vec::<f32>(), q.to_vec::<f32>());
    }
    // The snapshot is a deep copy: stepping `a` did not change it.
    let again = a.state_dict();
    let (old, new) = (state.to_tensors(), again.to_tensors());
    assert_eq!(old.len(), new.len());
    assert!(old.iter().zip(&new).any(|((_, x), (_, y))| x.to_vec::<f32>() != y.to_vec::<f32>()));
}

#[test]
fn state_dict_round_trip_continues_identically() {
    check_round_trip(&|p| Box::new(Sgd::new(p, SgdOptions { lr: 0.1, momentum: 0.9, nesterov: true, ..Default::default() }).unwrap()));
    check_round_trip(&|p| {
        Box::new(Adam::new(p, AdamOptions { lr: 0.01, amsgrad: true, weight_decay: 0.1, ..Default::default() }).unwrap())
    });
    check_round_trip(&|p| Box::new(AdamW::new(p, AdamWOptions { lr: 0.01, ..Default::default() }).unwrap()));
    check_round_trip(&|p| Box::new(Lion::new(p, LionOptions { lr: 0.01, weight_decay: 0.1, ..Default::default() }).unwrap()));
    check_round_trip(&|p| {
        Box::new(
            RmsProp::new(p, RmsPropOptions { lr: 0.01, momentum: 0.5, centered: true, ..Default::default() }).unwrap(),
        )
    });
    check_round_trip(&|p| Box::new(NAdam::new(p, NAdamOptions { lr: 0.01, weight_decay: 0.1, ..Default::default() }).unwrap()));
}

/// NAdam's `mu_product` is one 0-d f32 tensor per parameter, as in PyTorch's state dict, the
/// running product of `mu_t` over the parameter's own steps.
#[test]
fn nadam_mu_product_is_a_scalar_per_parameter() {
    let params = fresh_params();
    let options = NAdamOptions { lr: 0.01, ..Default::default() };
    let mut opt = NAdam::new(params.clone(), options.clone()).unwrap();
    for t in 0..4 {
        set_grads(&params, t);
        opt.step().unwrap();
    }
    let st = opt.state_dict();
    let names: Vec<String> = st.to_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.iter().filter(|n| n.ends_with("mu_product")).count(), 2, "{names:?}");
    let mu = |t: f64| 0.9 * (1.0 - 0.5 * 0.96f64.powf(t * 4e-3));
    for (k, steps) in [(0, 4), (1, 3)] {
        let saved = &st.params[k].as_ref().unwrap().buffers["mu_product"];
        assert_eq!(saved.shape(), &[] as &[usize]);
        assert_eq!(saved.dtype(), DType::F32);
        let want = (1..=steps).fold(1.0f32, |p, t| p * mu(t as f64) as f32);
        assert_eq!(saved.item::<f32>(), want, "parameter {k}");
    }
    // A state saved with one equal value per element (before this layout) still loads.
    let mut old = st.clone();
    let p0 = old.params[0].as_mut().unwrap();
    let v = p0.buffers["mu_product"].item::<f32>();
    p0.buffers.insert("mu_product".into(), Tensor::from_vec(vec![v; 12], &[3, 4]));
    let mut b = NAdam::new(copies(&params), options.clone()).unwrap();
    b.load_state_dict(&old).unwrap();
    assert_eq!(b.state_dict().params[0].as_ref().unwrap().buffers["mu_product"].item::<f32>(), v);
    // A stepped parameter without its mu_product is refused by name.
    let mut missing = st.clone();
    missing.params[1].as_mut().unwrap().buffers.remove("mu_product");
    expect_err(NAdam::new(copies(&params), options).unwrap().load_state_dict(&missing), &["parameter 1", "mu_product"]);
}

#[test]
fn state_dict_contents() {
    let params = fresh_params();
    let mut opt = Adam::new(params.clone(), AdamOptions { lr: 0.01, ..Default::default() }).unwrap();
    let empty = opt.state_dict();
    assert!(empty.params.iter().all(Option::is_none));
    assert!(empty.to_tensors().is_empty());
    for t in 0..4 {
        set_grads(&params, t);
        opt.step().unwrap();
    }
    let st = opt.state_dict();
    assert_eq!(st.optimizer, "adam");
    assert_eq!(st.groups.len(), 1);
    assert_eq!(st.groups[0].num_params, 2);
    // Parameter 1 had no gradient at step t = 1, so it took 3 steps.
    assert_eq!(st.params[0].as_ref().unwrap().step, 4);
    assert_eq!(st.params[1].as_ref().unwrap().step, 3);
    assert_eq!((opt.param_step(0), opt.param_step(1)), (4, 3));
    let names: Vec<String> = st.to_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["state.0.exp_avg", "state.0.exp_avg_sq", "state.1.exp_avg", "state.1.exp_avg_sq"]);
    let meta = st.metadata();
    assert_eq!(meta["optimizer.kind"], "adam");
    assert!(meta["optimizer.groups"].contains("\"lr\""));
    // exp_avg after one step is (1 - beta1) * g.
    let mut one = Adam::new(fresh_params(), AdamOptions::default()).unwrap();
    let g = grad_at(&[3, 4], 0, 0.0);
    one.params()[0].set_grad(Some(g.clone()));
    one.step().unwrap();
    let m = one.buffer(0, "exp_avg").unwrap().to_vec::<f32>();
    for (m, g) in m.iter().zip(g.to_vec::<f32>()) {
        assert!((m - 0.1 * g).abs() < 1e-6);
    }
    assert!(one.buffer(0, "max_exp_avg_sq").is_none());
    assert!(one.buffer(1, "exp_avg").is_none());
}

fn expect_err(r: tensorbrain::Result<impl std::fmt::Debug>, parts: &[&str]) {
    let e = r.expect_err("expected an error").to_string();
    for p in parts {
        assert!(e.contains(p), "error {e:?} should mention {p:?}");
    }
}

#[test]
fn load_state_dict_rejects_mismatches() {
    let params = fresh_params();
    let mut adam = Adam::new(params.clone(), AdamOptions { amsgrad: true, ..Default::default() }).unwrap();
    set_grads(&params, 0);
    adam.step().unwrap();
    let good = adam.state_dict();

    // Another optimizer kind.
    let mut sgd = Sgd::new(fresh_params(), SgdOptions::default()).unwrap();
    expect_err(sgd.load_state_dict(&good), &["'adam'", "'sgd'"]);
    // Group count and group size.
    let p = fresh_params();
    let mut two = Adam::with_groups(vec![
        ParamGroup::new(vec![p[0].clone()], AdamOptions::default()),
        ParamGroup::new(vec![p[1].clone()], AdamOptions::default()),
    ])
    .unwrap();
    expect_err(two.load_state_dict(&good), &["1 parameter groups", "has 2"]);
    let mut fewer = Adam::new(vec![fresh_params()[0].clone()], AdamOptions::default()).unwrap();
    expect_err(fewer.load_state_dict(&good), &["group 0", "2 parameters in the state but 1"]);
    // Shapes.
    let mut other_shape =
        Adam::new(vec![Tensor::zeros(&[4, 3], DType::F32), Tensor::zeros(&[5], DType::F32)], AdamOptions::default()).unwrap();
    expect_err(other_shape.load_state_dict(&good), &["exp_avg", "parameter 0", "[3, 4]", "[4, 3]"]);
    // Missing and unknown buffers.
    let mut missing = good.clone();
    missing.params[1].as_mut().unwrap().buffers.remove("max_exp_avg_sq");
    let mut target = Adam::new(fresh_params(), AdamOptions::default()).unwrap();
    expect_err(target.load_state_dict(&missing), &["parameter 1", "max_exp_avg_sq"]);
    let mut unknown = good.clone();
    unknown.params[0].as_mut().unwrap().buffers.insert("momentum".into(), Tensor::zeros(&[3, 4], DType::F32));
    expect_err(target.load_state_dict(&unknown), &["unknown state buffer 'momentum'"]);
    // Missing and invalid hyperparameters.
    let mut no_lr = good.clone();
    no_lr.groups[0].hyperparameters.0.remove("lr");
    expect_err(target.load_state_dict(&no_lr), &["'lr' is missing"]);
    let mut bad_beta = good.clone();
    bad_beta.groups[0].hyperparameters.set("beta2", 1.0);
    expect_err(target.load_state_dict(&bad_beta), &["beta2", "[0, 1)"]);
    // A failed load changes nothing; a good one works afterwards.
    assert_eq!(target.param_step(0), 0);
    assert!(target.lr() == 1e-3 && !target.param_groups()[0].options.amsgrad);
    target.load_state_dict(&good).unwrap();
    assert_eq!(target.param_step(0), 1);
    assert!(target.param_groups()[0].options.amsgrad);

    // from_tensors errors.
    let meta = good.metadata();
    expect_err(OptimizerState::from_tensors(vec![("bogus".to_string(), Tensor::zeros(&[1], DType::F32))], &meta), &["bogus"]);
    expect_err(
        OptimizerState::from_tensors(vec![("state.7.exp_avg".to_string(), Tensor::zeros(&[1], DType::F32))], &meta),
        &["parameter 7"],
    );
    let mut no_kind = meta.clone();
    no_kind.remove("optimizer.kind");
    expect_err(OptimizerState::from_tensors(good.to_tensors(), &no_kind), &["optimizer.kind"]);
    let mut bad_json = meta.clone();
    bad_json.insert("optimizer.groups".into(), "[{".into());
    expect_err(OptimizerState::from_tensors(good.to_tensors(), &bad_json), &["optimizer.groups", "JSON"]);
}

#[test]
fn loaded_state_is_cast_to_the_parameter_dtype() {
    let p32 = fresh_params();
    let mut a = Adam::new(p32.clone(), AdamOptions::default()).unwrap();
    set_grads(&p32, 0);
    a.step().unwrap();
    let p64: Vec<Tensor> = p32.iter().map(|p| p.to_dtype(DType::F64).detach().set_requires_grad(true)).collect();
    let mut b = Adam::new(p64.clone(), AdamOptions::default()).unwrap();
    b.load_state_dict(&a.state_dict()).unwrap();
    assert_eq!(b.buffer(0, "exp_avg").unwrap().dtype(), DType::F64);
    for p in &p64 {
        p.set_grad(Some(Tensor::ones(p.shape(), DType::F64)));
    }
    b.step().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Hyperparameter validation and bad inputs
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_hyperparameters_are_rejected() {
    let p = || vec![Tensor::zeros(&[2], DType::F32)];
    expect_err(Sgd::new(p(), SgdOptions { lr: -0.1, ..Default::default() }), &["SGD", "learning rate", "-0.1", ">= 0"]);
    expect_err(Sgd::new(p(), SgdOptions { lr: f64::NAN, ..Default::default() }), &["SGD", "learning rate", "NaN"]);
    expect_err(Sgd::new(p(), SgdOptions { momentum: -0.5, ..Default::default() }), &["momentum", "-0.5"]);
    expect_err(Sgd::new(p(), SgdOptions { weight_decay: -1.0, ..Default::default() }), &["weight_decay"]);
    expect_err(Sgd::new(p(), SgdOptions { nesterov: true, ..Default::default() }), &["Nesterov", "momentum"]);
    expect_err(
        Sgd::new(p(), SgdOptions { nesterov: true, momentum: 0.9, dampening: 0.1, ..Default::default() }),
        &["Nesterov", "dampening"],
    );
    expect_err(Adam::new(p(), AdamOptions { lr: -1.0, ..Default::default() }), &["Adam", "learning rate"]);
    expect_err(Adam::new(p(), AdamOptions { betas: (1.0, 0.999), ..Default::default() }), &["Adam", "beta1", "1", "[0, 1)"]);
    expect_err(Adam::new(p(), AdamOptions { betas: (0.9, -0.1), ..Default::default() }), &["beta2", "-0.1"]);
    expect_err(Adam::new(p(), AdamOptions { eps: -1e-8, ..Default::default() }), &["epsilon"]);
    expect_err(AdamW::new(p(), AdamWOptions { weight_decay: -0.01, ..Default::default() }), &["AdamW", "weight_decay"]);
    expect_err(AdamW::new(p(), AdamWOptions { betas: (0.9, 1.5), ..Default::default() }), &["AdamW", "beta2", "1.5"]);
    expect_err(Lion::new(p(), LionOptions { betas: (0.9, 1.0), ..Default::default() }), &["Lion", "beta2"]);
    expect_err(Lion::new(p(), LionOptions { lr: -1e-4, ..Default::default() }), &["Lion", "learning rate"]);
    expect_err(RmsProp::new(p(), RmsPropOptions { alpha: -0.9, ..Default::default() }), &["RMSprop", "alpha"]);
    expect_err(RmsProp::new(p(), RmsPropOptions { momentum: -0.9, ..Default::default() }), &["RMSprop", "momentum"]);
    // A bad group among good ones.
    expect_err(
        Sgd::with_groups(vec![
            ParamGroup::new(p(), SgdOptions::default()),
            ParamGroup::new(p(), SgdOptions { lr: -2.0, ..Default::default() }),
        ]),
        &["learning rate", "-2"],
    );
}

#[test]
fn bad_parameters_are_rejected() {
    expect_err(Sgd::new(vec![], SgdOptions::default()), &["sgd", "empty parameter list"]);
    expect_err(Sgd::new(vec![Tensor::zeros(&[2], DType::I64)], SgdOptions::default()), &["i64", "floating-point"]);
    let w = Tensor::zeros(&[2], DType::F32).set_requires_grad(true);
    expect_err(Sgd::new(vec![w.mul_scalar(2.0)], SgdOptions::default()), &["not a leaf", "mul_scalar"]);
    expect_err(Sgd::new(vec![w.clone(), w.clone()], SgdOptions::default()), &["more than once"]);
    let mut opt = Sgd::new(vec![w.clone()], SgdOptions::default()).unwrap();
    expect_err(opt.add_param_group(ParamGroup::new(vec![w.clone()], SgdOptions::default())), &["more than once"]);
    let v = Tensor::zeros(&[3], DType::F32);
    opt.add_param_group(ParamGroup::new(vec![v.clone()], SgdOptions { lr: 0.5, ..Default::default() })).unwrap();
    assert_eq!(opt.num_groups(), 2);
    assert_eq!(opt.group_lr(1), 0.5);
}

#[test]
fn bad_gradients_are_rejected_before_any_update() {
    let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    let b = Tensor::from_vec(vec![3.0f32, 4.0, 5.0], &[3]);
    let mut opt = Sgd::new(vec![a.clone(), b.clone()], SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
    a.set_grad(Some(Tensor::ones(&[2], DType::F32)));
    b.set_grad(Some(Tensor::ones(&[2], DType::F32)));
    expect_err(opt.step(), &["parameter 1", "[2]", "[3]"]);
    assert_eq!(a.to_vec::<f32>(), [1.0, 2.0], "no parameter may change when a later gradient is bad");
    b.set_grad(Some(Tensor::ones(&[3], DType::F64)));
    expect_err(opt.step(), &["parameter 1", "f64", "f32"]);
    assert_eq!(opt.param_step(0), 0);
}

// ---------------------------------------------------------------------------------------------
// Update mechanics
// ---------------------------------------------------------------------------------------------

#[test]
fn sgd_hand_computed() {
    // Momentum 0.5, dampening 0: buf1 = g1; buf2 = 0.5 * g1 + g2.
    let p = Tensor::from_vec(vec![1.0f64, -2.0], &[2]);
    let mut opt = Sgd::new(vec![p.clone()], SgdOptions { lr: 0.1, momentum: 0.5, ..Default::default() }).unwrap();
    p.set_grad(Some(Tensor::from_vec(vec![1.0f64, 2.0], &[2])));
    opt.step().unwrap();
    assert_close(&p.to_vec::<f64>(), &[0.9, -2.2], 1e-15, 0.0, "step 1");
    p.set_grad(Some(Tensor::from_vec(vec![-1.0f64, 0.0], &[2])));
    opt.step().unwrap();
    // buf = [0.5 - 1, 1 + 0] = [-0.5, 1].
    assert_close(&p.to_vec::<f64>(), &[0.95, -2.3], 1e-15, 0.0, "step 2");
    assert_eq!(opt.buffer(0, "momentum_buffer").unwrap().to_vec::<f64>(), [-0.5, 1.0]);
}

#[test]
fn params_without_grad_are_skipped() {
    let a = Tensor::from_vec(vec![1.0f32; 3], &[3]);
    let b = Tensor::from_vec(vec![2.0f32; 3], &[3]);
    let mut opt = Adam::new(vec![a.clone(), b.clone()], AdamOptions { lr: 0.1, ..Default::default() }).unwrap();
    a.set_grad(Some(Tensor::ones(&[3], DType::F32)));
    opt.step().unwrap();
    opt.step().unwrap();
    assert_eq!(b.to_vec::<f32>(), [2.0; 3]);
    assert_eq!((opt.param_step(0), opt.param_step(1)), (2, 0));
    assert!(opt.state_dict().params[1].is_none());
    // Adam's first step moves by lr * sign(g) (m_hat / sqrt(v_hat) = 1).
    assert!((a.to_vec::<f32>()[0] - 0.8).abs() < 1e-6);
    opt.zero_grad();
    assert!(a.grad().is_none() && b.grad().is_none());
}

#[test]
fn non_contiguous_parameter_is_updated_through_its_view() {
    let base = Tensor::from_vec((0..6).map(|x| x as f32).collect::<Vec<_>>(), &[2, 3]);
    let view = base.t(); // [3, 2], non-contiguous, a leaf (no grad tracking)
    assert!(!view.is_contiguous());
    let mut opt = Sgd::new(vec![view.clone()], SgdOptions { lr: 1.0, ..Default::default() }).unwrap();
    view.set_grad(Some(Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 0.0, 0.0, 10.0], &[3, 2])));
    opt.step().unwrap();
    // view[0][0] = base[0][0]; view[2][1] = base[1][2].
    assert_eq!(base.to_vec::<f32>(), [-1.0, 1.0, 2.0, 3.0, 4.0, -5.0]);
}

#[test]
fn gradient_sharing_the_parameter_storage() {
    let p = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    let mut opt = Sgd::new(vec![p.clone()], SgdOptions { lr: 0.25, ..Default::default() }).unwrap();
    p.set_grad(Some(p.clone()));
    opt.step().unwrap();
    assert_eq!(p.to_vec::<f32>(), [0.75, 1.5]);
}

#[test]
fn large_parameters_take_the_parallel_path_with_identical_results() {
    let n = 100_003; // above PARALLEL_THRESHOLD, not a multiple of the chunking
    let vals: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.001).sin()).collect();
    let grads: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.0007).cos()).collect();
    let run = |threads: usize| {
        tensorbrain::set_num_threads(threads);
        let p = Tensor::from_vec(vals.clone(), &[n]);
        let mut opt = RmsProp::new(vec![p.clone()], RmsPropOptions { momentum: 0.9, centered: true, ..Default::default() }).unwrap();
        for _ in 0..3 {
            p.set_grad(Some(Tensor::from_vec(grads.clone(), &[n])));
            opt.step().unwrap();
        }
        tensorbrain::set_num_threads(0);
        p.to_vec::<f32>()
    };
    let serial = run(1);
    let parallel = run(4);
    assert_eq!(serial, parallel);
    // And elementwise: the first elements equal a small run on just those elements.
    let p = Tensor::from_vec(vals[..8].to_vec(), &[8]);
    let mut opt = RmsProp::new(vec![p.clone()], RmsPropOptions { momentum: 0.9, centered: true, ..Default::default() }).unwrap();
    for _ in 0..3 {
        p.set_grad(Some(Tensor::from_vec(grads[..8].to_vec(), &[8])));
        opt.step().unwrap();
    }
    assert_eq!(p.to_vec::<f32>(), serial[..8]);
}

#[test]
fn half_precision_parameters_follow_f32() {
    for dtype in [DType::F16, DType::BF16] {
        let v: Vec<f32> = (0..2000).map(|i| ((i as f32) * 0.01).sin()).collect();
        // Gradients away from zero: Adam's second moment of a tiny gradient underflows f16
        // state, a limit of half-precision state (PyTorch's too), not of this code.
        let g: Vec<f32> = (0..2000).map(|i| ((i as f32) * 0.013).cos()).map(|c| c.signum() * (0.5 + c.abs())).collect();
        let p32 = Tensor::from_vec(v.clone(), &[2000]).to_dtype(dtype).to_dtype(DType::F32);
        let ph = p32.to_dtype(dtype);
        let mut a = AdamW::new(vec![p32.clone()], AdamWOptions { lr: 0.01, ..Default::default() }).unwrap();
        let mut b = AdamW::new(vec![ph.clone()], AdamWOptions { lr: 0.01, ..Default::default() }).unwrap();
        for _ in 0..3 {
            p32.set_grad(Some(Tensor::from_vec(g.clone(), &[2000])));
            ph.set_grad(Some(Tensor::from_vec(g.clone(), &[2000]).to_dtype(dtype)));
            a.step().unwrap();
            b.step().unwrap();
        }
        assert_eq!(b.buffer(0, "exp_avg").unwrap().dtype(), dtype);
        let tol = if dtype == DType::F16 { 2e-3 } else { 2e-2 };
        assert_close(&ph.to_vec::<f64>(), &p32.to_vec::<f64>(), tol, tol, &format!("{dtype} AdamW"));
        assert_ne!(ph.to_vec::<f32>(), Tensor::from_vec(v.clone(), &[2000]).to_dtype(dtype).to_vec::<f32>());
    }
}

#[test]
fn lion_moves_by_lr_times_sign() {
    let p = Tensor::from_vec(vec![1.0f64, 1.0, 1.0], &[3]);
    let mut opt = Lion::new(vec![p.clone()], LionOptions { lr: 0.1, weight_decay: 0.5, ..Default::default() }).unwrap();
    p.set_grad(Some(Tensor::from_vec(vec![3.0f64, -1e-3, 0.0], &[3])));
    opt.step().unwrap();
    // Decay to 1 - 0.1 * 0.5 = 0.95, then -0.1 * sign(0.1 * g).
    assert_close(&p.to_vec::<f64>(), &[0.85, 1.05, 0.95], 1e-15, 0.0, "lion");
    assert_close(&opt.buffer(0, "exp_avg").unwrap().to_vec::<f64>(), &[0.03, -1e-5, 0.0], 1e-12, 0.0, "lion m");
}

#[test]
fn optimizer_trait_lr_and_momentum() {
    let p = fresh_params();
    let mut opt = Adam::with_groups(vec![
        ParamGroup::new(vec![p[0].clone()], AdamOptions { lr: 0.1, ..Default::default() }),
        ParamGroup::new(vec![p[1].clone()], AdamOptions { lr: 0.2, betas: (0.5, 0.9), ..Default::default() }),
    ])
    .unwrap();
    assert_eq!(opt.lr(), 0.1);
    assert_eq!((opt.group_lr(1), opt.group_momentum(1)), (0.2, Some(0.5)));
    opt.set_lr(0.3);
    assert_eq!((opt.group_lr(0), opt.group_lr(1)), (0.3, 0.3));
    assert!(opt.set_group_momentum(0, 0.8));
    assert_eq!(opt.param_groups()[0].options.betas, (0.8, 0.999));
    opt.options_mut(1).weight_decay = 0.5;
    assert_eq!(opt.param_groups()[1].options.weight_decay, 0.5);
    assert_eq!(opt.params().len(), 2);
    assert!(opt.params()[1].shares_storage(&p[1]));
}

#[test]
fn training_a_linear_model_converges() {
    // y = 2 x0 - 3 x1 + 0.5, fitted with AdamW + warmup/cosine and gradient clipping.
    let xs: Vec<f64> = (0..64).map(|i| ((i as f64) * 0.77).sin()).collect();
    let xs2: Vec<f64> = (0..64).map(|i| ((i as f64) * 1.31).cos()).collect();
    let x0 = Tensor::from_vec(xs.clone(), &[64]);
    let x1 = Tensor::from_vec(xs2.clone(), &[64]);
    let y = Tensor::from_vec(xs.iter().zip(&xs2).map(|(a, b)| 2.0 * a - 3.0 * b + 0.5).collect::<Vec<_>>(), &[64]);
    let w = Tensor::zeros(&[2], DType::F64).set_requires_grad(true);
    let b = Tensor::zeros(&[1], DType::F64).set_requires_grad(true);
    let mut opt = AdamW::new(vec![w.clone(), b.clone()], AdamWOptions { lr: 0.1, weight_decay: 0.0, ..Default::default() }).unwrap();
    let mut sched = LinearWarmupCosine::new(&mut opt, 10, 300, 0.1, 1e-3).unwrap();
    let loss_at = || {
        let w0 = w.slice(0, 0, 1, 1);
        let w1 = w.slice(0, 1, 2, 1);
        let r = x0.mul(&w0).add(&x1.mul(&w1)).add(&b).sub(&y);
        r.mul(&r).mean(&[], false)
    };
    let first = loss_at().item::<f64>();
    for _ in 0..300 {
        opt.zero_grad();
        loss_at().backward();
        clip_grad_norm(&opt.params(), 5.0, 2.0).unwrap();
        opt.step().unwrap();
        sched.step(&mut opt);
    }
    let last = loss_at().item::<f64>();
    assert!(last < first * 1e-4, "loss {first} -> {last}");
    assert_close(&w.to_vec::<f64>(), &[2.0, -3.0], 1e-2, 1e-2, "weights");
    assert_eq!(opt.lr(), 1e-3);
}

// ---------------------------------------------------------------------------------------------
// Clipping
// ---------------------------------------------------------------------------------------------

#[test]
fn clip_grad_norm_values() {
    let a = Tensor::zeros(&[2, 2], DType::F32);
    let b = Tensor::zeros(&[2], DType::F64);
    let c = Tensor::zeros(&[3], DType::F32); // no gradient: ignored
    let set = || {
        a.set_grad(Some(Tensor::from_vec(vec![3.0f32, 0.0, 0.0, -4.0], &[2, 2])));
        b.set_grad(Some(Tensor::from_vec(vec![12.0f64, 0.0], &[2])));
    };
    let params = [a.clone(), b.clone(), c.clone()];
    set();
    // L2: sqrt(9 + 16 + 144) = 13.
    let total = clip_grad_norm(&params, 6.5, 2.0).unwrap();
    assert!((total - 13.0).abs() < 1e-12);
    let coef = 6.5 / (13.0 + 1e-6);
    assert_close(&a.grad().unwrap().to_vec::<f64>(), &[3.0 * coef, 0.0, 0.0, -4.0 * coef], 1e-7, 0.0, "a");
    assert_close(&b.grad().unwrap().to_vec::<f64>(), &[12.0 * coef, 0.0], 1e-15, 0.0, "b");
    assert_eq!(b.grad().unwrap().dtype(), DType::F64);
    assert!(c.grad().is_none());
    // Under the limit: untouched.
    set();
    let before = a.grad().unwrap();
    assert_eq!(clip_grad_norm(&params, 100.0, 2.0).unwrap(), 13.0);
    assert!(a.grad().unwrap().shares_storage(&before));
    // Inf norm = max |g| = 12; L1 = 19; p = 3.
    set();
    assert_eq!(clip_grad_norm(&params, 1e9, f64::INFINITY).unwrap(), 12.0);
    assert_eq!(clip_grad_norm(&params, 1e9, 1.0).unwrap(), 19.0);
    let p3 = clip_grad_norm(&params, 1e9, 3.0).unwrap();
    assert!((p3 - (27.0f64 + 64.0 + 1728.0).cbrt()).abs() < 1e-12);
    set();
    clip_grad_norm(&params, 1.2, f64::INFINITY).unwrap();
    assert_close(&b.grad().unwrap().to_vec::<f64>(), &[12.0 * 1.2 / (12.0 + 1e-6), 0.0], 1e-15, 0.0, "inf clip");
    // No gradients at all: norm 0.
    assert_eq!(clip_grad_norm(&[c.clone()], 1.0, 2.0).unwrap(), 0.0);
    // Non-finite: NaN norm propagates into the gradients, as in PyTorch.
    a.set_grad(Some(Tensor::from_vec(vec![f32::NAN, 1.0, 0.0, 0.0], &[2, 2])));
    assert!(clip_grad_norm(&[a.clone()], 1.0, 2.0).unwrap().is_nan());
    assert!(a.grad().unwrap().to_vec::<f32>().iter().all(|x| x.is_nan()));
    // Bad arguments.
    expect_err(clip_grad_norm(&params, 1.0, 0.0), &["clip_grad_norm", "norm_type"]);
    expect_err(clip_grad_norm(&params, 1.0, -2.0), &["norm_type", "-2"]);
    expect_err(clip_grad_norm(&params, f64::NAN, 2.0), &["max_norm"]);
}

#[test]
fn clip_grad_norm_non_contiguous_and_shared_gradients() {
    // A gradient produced by backward of a sum is an expanded (stride 0) view; two
    // parameters' gradients may share storage. Clipping must scale each exactly once.
    let a = Tensor::zeros(&[2, 3], DType::F32).set_requires_grad(true);
    let b = Tensor::zeros(&[2, 3], DType::F32).set_requires_grad(true);
    a.sum_all().add(&b.sum_all()).backward();
    let total = clip_grad_norm(&[a.clone(), b.clone()], 1.0, 2.0).unwrap();
    assert!((total - 12f64.sqrt()).abs() < 1e-6);
    let expect = 1.0 / (12f64.sqrt() + 1e-6);
    assert_close(&a.grad().unwrap().to_vec::<f64>(), &[expect; 6], 1e-6, 0.0, "a");
    assert_close(&b.grad().unwrap().to_vec::<f64>(), &[expect; 6], 1e-6, 0.0, "b");
    let g = non_contiguous(&Tensor::from_vec(vec![3.0f32, 0.0, 0.0, 4.0, 0.0, 0.0], &[2, 3]));
    a.set_grad(Some(g));
    assert!((clip_grad_norm(&[a.clone()], 100.0, 2.0).unwrap() - 5.0).abs() < 1e-12);
}

#[test]
fn clip_grad_value_clamps() {
    let a = Tensor::zeros(&[4], DType::F32);
    a.set_grad(Some(Tensor::from_vec(vec![-3.0f32, 0.5, 2.0, f32::NAN], &[4])));
    clip_grad_value(&[a.clone()], 1.0).unwrap();
    let g = a.grad().unwrap().to_vec::<f32>();
    assert_eq!(&g[..3], [-1.0, 0.5, 1.0]);
    assert!(g[3].is_nan());
    expect_err(clip_grad_value(&[a.clone()], -1.0), &["clip_grad_value", "-1"]);
}

// ---------------------------------------------------------------------------------------------
// Schedulers: state, errors, semantics
// ---------------------------------------------------------------------------------------------

fn two_group_sgd() -> Sgd {
    let p = fresh_params();
    Sgd::with_groups(vec![
        ParamGroup::new(vec![p[0].clone()], SgdOptions { lr: 0.1, momentum: 0.9, ..Default::default() }),
        ParamGroup::new(vec![p[1].clone()], SgdOptions { lr: 0.02, momentum: 0.9, ..Default::default() }),
    ])
    .unwrap()
}

type MakeSched = Box<dyn Fn(&mut dyn Optimizer) -> Box<dyn LrScheduler>>;

#[test]
fn scheduler_state_round_trip() {
    let makers: Vec<MakeSched> = vec![
        Box::new(|o| Box::new(StepLR::new(o, 3, 0.5).unwrap())),
        Box::new(|o| Box::new(MultiStepLR::new(o, &[2, 6, 6, 9], 0.3).unwrap())),
        Box::new(|o| Box::new(ExponentialLR::new(o, 0.9).unwrap())),
        Box::new(|o| Box::new(CosineAnnealingLR::new(o, 5, 1e-3).unwrap())),
        Box::new(|o| Box::new(LinearWarmupCosine::new(o, 3, 12, 0.2, 1e-4).unwrap())),
        Box::new(|o| Box::new(OneCycleLR::new(o, OneCycleOptions::new(0.5, 14)).unwrap())),
        Box::new(|o| {
            Box::new(
                ReduceLROnPlateau::new(o, PlateauOptions { patience: 1, cooldown: 1, factor: 0.5, ..Default::default() }).unwrap(),
            )
        }),
    ];
    let metric = |t: usize| [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8][t];
    for make in makers {
        let mut a = two_group_sgd();
        let mut sa = make(&mut a);
        for t in 0..6 {
            step_once(&mut a);
            sa.step_with_metric(&mut a, metric(t));
        }
        let opt_state = a.state_dict();
        let st = SchedulerState::from_metadata(&sa.state_dict().to_metadata()).unwrap();
        assert_eq!(st, sa.state_dict());
        let mut b = two_group_sgd();
        let mut sb = make(&mut b);
        sb.load_state_dict(&st).unwrap();
        b.load_state_dict(&opt_state).unwrap();
        assert_eq!(sb.get_lr(), sa.get_lr());
        assert_eq!(sb.last_epoch(), 6);
        for t in 6..14 {
            step_once(&mut a);
            step_once(&mut b);
            sa.step_with_metric(&mut a, metric(t));
            sb.step_with_metric(&mut b, metric(t));
            assert_eq!(sa.get_lr(), sb.get_lr(), "{} at step {t}", st.kind);
            assert_eq!((a.group_lr(0), a.group_momentum(0)), (b.group_lr(0), b.group_momentum(0)));
        }
        // Wrong kind.
        let mut c = two_group_sgd();
        let sc = StepLR::new(&mut c, 1, 0.5).unwrap();
        if st.kind != "step_lr" {
            let mut sc = sc;
            expect_err(sc.load_state_dict(&st), &["load_state_dict", "step_lr", &st.kind]);
        }
    }
}

#[test]
fn scheduler_errors() {
    let mut opt = two_group_sgd();
    expect_err(StepLR::new(&mut opt, 0, 0.5), &["StepLR", "step_size"]);
    expect_err(CosineAnnealingLR::new(&mut opt, 0, 0.0), &["t_max"]);
    expect_err(LinearWarmupCosine::new(&mut opt, 10, 10, 0.0, 0.0), &["total_steps (10)", "warmup_steps (10)"]);
    expect_err(LinearWarmupCosine::new(&mut opt, 1, 10, 1.5, 0.0), &["start_factor"]);
    expect_err(ReduceLROnPlateau::new(&mut opt, PlateauOptions { factor: 1.0, ..Default::default() }), &["factor", "< 1.0"]);
    expect_err(
        ReduceLROnPlateau::new(&mut opt, PlateauOptions { min_lrs: Some(vec![0.0; 3]), ..Default::default() }),
        &["min_lrs", "expected 2", "got 3"],
    );
    let mut o = OneCycleOptions::new(0.1, 10);
    o.max_lr = vec![0.1, 0.2, 0.3];
    expect_err(OneCycleLR::new(&mut opt, o), &["max_lr", "expected 2", "got 3"]);
    let mut o = OneCycleOptions::new(0.1, 10);
    o.pct_start = 1.5;
    expect_err(OneCycleLR::new(&mut opt, o), &["pct_start"]);
    expect_err(OneCycleLR::new(&mut opt, OneCycleOptions::new(0.1, 0)), &["total_steps"]);
    // Stepping past the end of a one-cycle schedule.
    let mut sched = OneCycleLR::new(&mut opt, OneCycleOptions::new(0.1, 3)).unwrap();
    for _ in 0..3 {
        sched.try_step(&mut opt).unwrap();
    }
    let lr = opt.lr();
    expect_err(sched.try_step(&mut opt), &["tried to step 4 times", "total steps is 3"]);
    assert_eq!((opt.lr(), sched.last_epoch()), (lr, 3));
    // Plateau without a metric, and a scheduler handed an optimizer of another shape.
    let mut plateau = ReduceLROnPlateau::new(&mut opt, PlateauOptions::default()).unwrap();
    expect_err(plateau.try_step(&mut opt), &["step_with_metric"]);
    let mut one_group = Sgd::new(fresh_params(), SgdOptions::default()).unwrap();
    let mut step = StepLR::new(&mut opt, 2, 0.5).unwrap();
    expect_err(step.try_step(&mut one_group), &["1 parameter groups", "built for 2"]);
    // OneCycle needs a momentum; every optimizer here has one, and SGD's is cycled.
    let mut sgd = Sgd::new(fresh_params(), SgdOptions { lr: 0.1, ..Default::default() }).unwrap();
    OneCycleLR::new(&mut sgd, OneCycleOptions::new(1.0, 10)).unwrap();
    assert_eq!(sgd.group_momentum(0), Some(0.95));
    // PyTorch's value at step 0 comes from the cosine anneal, not the division, so it is
    // 1/25 up to rounding.
    assert!((sgd.lr() - 1.0 / 25.0).abs() < 1e-15);
}

#[test]
#[should_panic(expected = "step_with_metric")]
fn plateau_step_without_metric_panics() {
    let mut opt = two_group_sgd();
    let mut s = ReduceLROnPlateau::new(&mut opt, PlateauOptions::default()).unwrap();
    s.step(&mut opt);
}

#[test]
fn chainable_schedulers_follow_manual_lr_changes() {
    // Like PyTorch: StepLR multiplies the current lr, so a manual change carries on.
    let mut opt = two_group_sgd();
    let mut s = StepLR::new(&mut opt, 2, 0.5).unwrap();
    s.step(&mut opt);
    opt.set_group_lr(0, 1.0);
    s.step(&mut opt);
    assert_eq!(opt.group_lr(0), 0.5);
    assert_eq!(opt.group_lr(1), 0.01);
    assert_eq!(s.get_lr(), vec![0.5, 0.01]);
}

#[test]
fn warmup_cosine_closed_form() {
    let mut opt = two_group_sgd();
    let s = LinearWarmupCosine::new(&mut opt, 4, 12, 0.0, 0.001).unwrap();
    assert_eq!(opt.lr(), 0.0);
    assert_eq!(s.lr_at(0.1, 2), 0.05);
    assert_eq!(s.lr_at(0.1, 4), 0.1);
    assert!((s.lr_at(0.1, 8) - (0.001 + 0.099 * 0.5)).abs() < 1e-15);
    assert_eq!(s.lr_at(0.1, 12), 0.001);
    assert_eq!(s.lr_at(0.1, 1000), 0.001);
}
