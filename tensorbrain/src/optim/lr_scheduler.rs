//! Learning-rate schedulers (`torch.optim.lr_scheduler`).
//!
//! A scheduler is built over an optimizer (reading each group's current lr as its base lr) and
//! stepped after each `optimizer.step()` with the optimizer passed in again:
//! `sched.step(&mut opt)`. As in PyTorch, [`StepLR`], [`MultiStepLR`], [`ExponentialLR`] and
//! [`CosineAnnealingLR`] are chainable (each step updates the group's *current* lr), while
//! [`OneCycleLR`] and [`LinearWarmupCosine`] compute each lr from the step number alone.
//! [`ReduceLROnPlateau`] steps with a metric: `sched.step_with_metric(&mut opt, val_loss)`.

use std::collections::{BTreeMap, HashMap};
use std::f64::consts::PI;

use serde_json::{json, Map, Value};

use super::Optimizer;
use crate::tensor::{Error, Result};

/// The interface of every scheduler, object safe (`Box<dyn LrScheduler>`).
pub trait LrScheduler {
    /// Advances one step and writes the new learning rates into `opt`. Errors if `opt` has a
    /// different number of groups than the scheduler was built with, if a [`OneCycleLR`] is
    /// stepped past its total, or for [`ReduceLROnPlateau`], which needs a metric.
    fn try_step(&mut self, opt: &mut dyn Optimizer) -> Result<()>;

    /// [`LrScheduler::try_step`], panicking on error.
    #[track_caller]
    fn step(&mut self, opt: &mut dyn Optimizer) {
        if let Err(e) = self.try_step(opt) {
            panic!("{e}")
        }
    }

    /// Steps with a metric (validation loss, accuracy): [`ReduceLROnPlateau`] uses it, the
    /// other schedulers ignore it and step as usual.
    fn try_step_with_metric(&mut self, opt: &mut dyn Optimizer, metric: f64) -> Result<()> {
        let _ = metric;
        self.try_step(opt)
    }

    /// [`LrScheduler::try_step_with_metric`], panicking on error.
    #[track_caller]
    fn step_with_metric(&mut self, opt: &mut dyn Optimizer, metric: f64) {
        if let Err(e) = self.try_step_with_metric(opt, metric) {
            panic!("{e}")
        }
    }

    /// The learning rates (one per group) set by the last step or by construction
    /// (PyTorch's `get_last_lr()`).
    fn get_lr(&self) -> Vec<f64>;

    /// How many steps have been taken (0 right after construction).
    fn last_epoch(&self) -> usize;

    /// The scheduler's counters and hyperparameters.
    fn state_dict(&self) -> SchedulerState;

    /// Restores [`LrScheduler::state_dict`] output from a scheduler of the same kind over the
    /// same number of groups. The optimizer's learning rates are not touched: load the
    /// optimizer's own state for those.
    fn load_state_dict(&mut self, state: &SchedulerState) -> Result<()>;
}

/// A scheduler's state: named scalars and per-group lists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulerState {
    /// The scheduler's name (`"step_lr"`, `"one_cycle_lr"`, ...).
    pub kind: String,
    pub scalars: BTreeMap<String, f64>,
    pub lists: BTreeMap<String, Vec<f64>>,
}

const KIND_KEY: &str = "scheduler.kind";
const STATE_KEY: &str = "scheduler.state";

fn sched_err(msg: impl std::fmt::Display) -> Error {
    Error::Msg(msg.to_string())
}

impl SchedulerState {
    fn new(kind: &str) -> Self {
        SchedulerState { kind: kind.to_string(), ..Default::default() }
    }

    fn set(&mut self, key: &str, v: f64) {
        self.scalars.insert(key.to_string(), v);
    }

    fn set_list(&mut self, key: &str, v: &[f64]) {
        self.lists.insert(key.to_string(), v.to_vec());
    }

    /// Scalar `key`; a missing key is an error naming the scheduler.
    pub fn get(&self, key: &str) -> Result<f64> {
        self.scalars
            .get(key)
            .copied()
            .ok_or_else(|| sched_err(format!("{} state: '{key}' is missing", self.kind)))
    }

    fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        if v >= 0.0 && v.fract() == 0.0 && v <= 2f64.powi(53) {
            Ok(v as usize)
        } else {
            Err(sched_err(format!("{} state: '{key}' must be a non-negative integer, got {v}", self.kind)))
        }
    }

    fn get_bool(&self, key: &str) -> Result<bool> {
        Ok(self.get(key)? != 0.0)
    }

    /// List `key`; a missing key is an error naming the scheduler.
    pub fn get_list(&self, key: &str) -> Result<&[f64]> {
        self.lists
            .get(key)
            .map(|v| v.as_slice())
            .ok_or_else(|| sched_err(format!("{} state: list '{key}' is missing", self.kind)))
    }

    /// The state as string metadata (`scheduler.kind`, `scheduler.state`), for a safetensors
    /// checkpoint. Floats round-trip exactly, `inf` included.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let f = |v: &f64| Value::String(format!("{v:?}"));
        let scalars: Map<String, Value> = self.scalars.iter().map(|(k, v)| (k.clone(), f(v))).collect();
        let lists: Map<String, Value> =
            self.lists.iter().map(|(k, v)| (k.clone(), Value::Array(v.iter().map(f).collect()))).collect();
        HashMap::from([
            (KIND_KEY.to_string(), self.kind.clone()),
            (STATE_KEY.to_string(), json!({ "scalars": scalars, "lists": lists }).to_string()),
        ])
    }

    /// Reads [`SchedulerState::to_metadata`] output back (other keys are ignored).
    pub fn from_metadata(metadata: &HashMap<String, String>) -> Result<Self> {
        let get = |k: &str| metadata.get(k).ok_or_else(|| sched_err(format!("scheduler state: metadata key '{k}' is missing")));
        let mut st = SchedulerState::new(get(KIND_KEY)?);
        let v: Value = serde_json::from_str(get(STATE_KEY)?)
            .map_err(|e| sched_err(format!("scheduler state: '{STATE_KEY}' is not valid JSON: {e}")))?;
        let num = |k: &str, v: &Value| -> Result<f64> {
            match v {
                Value::String(s) => s.parse::<f64>().ok(),
                Value::Number(n) => n.as_f64(),
                _ => None,
            }
            .ok_or_else(|| sched_err(format!("scheduler state: '{k}' holds a non-number {v}")))
        };
        if let Some(Value::Object(m)) = v.get("scalars") {
            for (k, x) in m {
                st.set(k, num(k, x)?);
            }
        } else {
            return Err(sched_err("scheduler state: 'scalars' object is missing"));
        }
        if let Some(Value::Object(m)) = v.get("lists") {
            for (k, x) in m {
                let Value::Array(a) = x else { return Err(sched_err(format!("scheduler state: '{k}' is not a list"))) };
                let list = a.iter().map(|x| num(k, x)).collect::<Result<Vec<_>>>()?;
                st.lists.insert(k.clone(), list);
            }
        } else {
            return Err(sched_err("scheduler state: 'lists' object is missing"));
        }
        Ok(st)
    }
}

/// What every scheduler keeps (PyTorch's `base_lrs`, `last_epoch`, `_step_count`, `_last_lr`).
#[derive(Clone, Debug)]
struct Base {
    name: &'static str,
    base_lrs: Vec<f64>,
    last_epoch: usize,
    step_count: u64,
    last_lr: Vec<f64>,
}

impl Base {
    fn new(name: &'static str, opt: &dyn Optimizer) -> Base {
        let lrs = current_lrs(opt);
        Base { name, base_lrs: lrs.clone(), last_epoch: 0, step_count: 1, last_lr: lrs }
    }

    fn check(&self, opt: &dyn Optimizer) -> Result<()> {
        if opt.num_groups() != self.base_lrs.len() {
            return Err(sched_err(format!(
                "{}: the optimizer has {} parameter groups but the scheduler was built for {}",
                self.name,
                opt.num_groups(),
                self.base_lrs.len()
            )));
        }
        Ok(())
    }

    /// Starts a step: checks the optimizer and advances the counters.
    fn advance(&mut self, opt: &dyn Optimizer) -> Result<()> {
        self.check(opt)?;
        self.last_epoch += 1;
        self.step_count += 1;
        Ok(())
    }

    fn apply(&mut self, opt: &mut dyn Optimizer, lrs: &[f64]) {
        for (g, &lr) in lrs.iter().enumerate() {
            opt.set_group_lr(g, lr);
        }
        self.last_lr = current_lrs(opt);
    }

    fn save(&self) -> SchedulerState {
        let mut st = SchedulerState::new(self.name);
        st.set("last_epoch", self.last_epoch as f64);
        st.set("step_count", self.step_count as f64);
        st.set_list("base_lrs", &self.base_lrs);
        st.set_list("last_lr", &self.last_lr);
        st
    }

    /// Reads the common fields after checking the kind and group count; the caller reads its
    /// own fields first so that a failure leaves the scheduler unchanged.
    fn load(&self, st: &SchedulerState) -> Result<Base> {
        if st.kind != self.name {
            return Err(sched_err(format!("load_state_dict: the state is from a '{}' scheduler but this is '{}'", st.kind, self.name)));
        }
        let base_lrs = st.get_list("base_lrs")?.to_vec();
        let last_lr = st.get_list("last_lr")?.to_vec();
        for (what, n) in [("base_lrs", base_lrs.len()), ("last_lr", last_lr.len())] {
            if n != self.base_lrs.len() {
                return Err(sched_err(format!(
                    "load_state_dict: {}: the state's '{what}' has {n} groups but the scheduler has {}",
                    self.name,
                    self.base_lrs.len()
                )));
            }
        }
        Ok(Base { name: self.name, base_lrs, last_epoch: st.get_usize("last_epoch")?, step_count: st.get_usize("step_count")? as u64, last_lr })
    }
}

fn current_lrs(opt: &dyn Optimizer) -> Vec<f64> {
    (0..opt.num_groups()).map(|g| opt.group_lr(g)).collect()
}

fn check_groups(name: &str, what: &str, n: usize, opt: &dyn Optimizer) -> Result<()> {
    if n != opt.num_groups() {
        return Err(sched_err(format!("{name}: expected {} values of {what} (one per parameter group), got {n}", opt.num_groups())));
    }
    Ok(())
}

macro_rules! common_methods {
    () => {
        fn get_lr(&self) -> Vec<f64> {
            self.base.last_lr.clone()
        }
        fn last_epoch(&self) -> usize {
            self.base.last_epoch
        }
    };
}

// ---------------------------------------------------------------------------------------------
// StepLR
// ---------------------------------------------------------------------------------------------

/// Multiplies each group's lr by `gamma` every `step_size` steps (`torch.optim.lr_scheduler.StepLR`).
#[derive(Clone, Debug)]
pub struct StepLR {
    base: Base,
    step_size: usize,
    gamma: f64,
}

impl StepLR {
    pub fn new(opt: &mut dyn Optimizer, step_size: usize, gamma: f64) -> Result<Self> {
        if step_size == 0 {
            return Err(sched_err("StepLR: step_size must be at least 1"));
        }
        Ok(StepLR { base: Base::new("step_lr", opt), step_size, gamma })
    }
}

impl LrScheduler for StepLR {
    fn try_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.base.advance(opt)?;
        let mut lrs = current_lrs(opt);
        if self.base.last_epoch % self.step_size == 0 {
            lrs.iter_mut().for_each(|lr| *lr *= self.gamma);
        }
        self.base.apply(opt, &lrs);
        Ok(())
    }
    common_methods!();
    fn state_dict(&self) -> SchedulerState {
        let mut st = self.base.save();
        st.set("step_size", self.step_size as f64);
        st.set("gamma", self.gamma);
        st
    }
    fn load_state_dict(&mut self, st: &SchedulerState) -> Result<()> {
        let base = self.base.load(st)?;
        let step_size = st.get_usize("step_size")?;
        if step_size == 0 {
            return Err(sched_err("StepLR state: step_size must be at least 1"));
        }
        let gamma = st.get("gamma")?;
        *self = StepLR { base, step_size, gamma };
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// MultiStepLR
// ---------------------------------------------------------------------------------------------

/// Multiplies each group's lr by `gamma` at each milestone (by `gamma^k` at a milestone listed
/// `k` times), `torch.optim.lr_scheduler.MultiStepLR`.
#[derive(Clone, Debug)]
pub struct MultiStepLR {
    base: Base,
    milestones: Vec<usize>,
    gamma: f64,
}

impl MultiStepLR {
    pub fn new(opt: &mut dyn Optimizer, milestones: &[usize], gamma: f64) -> Result<Self> {
        let mut milestones = milestones.to_vec();
        milestones.sort_unstable();
        Ok(MultiStepLR { base: Base::new("multi_step_lr", opt), milestones, gamma })
    }
}

impl LrScheduler for MultiStepLR {
    fn try_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.base.advance(opt)?;
        let e = self.base.last_epoch;
        let count = self.milestones.iter().filter(|&&m| m == e).count();
        let mut lrs = current_lrs(opt);
        if count > 0 {
            let f = self.gamma.powf(count as f64);
            lrs.iter_mut().for_each(|lr| *lr *= f);
        }
        self.base.apply(opt, &lrs);
        Ok(())
    }
    common_methods!();
    fn state_dict(&self) -> SchedulerState {
        let mut st = self.base.save();
        st.set_list("milestones", &self.milestones.iter().map(|&m| m as f64).collect::<Vec<_>>());
        st.set("gamma", self.gamma);
        st
    }
    fn load_state_dict(&mut self, st: &SchedulerState) -> Result<()> {
        let base = self.base.load(st)?;
        let milestones = st
            .get_list("milestones")?
            .iter()
            .map(|&m| if m >= 0.0 && m.fract() == 0.0 { Ok(m as usize) } else { Err(sched_err(format!("MultiStepLR state: bad milestone {m}"))) })
            .collect::<Result<Vec<_>>>()?;
        let gamma = st.get("gamma")?;
        *self = MultiStepLR { base, milestones, gamma };
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// ExponentialLR
// ---------------------------------------------------------------------------------------------

/// Multiplies each group's lr by `gamma` every step (`torch.optim.lr_scheduler.ExponentialLR`).
#[derive(Clone, Debug)]
pub struct ExponentialLR {
    base: Base,
    gamma: f64,
}

impl ExponentialLR {
    pub fn new(opt: &mut dyn Optimizer, gamma: f64) -> Result<Self> {
        Ok(ExponentialLR { base: Base::new("exponential_lr", opt), gamma })
    }
}

impl LrScheduler for ExponentialLR {
    fn try_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.base.advance(opt)?;
        let lrs: Vec<f64> = current_lrs(opt).iter().map(|lr| lr * self.gamma).collect();
        self.base.apply(opt, &lrs);
        Ok(())
    }
    common_methods!();
    fn state_dict(&self) -> SchedulerState {
        let mut st = self.base.save();
        st.set("gamma", self.gamma);
        st
    }
    fn load_state_dict(&mut self, st: &SchedulerState) -> Result<()> {
        let base = self.base.load(st)?;
        let gamma = st.get("gamma")?;
        *self = ExponentialLR { base, gamma };
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// CosineAnnealingLR
// ---------------------------------------------------------------------------------------------

/// Cosine annealing from the base lr to `eta_min` over `t_max` steps, then back up (periodic),
/// with PyTorch's recursive (chainable) formula, `torch.optim.lr_scheduler.CosineAnnealingLR`.
#[derive(Clone, Debug)]
pub struct CosineAnnealingLR {
    base: Base,
    t_max: usize,
    eta_min: f64,
}

impl CosineAnnealingLR {
    pub fn new(opt: &mut dyn Optimizer, t_max: usize, eta_min: f64) -> Result<Self> {
        if t_max == 0 {
            return Err(sched_err("CosineAnnealingLR: t_max must be at least 1"));
        }
        Ok(CosineAnnealingLR { base: Base::new("cosine_annealing_lr", opt), t_max, eta_min })
    }
}

impl LrScheduler for CosineAnnealingLR {
    fn try_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.base.advance(opt)?;
        let e = self.base.last_epoch as f64;
        let t = self.t_max as f64;
        let eta_min = self.eta_min;
        let current = current_lrs(opt);
        let lrs: Vec<f64> = if self.base.step_count == 1 && self.base.last_epoch > 0 {
            self.base.base_lrs.iter().map(|b| eta_min + (b - eta_min) * (1.0 + (e * PI / t).cos()) / 2.0).collect()
        } else if (self.base.last_epoch as i64 - 1 - self.t_max as i64).rem_euclid(2 * self.t_max as i64) == 0 {
            current
                .iter()
                .zip(&self.base.base_lrs)
                .map(|(lr, b)| lr + (b - eta_min) * (1.0 - (PI / t).cos()) / 2.0)
                .collect()
        } else {
            current
                .iter()
                .map(|lr| (1.0 + (PI * e / t).cos()) / (1.0 + (PI * (e - 1.0) / t).cos()) * (lr - eta_min) + eta_min)
                .collect()
        };
        self.base.apply(opt, &lrs);
        Ok(())
    }
    common_methods!();
    fn state_dict(&self) -> SchedulerState {
        let mut st = self.base.save();
        st.set("t_max", self.t_max as f64);
        st.set("eta_min", self.eta_min);
        st
    }
    fn load_state_dict(&mut self, st: &SchedulerState) -> Result<()> {
        let base = self.base.load(st)?;
        let t_max = st.get_usize("t_max")?;
        if t_max == 0 {
            return Err(sched_err("CosineAnnealingLR state: t_max must be at least 1"));
        }
        let eta_min = st.get("eta_min")?;
        *self = CosineAnnealingLR { base, t_max, eta_min };
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// LinearWarmupCosine
// ---------------------------------------------------------------------------------------------

/// Linear warmup then cosine decay, computed from the step number `t` for a group with base lr
/// `b` (no PyTorch class; equal to `SequentialLR([LinearLR(start_factor, 1, warmup_steps),
/// CosineAnnealingLR(total_steps - warmup_steps, min_lr)], milestones=[warmup_steps])` up to
/// `total_steps`, and to the `LambdaLR` of the same formula throughout):
///
/// - `t < warmup_steps`: `b * (start_factor + (1 - start_factor) * t / warmup_steps)`;
/// - `warmup_steps <= t < total_steps`:
///   `min_lr + (b - min_lr) * (1 + cos(pi * (t - warmup_steps) / (total_steps - warmup_steps))) / 2`;
/// - `t >= total_steps`: `min_lr`.
///
/// `min_lr` is absolute and shared by all groups. Each step overwrites the groups' lrs.
#[derive(Clone, Debug)]
pub struct LinearWarmupCosine {
    base: Base,
    warmup_steps: usize,
    total_steps: usize,
    start_factor: f64,
    min_lr: f64,
}

impl LinearWarmupCosine {
    /// Sets every group's lr to its value at step 0 (`base * start_factor`, or the base lr
    /// without warmup).
    pub fn new(opt: &mut dyn Optimizer, warmup_steps: usize, total_steps: usize, start_factor: f64, min_lr: f64) -> Result<Self> {
        Self::validate(warmup_steps, total_steps, start_factor, min_lr)?;
        let mut s = LinearWarmupCosine { base: Base::new("linear_warmup_cosine", opt), warmup_steps, total_steps, start_factor, min_lr };
        let lrs = s.lrs_at(0);
        s.base.apply(opt, &lrs);
        Ok(s)
    }

    fn validate(warmup_steps: usize, total_steps: usize, start_factor: f64, min_lr: f64) -> Result<()> {
        if total_steps <= warmup_steps {
            return Err(sched_err(format!(
                "LinearWarmupCosine: total_steps ({total_steps}) must be greater than warmup_steps ({warmup_steps})"
            )));
        }
        if !(0.0..=1.0).contains(&start_factor) {
            return Err(sched_err(format!("LinearWarmupCosine: start_factor must be in [0, 1], got {start_factor}")));
        }
        if !(min_lr >= 0.0) {
            return Err(sched_err(format!("LinearWarmupCosine: min_lr must be >= 0, got {min_lr}")));
        }
        Ok(())
    }

    /// The learning rate of a group with base lr `base` at step `t`.
    pub fn lr_at(&self, base: f64, t: usize) -> f64 {
        let (w, total, s0, min_lr) = (self.warmup_steps, self.total_steps, self.start_factor, self.min_lr);
        if t < w {
            base * (s0 + (1.0 - s0) * t as f64 / w as f64)
        } else if t < total {
            min_lr + (base - min_lr) * 0.5 * (1.0 + (PI * (t - w) as f64 / (total - w) as f64).cos())
        } else {
            min_lr
        }
    }

    fn lrs_at(&self, t: usize) -> Vec<f64> {
        self.base.base_lrs.iter().map(|&b| self.lr_at(b, t)).collect()
    }
}

impl LrScheduler for LinearWarmupCosine {
    fn try_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.base.advance(opt)?;
        let lrs = self.lrs_at(self.base.last_epoch);
        self.base.apply(opt, &lrs);
        Ok(())
    }
    common_methods!();
    fn state_dict(&self) -> SchedulerState {
        let mut st = self.base.save();
        st.set("warmup_steps", self.warmup_steps as f64);
        st.set("total_steps", self.total_steps as f64);
        st.set("start_factor", self.start_factor);
        st.set("min_lr", self.min_lr);
        st
    }
    fn load_state_dict(&mut self, st: &SchedulerState) -> Result<()> {
        let base = self.base.load(st)?;
        let (w, t) = (st.get_usize("warmup_steps")?, st.get_usize("total_steps")?);
        let (s0, min_lr) = (st.get("start_factor")?, st.get("min_lr")?);
        Self::validate(w, t, s0, min_lr)?;
        *self = LinearWarmupCosine { base, warmup_steps: w, total_steps: t, start_factor: s0, min_lr };
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// OneCycleLR
// ---------------------------------------------------------------------------------------------

/// How [`OneCycleLR`] interpolates within a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anneal {
    /// `end + (start - end) / 2 * (1 + cos(pi * pct))`.
    Cos,
    /// `start + (end - start) * pct`.
    Linear,
}

/// [`OneCycleLR`]'s settings; [`OneCycleOptions::new`] gives PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct OneCycleOptions {
    /// Peak lr: one value for every group, or one per group.
    pub max_lr: Vec<f64>,
    pub total_steps: usize,
    /// Fraction of the steps spent increasing the lr.
    pub pct_start: f64,
    pub anneal: Anneal,
    /// Cycle momentum (SGD/RMSprop) or beta1 (Adam/AdamW/Lion) inversely to the lr.
    pub cycle_momentum: bool,
    pub base_momentum: f64,
    pub max_momentum: f64,
    /// Initial lr = max_lr / div_factor.
    pub div_factor: f64,
    /// Final lr = initial lr / final_div_factor.
    pub final_div_factor: f64,
    /// Up, down to the initial lr, then down to the final lr (instead of up, down to final).
    pub three_phase: bool,
}

impl OneCycleOptions {
    /// PyTorch's defaults: pct_start 0.3, cosine, momentum cycled 0.95 -> 0.85, div_factor 25,
    /// final_div_factor 1e4, two phases.
    pub fn new(max_lr: f64, total_steps: usize) -> Self {
        OneCycleOptions {
            max_lr: vec![max_lr],
            total_steps,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum LrPoint {
    Initial,
    Max,
    Min,
}

#[derive(Clone, Copy, Debug)]
enum MomPoint {
    Base,
    Max,
}

#[derive(Clone, Copy, Debug)]
struct Phase {
    end_step: f64,
    lr: (LrPoint, LrPoint),
    momentum: (MomPoint, MomPoint),
}

/// The 1cycle policy (`torch.optim.lr_scheduler.OneCycleLR`): sets each group's lr (and
/// momentum) from the step number. Stepping past `total_steps` is an error, as in PyTorch.
#[derive(Clone, Debug)]
pub struct OneCycleLR {
    base: Base,
    options: OneCycleOptions,
    phases: Vec<Phase>,
    initial_lrs: Vec<f64>,
    max_lrs: Vec<f64>,
    min_lrs: Vec<f64>,
}

impl OneCycleLR {
    /// Sets every group's lr to `max_lr / div_factor` (and momentum to `max_momentum` when
    /// cycling), as PyTorch's constructor does.
    pub fn new(opt: &mut dyn Optimizer, options: OneCycleOptions) -> Result<Self> {
        let o = &options;
        if o.total_steps == 0 {
            return Err(sched_err("OneCycleLR: total_steps must be at least 1"));
        }
        if !(0.0..=1.0).contains(&o.pct_start) {
            return Err(sched_err(format!("OneCycleLR: pct_start must be in [0, 1], got {}", o.pct_start)));
        }
        let n = opt.num_groups();
        let max_lrs = match o.max_lr.len() {
            1 => vec![o.max_lr[0]; n],
            k => {
                check_groups("OneCycleLR", "max_lr", k, opt)?;
                o.max_lr.clone()
            }
        };
        if o.cycle_momentum && (0..n).any(|g| opt.group_momentum(g).is_none()) {
            return Err(sched_err("OneCycleLR: the optimizer must have a momentum or beta1 with cycle_momentum on"));
        }
        let phases = Self::phases(o);
        let mut start = 0.0;
        for (i, p) in phases.iter().enumerate() {
            if p.end_step - start == 0.0 {
                return Err(sched_err(format!(
                    "OneCycleLR: phase {i} has no steps (total_steps {} with pct_start {}); use more steps or another pct_start",
                    o.total_steps, o.pct_start
                )));
            }
            start = p.end_step;
        }
        let initial_lrs: Vec<f64> = max_lrs.iter().map(|m| m / o.div_factor).collect();
        let min_lrs = initial_lrs.iter().map(|i| i / o.final_div_factor).collect();
        for (g, &lr) in initial_lrs.iter().enumerate() {
            opt.set_group_lr(g, lr);
            if o.cycle_momentum {
                opt.set_group_momentum(g, o.max_momentum);
            }
        }
        let mut s = OneCycleLR { base: Base::new("one_cycle_lr", opt), options, phases, initial_lrs, max_lrs, min_lrs };
        let (lrs, moms) = s.values_at(0)?;
        s.set(opt, &lrs, &moms);
        Ok(s)
    }

    fn phases(o: &OneCycleOptions) -> Vec<Phase> {
        let total = o.total_steps as f64;
        if o.three_phase {
            vec![
                Phase { end_step: o.pct_start * total - 1.0, lr: (LrPoint::Initial, LrPoint::Max), momentum: (MomPoint::Max, MomPoint::Base) },
                Phase { end_step: 2.0 * o.pct_start * total - 2.0, lr: (LrPoint::Max, LrPoint::Initial), momentum: (MomPoint::Base, MomPoint::Max) },
                Phase { end_step: total - 1.0, lr: (LrPoint::Initial, LrPoint::Min), momentum: (MomPoint::Max, MomPoint::Max) },
            ]
        } else {
            vec![
                Phase { end_step: o.pct_start * total - 1.0, lr: (LrPoint::Initial, LrPoint::Max), momentum: (MomPoint::Max, MomPoint::Base) },
                Phase { end_step: total - 1.0, lr: (LrPoint::Max, LrPoint::Min), momentum: (MomPoint::Base, MomPoint::Max) },
            ]
        }
    }

    fn anneal(&self, start: f64, end: f64, pct: f64) -> f64 {
        match self.options.anneal {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }

    /// Learning rates and momenta of every group at step `step`.
    fn values_at(&self, step: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        if step > self.options.total_steps {
            return Err(sched_err(format!(
                "OneCycleLR: tried to step {step} times; the specified number of total steps is {}",
                self.options.total_steps
            )));
        }
        let step = step as f64;
        let mut lrs = Vec::with_capacity(self.max_lrs.len());
        let mut moms = Vec::with_capacity(self.max_lrs.len());
        for g in 0..self.max_lrs.len() {
            let lr_of = |p: LrPoint| match p {
                LrPoint::Initial => self.initial_lrs[g],
                LrPoint::Max => self.max_lrs[g],
                LrPoint::Min => self.min_lrs[g],
            };
            let mom_of = |p: MomPoint| match p {
                MomPoint::Base => self.options.base_momentum,
                MomPoint::Max => self.options.max_momentum,
            };
            let mut start = 0.0;
            for (i, phase) in self.phases.iter().enumerate() {
                if step <= phase.end_step || i == self.phases.len() - 1 {
                    let pct = (step - start) / (phase.end_step - start);
                    lrs.push(self.anneal(lr_of(phase.lr.0), lr_of(phase.lr.1), pct));
                    moms.push(self.anneal(mom_of(phase.momentum.0), mom_of(phase.momentum.1), pct));
                    break;
                }
                start = phase.end_step;
            }
        }
        Ok((lrs, moms))
    }

    fn set(&mut self, opt: &mut dyn Optimizer, lrs: &[f64], moms: &[f64]) {
        if self.options.cycle_momentum {
            for (g, &m) in moms.iter().enumerate() {
                opt.set_group_momentum(g, m);
            }
        }
        self.base.apply(opt, lrs);
    }
}

impl LrScheduler for OneCycleLR {
    fn try_step(&mut self, opt: &mut dyn Optimizer) -> Result<()> {
        self.base.check(opt)?;
        let (lrs, moms) = self.values_at(self.base.last_epoch + 1)?;
        self.base.advance(opt)?;
        self.set(opt, &lrs, &moms);
        Ok(())
    }
    common_methods!();
    fn state_dict(&self) -> SchedulerState {
        let o = &self.options;
        let mut st = self.base.save();
        st.set("total_steps", o.total_steps as f64);
        st.set("pct_start", o.pct_start);
        st.set("anneal_linear", if o.anneal == Anneal::Linear { 1.0 } else { 0.0 });
        st.set("cycle_momentum", if o.cycle_momentum { 1.0 } else { 0.0 });
        st.set("base_momentum", o.base_momentum);
        st.set("max_momentum", o.max_momentum);
        st.set("div_factor", o.div_factor);
        st.set("final_div_factor", o.final_div_factor);
        st.set("three_phase", if o.three_phase { 1.0 } else { 0.0 });
        st.set_list("initial_lrs", &self.initial_lrs);
        st.set_list("max_lrs", &self.max_lrs);
        st.set_list("min_lrs", &self.min_lrs);
        st
    }
    fn load_state_dict(&mut self, st: &SchedulerState) -> Result<()> {
        let base = self.base.load(st)?;
        let n = self.base.base_lrs.len();
        let list = |k: &str| -> Result<Vec<f64>> {
            let v = st.get_list(k)?.to_vec();
            if v.len() != n {
                return Err(sched_err(format!("load_state_dict: one_cycle_lr: '{k}' has {} groups but the scheduler has {n}", v.len())));
            }
            Ok(v)
        };
        let (initial_lrs, max_lrs, min_lrs) = (list("initial_lrs")?, list("max_lrs")?, list("min_lrs")?);
        let options = OneCycleOptions {
            max_lr: max_lrs.clone(),
            total_steps: st.get_usize("total_steps")?,
            pct_start: st.get("pct_start")?,
            anneal: if st.get_bool("anneal_linear")? { Anneal::Linear } else { Anneal::Cos },
            cycle_momentum: st.get_bool("cycle_momentum")?,
            base_momentum: st.get("base_momentum")?,
            max_momentum: st.get("max_momentum")?,
            div_factor: st.get("div_factor")?,
            final_div_factor: st.get("final_div_factor")?,
            three_phase: st.get_bool("three_phase")?,
        };
        let phases = Self::phases(&options);
        *self = OneCycleLR { base, options, phases, initial_lrs, max_lrs, min_lrs };
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// ReduceLROnPlateau
// ---------------------------------------------------------------------------------------------

/// Whether a lower or a higher metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateauMode {
    Min,
    Max,
}

/// How `threshold` defines a significant improvement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Better than `best * (1 - threshold)` (min) or `best * (1 + threshold)` (max).
    Rel,
    /// Better than `best - threshold` (min) or `best + threshold` (max).
    Abs,
}

/// [`ReduceLROnPlateau`]'s settings; `Default` gives PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct PlateauOptions {
    pub mode: PlateauMode,
    /// New lr = lr * factor (must be < 1).
    pub factor: f64,
    /// Bad steps tolerated before reducing.
    pub patience: usize,
    pub threshold: f64,
    pub threshold_mode: ThresholdMode,
    /// Steps to wait after a reduction before counting bad steps again.
    pub cooldown: usize,
    /// Lower bound on every group's lr.
    pub min_lr: f64,
    /// Per-group lower bounds, overriding `min_lr`.
    pub min_lrs: Option<Vec<f64>>,
    /// Reductions smaller than this are skipped.
    pub eps: f64,
}

impl Default for PlateauOptions {
    fn default() -> Self {
        PlateauOptions {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            min_lrs: None,
            eps: 1e-8,
        }
    }
}

/// Reduces the lr when a metric stops improving (`torch.optim.lr_scheduler.ReduceLROnPlateau`).
/// Step it with [`LrScheduler::step_with_metric`]; plain `step` is an error.
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    base: Base,
    options: PlateauOptions,
    min_lrs: Vec<f64>,
    best: f64,
    num_bad_epochs: usize,
    cooldown_counter: usize,
}

impl ReduceLROnPlateau {
    pub fn new(opt: &mut dyn Optimizer, options: PlateauOptions) -> Result<Self> {
        if !(options.factor < 1.0) {
            return Err(sched_err(format!("ReduceLROnPlateau: factor must be < 1.0, got {}", options.factor)));
        }
        let min_lrs = match &options.min_lrs {
            Some(v) => {
                check_groups("ReduceLROnPlateau", "min_lrs", v.len(), opt)?;
                v.clone()
            }
            None => vec![options.min_lr; opt.num_groups()],
        };
        let best = Self::worst(options.mode);
        Ok(ReduceLROnPlateau { base: Base::new("reduce_lr_on_plateau", opt), options, min_lrs, best, num_bad_epochs: 0, cooldown_counter: 0 })
    }

    fn worst(mode: PlateauMode) -> f64 {
        match mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        }
    }

    fn is_better(&self, a: f64, best: f64) -> bool {
        let t = self.options.threshold;
        match (self.options.mode, self.options.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - t),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - t,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (t + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + t,
        }
    }

    /// The best metric seen so far.
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Bad steps since the last improvement or reduction.
    pub fn num_bad_epochs(&self) -> usize {
        self.num_bad_epochs
    }
}

impl LrScheduler for ReduceLROnPlateau {
    fn try_step(&mut self, _opt: &mut dyn Optimizer) -> Result<()> {
        Err(sched_err("ReduceLROnPlateau needs the metric: call step_with_metric(opt, metric)"))
    }

    fn try_step_with_metric(&mut self, opt: &mut dyn Optimizer, metric: f64) -> Result<()> {
        self.base.advance(opt)?;
        if self.is_better(metric, self.best) {
            self.best = metric;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.options.patience {
            for g in 0..opt.num_groups() {
                let old = opt.group_lr(g);
                let new = (old * self.options.factor).max(self.min_lrs[g]);
                if old - new > self.options.eps {
                    opt.set_group_lr(g, new);
                }
            }
            self.cooldown_counter = self.options.cooldown;
            self.num_bad_epochs = 0;
        }
        self.base.last_lr = current_lrs(opt);
        Ok(())
    }

    common_methods!();

    fn state_dict(&self) -> SchedulerState {
        let o = &self.options;
        let mut st = self.base.save();
        st.set("mode_max", if o.mode == PlateauMode::Max { 1.0 } else { 0.0 });
        st.set("factor", o.factor);
        st.set("patience", o.patience as f64);
        st.set("threshold", o.threshold);
        st.set("threshold_abs", if o.threshold_mode == ThresholdMode::Abs { 1.0 } else { 0.0 });
        st.set("cooldown", o.cooldown as f64);
        st.set("eps", o.eps);
        st.set("best", self.best);
        st.set("num_bad_epochs", self.num_bad_epochs as f64);
        st.set("cooldown_counter", self.cooldown_counter as f64);
        st.set_list("min_lrs", &self.min_lrs);
        st
    }

    fn load_state_dict(&mut self, st: &SchedulerState) -> Result<()> {
        let base = self.base.load(st)?;
        let min_lrs = st.get_list("min_lrs")?.to_vec();
        if min_lrs.len() != self.min_lrs.len() {
            return Err(sched_err(format!(
                "load_state_dict: reduce_lr_on_plateau: 'min_lrs' has {} groups but the scheduler has {}",
                min_lrs.len(),
                self.min_lrs.len()
            )));
        }
        let factor = st.get("factor")?;
        if !(factor < 1.0) {
            return Err(sched_err(format!("ReduceLROnPlateau state: factor must be < 1.0, got {factor}")));
        }
        let options = PlateauOptions {
            mode: if st.get_bool("mode_max")? { PlateauMode::Max } else { PlateauMode::Min },
            factor,
            patience: st.get_usize("patience")?,
            threshold: st.get("threshold")?,
            threshold_mode: if st.get_bool("threshold_abs")? { ThresholdMode::Abs } else { ThresholdMode::Rel },
            cooldown: st.get_usize("cooldown")?,
            min_lr: self.options.min_lr,
            min_lrs: Some(min_lrs.clone()),
            eps: st.get("eps")?,
        };
        *self = ReduceLROnPlateau {
            base,
            options,
            min_lrs,
            best: st.get("best")?,
            num_bad_epochs: st.get_usize("num_bad_epochs")?,
            cooldown_counter: st.get_usize("cooldown_counter")?,
        };
        Ok(())
    }
}
