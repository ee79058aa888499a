//! The machinery every optimizer here shares: parameter groups, per-parameter state, the fused
//! in-place update pass, and state dicts. An optimizer is an [`UpdateRule`] (its options struct,
//! which says how one element changes) run by [`ElementwiseOptimizer`].

use std::collections::HashSet;

use half::{bf16, f16};
use rayon::prelude::*;
use tensorbrain_kernels::strided::{copy, copy_into, PARALLEL_THRESHOLD};
use tensorbrain_kernels::Float;

use super::state::{GroupState, Hyperparameters, OptimizerState, ParamState};
use super::Optimizer;
use crate::autograd::no_grad;
use crate::ops::float_dispatch;
use crate::tensor::{DType, Element, Error, Result, Tensor};

/// Per-parameter facts an update needs beyond the hyperparameters.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// This parameter's step count, already incremented (1 on its first update).
    pub step: u64,
    fresh: u64,
    /// This parameter's scalar state ([`UpdateRule::SCALARS`]), already advanced by
    /// [`UpdateRule::step_scalars`] for this step.
    pub scalars: Vec<f64>,
}

impl StepContext {
    /// Whether buffer `index` (into [`UpdateRule::BUFFERS`]) was just created (zero-filled) for
    /// this step: SGD's first momentum step copies the gradient instead of decaying.
    pub fn is_fresh(&self, index: usize) -> bool {
        self.fresh & (1 << index) != 0
    }
}

/// How one optimizer updates a parameter, elementwise. Implemented by the options structs
/// ([`super::SgdOptions`], [`super::AdamOptions`], ...); a custom optimizer implements it and
/// gets groups, state dicts and the parallel in-place pass from [`ElementwiseOptimizer`].
pub trait UpdateRule: Clone + Send + Sync + 'static {
    /// The name in state dicts and error messages (`"adam"`).
    const NAME: &'static str;
    /// Every state buffer the rule may keep, in the order [`UpdateRule::update`] gets them.
    const BUFFERS: &'static [&'static str];
    /// Per-parameter scalar state (one number per parameter, not per element, like NAdam's
    /// `mu_product`) with its initial value. Saved as 0-d tensors under these names.
    const SCALARS: &'static [(&'static str, f64)] = &[];

    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// Momentum or first beta, for schedulers that cycle it.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Sets what [`UpdateRule::momentum`] reads (no-op where there is none).
    fn set_momentum(&mut self, _momentum: f64) {}
    /// Checks the hyperparameters (an error names the optimizer and the bad value).
    fn validate(&self) -> Result<()>;
    /// Whether the next step uses buffer `index` of [`UpdateRule::BUFFERS`] (e.g. amsgrad's
    /// `max_exp_avg_sq` only when amsgrad is on).
    fn uses_buffer(&self, index: usize) -> bool;
    /// The hyperparameters by name, for state dicts.
    fn hyperparameters(&self) -> Hyperparameters;
    /// Reads back [`UpdateRule::hyperparameters`] output.
    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self>;
    /// Updates `param` in place from `grad`, computing in `W` (f32 for f32/f16/bf16 parameters,
    /// f64 for f64). `buffers[i]` is buffer `i` of [`UpdateRule::BUFFERS`], or empty where
    /// [`UpdateRule::uses_buffer`] is false. All slices have the same length (a chunk of the
    /// parameter when the pass runs in parallel).
    fn update<W: Float>(&self, ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]);
    /// Advances the scalar state once per parameter and step (before [`UpdateRule::update`],
    /// which reads the result from [`StepContext::scalars`]). `step` is already incremented.
    fn step_scalars(&self, _step: u64, _scalars: &mut [f64]) {}
}

/// A list of parameters that share hyperparameters (PyTorch's `param_groups` entry).
#[derive(Clone, Debug)]
pub struct ParamGroup<O> {
    pub params: Vec<Tensor>,
    pub options: O,
}

impl<O> ParamGroup<O> {
    pub fn new(params: Vec<Tensor>, options: O) -> Self {
        ParamGroup { params, options }
    }
}

struct Slot {
    step: u64,
    buffers: Vec<Option<Tensor>>,
    scalars: Vec<f64>,
}

fn initial_scalars<R: UpdateRule>() -> Vec<f64> {
    R::SCALARS.iter().map(|&(_, v)| v).collect()
}

/// An optimizer whose update is elementwise given per-parameter state: SGD, Adam, AdamW, Lion
/// and RMSprop are this type over their options (see the aliases [`super::Sgd`], ...).
pub struct ElementwiseOptimizer<R: UpdateRule> {
    groups: Vec<ParamGroup<R>>,
    /// Per parameter, flat over the groups in order.
    state: Vec<Option<Slot>>,
}

fn err(op: &str, msg: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{op}: {msg}"))
}

impl<R: UpdateRule + std::fmt::Debug> std::fmt::Debug for ElementwiseOptimizer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut index = 0;
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                let params: Vec<String> = g
                    .params
                    .iter()
                    .map(|p| {
                        let step = self.state[index].as_ref().map_or(0, |s| s.step);
                        index += 1;
                        format!("{:?} {} (step {step})", p.shape(), p.dtype())
                    })
                    .collect();
                format!("{:?} over [{}]", g.options, params.join(", "))
            })
            .collect();
        f.debug_struct(R::NAME).field("groups", &groups).finish()
    }
}

impl<R: UpdateRule> ElementwiseOptimizer<R> {
    /// An optimizer over one group of parameters.
    pub fn new(params: Vec<Tensor>, options: R) -> Result<Self> {
        Self::with_groups(vec![ParamGroup::new(params, options)])
    }

    /// An optimizer over several groups, each with its own options.
    pub fn with_groups(groups: Vec<ParamGroup<R>>) -> Result<Self> {
        let mut opt = ElementwiseOptimizer { groups: Vec::new(), state: Vec::new() };
        if groups.is_empty() || groups.iter().all(|g| g.params.is_empty()) {
            return Err(err(R::NAME, "the optimizer got an empty parameter list"));
        }
        for g in groups {
            opt.add_param_group(g)?;
        }
        Ok(opt)
    }

    /// Appends a group (like `optimizer.add_param_group`). Its parameters must be float leaves
    /// not already in the optimizer.
    pub fn add_param_group(&mut self, group: ParamGroup<R>) -> Result<()> {
        group.options.validate()?;
        let mut seen: HashSet<u64> = self.groups.iter().flat_map(|g| g.params.iter().map(|p| p.id())).collect();
        for (i, p) in group.params.iter().enumerate() {
            if !p.dtype().is_float() {
                return Err(err(R::NAME, format!("parameter {i} of the new group is {}; only floating-point tensors can be optimized", p.dtype())));
            }
            if !p.is_leaf() {
                return Err(err(
                    R::NAME,
                    format!("parameter {i} of the new group is not a leaf (it was produced by {}); optimize leaves", p.grad_fn_name().unwrap_or("an op")),
                ));
            }
            if !seen.insert(p.id()) {
                return Err(err(R::NAME, format!("parameter {i} of the new group (shape {:?}) appears more than once in the optimizer", p.shape())));
            }
        }
        self.state.extend((0..group.params.len()).map(|_| None));
        self.groups.push(group);
        Ok(())
    }

    /// The parameter groups.
    pub fn param_groups(&self) -> &[ParamGroup<R>] {
        &self.groups
    }

    /// The options of group `group`, to change hyperparameters mid-training (e.g. weight decay).
    pub fn options_mut(&mut self, group: usize) -> &mut R {
        &mut self.groups[group].options
    }

    /// The step count of parameter `index` (flat over the groups); 0 before its first update.
    pub fn param_step(&self, index: usize) -> u64 {
        self.state.get(index).and_then(|s| s.as_ref()).map_or(0, |s| s.step)
    }

    /// State buffer `name` of parameter `index`, if it exists (shares storage with the state).
    pub fn buffer(&self, index: usize, name: &str) -> Option<Tensor> {
        let b = R::BUFFERS.iter().position(|&n| n == name)?;
        self.state.get(index)?.as_ref()?.buffers[b].clone()
    }

    fn check_grad(p: &Tensor, g: &Tensor, index: usize) -> Result<()> {
        if g.dtype() != p.dtype() {
            return Err(err(R::NAME, format!("the gradient of parameter {index} is {} but the parameter is {}", g.dtype(), p.dtype())));
        }
        if g.shape() != p.shape() {
            return Err(err(R::NAME, format!("the gradient of parameter {index} has shape {:?} but the parameter has shape {:?}", g.shape(), p.shape())));
        }
        Ok(())
    }

    fn try_step(&mut self) -> Result<()> {
        // Check every gradient before changing anything.
        let mut work = Vec::new();
        let mut index = 0;
        for (gi, group) in self.groups.iter().enumerate() {
            for p in &group.params {
                if let Some(g) = p.grad() {
                    Self::check_grad(p, &g, index)?;
                    work.push((gi, index, p.clone(), g));
                }
                index += 1;
            }
        }
        for (gi, index, p, g) in work {
            let options = &self.groups[gi].options;
            // The state lives where the update runs: beside a GPU parameter for a rule with a
            // device kernel, on the host otherwise (also for GPU parameters stepped there).
            let home = if device_rule(options, &p).is_some() { p.device() } else { crate::tensor::Device::Cpu };
            let slot = self.state[index].get_or_insert_with(|| Slot { step: 0, buffers: vec![None; R::BUFFERS.len()], scalars: initial_scalars::<R>() });
            let mut fresh = 0u64;
            let mut used = Vec::with_capacity(R::BUFFERS.len());
            for b in 0..R::BUFFERS.len() {
                if options.uses_buffer(b) {
                    match &slot.buffers[b] {
                        None => {
                            slot.buffers[b] = Some(Tensor::try_zeros_on(p.shape(), p.dtype(), home)?);
                            fresh |= 1 << b;
                        }
                        // Loaded from a state dict (host), or the parameter moved.
                        Some(t) if t.device() != home => slot.buffers[b] = Some(no_grad(|| t.detach().try_to_device(home))?.try_contiguous()?),
                        Some(_) => {}
                    }
                    used.push(slot.buffers[b].clone());
                } else {
                    used.push(None);
                }
            }
            // Counted once the state is in place (making it can fail on a GPU), so a failed
            // step does not advance the bias corrections.
            slot.step += 1;
            options.step_scalars(slot.step, &mut slot.scalars);
            let ctx = StepContext { step: slot.step, fresh, scalars: slot.scalars.clone() };
            update_param(options, &ctx, &p, &g, &used)?;
        }
        Ok(())
    }
}

/// The fused GPU kernel's hyperparameters when `p` is a contiguous f32/f64 parameter on a GPU
/// and `rule` has such a kernel (Adam, AdamW); `None` means the update runs on the host.
fn device_rule<R: UpdateRule>(rule: &R, p: &Tensor) -> Option<super::AdamHyper> {
    let on_gpu = p.device() != crate::tensor::Device::Cpu && matches!(p.dtype(), DType::F32 | DType::F64) && p.is_contiguous();
    if on_gpu {
        super::fused_adam(rule)
    } else {
        None
    }
}

/// Runs `rule` over one parameter: gradient read as a contiguous slice, parameter and buffers
/// written in place through their storage.
fn update_param<R: UpdateRule>(rule: &R, ctx: &StepContext, p: &Tensor, g: &Tensor, buffers: &[Option<Tensor>]) -> Result<()> {
    #[cfg(feature = "cuda")]
    if p.device() != crate::tensor::Device::Cpu {
        if let Some(h) = device_rule(rule, p) {
            let [m, v, vmax] = buffers else { unreachable!("adam keeps three buffers") };
            let (m, v) = (m.as_ref().expect("adam's first moment"), v.as_ref().expect("adam's second moment"));
            return crate::cuda::adam_step(&h, ctx.step, p, g, m, v, vmax.as_ref());
        }
        return crate::cuda::step_on_host(p, g, |p, g| update_param(rule, ctx, p, g, buffers));
    }
    // A gradient aliasing the parameter's storage must be read before the parameter is locked
    // for writing.
    let g = if g.shares_storage(p) { deep_copy(g, g.dtype())? } else { g.clone() };
    float_dispatch!(R::NAME, p.dtype(), T => {
        g.with_contiguous::<T, _>(|gs| {
            let mut guards: Vec<_> = buffers.iter().flatten().map(|b| b.storage_mut()).collect();
            let mut guard_iter = guards.iter_mut();
            let mut bufs: Vec<&mut [T]> = buffers
                .iter()
                .map(|b| -> Result<&mut [T]> {
                    Ok(match b {
                        Some(_) => guard_iter.next().expect("one guard per buffer").cpu_mut()?.as_mut_slice::<T>(),
                        None => Default::default(),
                    })
                })
                .collect::<Result<_>>()?;
            let mut ps = p.storage_mut();
            let l = p.layout().clone();
            let data = ps.cpu_mut()?.as_mut_slice::<T>();
            if l.is_contiguous() {
                run_chunked(rule, ctx, &mut data[l.offset..l.offset + l.numel()], gs, &mut bufs);
            } else {
                let mut tmp = vec![T::default(); l.numel()];
                copy(data, l.offset, &l.shape, &l.strides, &mut tmp);
                run_chunked(rule, ctx, &mut tmp, gs, &mut bufs);
                copy_into(&tmp, data, l.offset, &l.shape, &l.strides);
            }
            Ok::<(), crate::Error>(())
        })??;
    });
    Ok(())
}

/// Splits the update across threads for large parameters.
fn run_chunked<T: OptElement, R: UpdateRule>(rule: &R, ctx: &StepContext, p: &mut [T], g: &[T], bufs: &mut [&mut [T]]) {
    let n = p.len();
    let threads = tensorbrain_kernels::threads::num_threads();
    if n < PARALLEL_THRESHOLD || threads <= 1 {
        T::apply(rule, ctx, p, g, bufs);
        return;
    }
    let chunk = n.div_ceil(threads).max(PARALLEL_THRESHOLD / 4);
    let mut pieces = Vec::with_capacity(n.div_ceil(chunk));
    let (mut p, mut g) = (p, g);
    let mut rest: Vec<&mut [T]> = bufs.iter_mut().map(std::mem::take).collect();
    while !p.is_empty() {
        let k = chunk.min(p.len());
        let (ph, pt) = p.split_at_mut(k);
        let (gh, gt) = g.split_at(k);
        let mut heads = Vec::with_capacity(rest.len());
        let mut tails = Vec::with_capacity(rest.len());
        for b in rest {
            if b.is_empty() {
                heads.push(Default::default());
                tails.push(b);
            } else {
                let (h, t) = b.split_at_mut(k);
                heads.push(h);
                tails.push(t);
            }
        }
        pieces.push((ph, gh, heads));
        p = pt;
        g = gt;
        rest = tails;
    }
    pieces.into_par_iter().for_each(|(p, g, mut b)| T::apply(rule, ctx, p, g, &mut b));
}

/// Parameter element types: f32 and f64 run the rule directly; half types run it in f32 over
/// small blocks converted on the fly.
trait OptElement: Element {
    fn apply<R: UpdateRule>(rule: &R, ctx: &StepContext, p: &mut [Self], g: &[Self], bufs: &mut [&mut [Self]]);
}

impl OptElement for f32 {
    fn apply<R: UpdateRule>(rule: &R, ctx: &StepContext, p: &mut [f32], g: &[f32], bufs: &mut [&mut [f32]]) {
        rule.update::<f32>(ctx, p, g, bufs)
    }
}

impl OptElement for f64 {
    fn apply<R: UpdateRule>(rule: &R, ctx: &StepContext, p: &mut [f64], g: &[f64], bufs: &mut [&mut [f64]]) {
        rule.update::<f64>(ctx, p, g, bufs)
    }
}

macro_rules! half_opt_element {
    ($t:ty) => {
        impl OptElement for $t {
            fn apply<R: UpdateRule>(rule: &R, ctx: &StepContext, p: &mut [$t], g: &[$t], bufs: &mut [&mut [$t]]) {
                const BLOCK: usize = 1024;
                let mut pw = Vec::with_capacity(BLOCK);
                let mut gw = Vec::with_capacity(BLOCK);
                let mut bw: Vec<Vec<f32>> = bufs.iter().map(|_| Vec::with_capacity(BLOCK)).collect();
                for start in (0..p.len()).step_by(BLOCK) {
                    let end = (start + BLOCK).min(p.len());
                    pw.clear();
                    pw.extend(p[start..end].iter().map(|x| x.to_f32()));
                    gw.clear();
                    gw.extend(g[start..end].iter().map(|x| x.to_f32()));
                    for (w, b) in bw.iter_mut().zip(bufs.iter()) {
                        w.clear();
                        if !b.is_empty() {
                            w.extend(b[start..end].iter().map(|x| x.to_f32()));
                        }
                    }
                    {
                        let mut views: Vec<&mut [f32]> = bw.iter_mut().map(|w| w.as_mut_slice()).collect();
                        rule.update::<f32>(ctx, &mut pw, &gw, &mut views);
                    }
                    for (dst, &src) in p[start..end].iter_mut().zip(&pw) {
                        *dst = <$t>::from_f32(src);
                    }
                    for (w, b) in bw.iter().zip(bufs.iter_mut()) {
                        if !b.is_empty() {
                            for (dst, &src) in b[start..end].iter_mut().zip(w) {
                                *dst = <$t>::from_f32(src);
                            }
                        }
                    }
                }
            }
        }
    };
}
half_opt_element!(f16);
half_opt_element!(bf16);

/// A deep copy of `t` as a fresh contiguous tensor of `dtype`.
pub(crate) fn deep_copy(t: &Tensor, dtype: DType) -> Result<Tensor> {
    no_grad(|| {
        let src = if t.dtype() == dtype { t.clone() } else { t.try_to_dtype(dtype)? };
        let out = Tensor::zeros(t.shape(), dtype);
        out.try_copy_from(&src)?;
        Ok(out)
    })
}

impl<R: UpdateRule> Optimizer for ElementwiseOptimizer<R> {
    fn step(&mut self) -> Result<()> {
        self.try_step()
    }

    fn zero_grad(&self) {
        for g in &self.groups {
            for p in &g.params {
                p.set_grad(None);
            }
        }
    }

    fn num_groups(&self) -> usize {
        self.groups.len()
    }

    fn group_lr(&self, group: usize) -> f64 {
        self.groups[group].options.lr()
    }

    fn set_group_lr(&mut self, group: usize, lr: f64) {
        self.groups[group].options.set_lr(lr)
    }

    fn group_momentum(&self, group: usize) -> Option<f64> {
        self.groups[group].options.momentum()
    }

    fn set_group_momentum(&mut self, group: usize, momentum: f64) -> bool {
        let o = &mut self.groups[group].options;
        if o.momentum().is_none() {
            return false;
        }
        o.set_momentum(momentum);
        true
    }

    fn params(&self) -> Vec<Tensor> {
        self.groups.iter().flat_map(|g| g.params.iter().cloned()).collect()
    }

    fn state_dict(&self) -> OptimizerState {
        let groups = self
            .groups
            .iter()
            .map(|g| GroupState { hyperparameters: g.options.hyperparameters(), num_params: g.params.len() })
            .collect();
        let params = self
            .state
            .iter()
            .map(|s| {
                s.as_ref().map(|s| ParamState {
                    step: s.step,
                    buffers: s
                        .buffers
                        .iter()
                        .zip(R::BUFFERS)
                        .filter_map(|(b, name)| {
                            b.as_ref().map(|b| (name.to_string(), deep_copy(b, b.dtype()).expect("copying a state buffer")))
                        })
                        // PyTorch keeps such scalars as 0-d f32 tensors.
                        .chain(R::SCALARS.iter().zip(&s.scalars).map(|(&(name, _), &v)| (name.to_string(), Tensor::scalar(v as f32))))
                        .collect(),
                })
            })
            .collect();
        OptimizerState { optimizer: R::NAME.to_string(), groups, params }
    }

    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()> {
        const OP: &str = "load_state_dict";
        if state.optimizer != R::NAME {
            return Err(err(OP, format!("the state is from a '{}' optimizer but this optimizer is '{}'", state.optimizer, R::NAME)));
        }
        if state.groups.len() != self.groups.len() {
            return Err(err(
                OP,
                format!("the state has {} parameter groups but the optimizer has {}", state.groups.len(), self.groups.len()),
            ));
        }
        let mut options = Vec::with_capacity(self.groups.len());
        for (gi, (saved, mine)) in state.groups.iter().zip(&self.groups).enumerate() {
            if saved.num_params != mine.params.len() {
                return Err(err(
                    OP,
                    format!("parameter group {gi} holds {} parameters in the state but {} in the optimizer", saved.num_params, mine.params.len()),
                ));
            }
            let o = R::from_hyperparameters(&saved.hyperparameters)?;
            o.validate()?;
            options.push(o);
        }
        if state.params.len() != self.state.len() {
            return Err(err(OP, format!("the state has entries for {} parameters but the groups hold {}", state.params.len(), self.state.len())));
        }
        let params: Vec<(usize, Tensor)> =
            self.groups.iter().enumerate().flat_map(|(gi, g)| g.params.iter().map(move |p| (gi, p.clone()))).collect();
        let mut slots = Vec::with_capacity(params.len());
        for (i, ((gi, p), saved)) in params.iter().zip(&state.params).enumerate() {
            let Some(saved) = saved else {
                slots.push(None);
                continue;
            };
            let is_scalar = |name: &str| R::SCALARS.iter().any(|&(n, _)| n == name);
            for name in saved.buffers.keys() {
                if !R::BUFFERS.contains(&name.as_str()) && !is_scalar(name) {
                    let known: Vec<&str> = R::BUFFERS.iter().copied().chain(R::SCALARS.iter().map(|&(n, _)| n)).collect();
                    return Err(err(OP, format!("parameter {i} has an unknown state buffer '{name}' ({} keeps {known:?})", R::NAME)));
                }
            }
            let mut scalars = initial_scalars::<R>();
            for (slot, &(name, _)) in scalars.iter_mut().zip(R::SCALARS) {
                match saved.buffers.get(name) {
                    // A 0-d tensor, as PyTorch saves it; older TensorBrain states kept one
                    // equal value per element, so any non-empty float tensor gives its first.
                    Some(t) if t.dtype().is_float() && t.numel() > 0 => *slot = t.to_dtype(DType::F64).to_vec::<f64>()[0],
                    Some(t) => return Err(err(OP, format!("state scalar '{name}' of parameter {i} is an empty or non-float tensor ({} {:?})", t.dtype(), t.shape()))),
                    None if saved.step > 0 => {
                        return Err(err(OP, format!("parameter {i} (step {}) has no state scalar '{name}', which {} needs", saved.step, R::NAME)));
                    }
                    None => {}
                }
            }
            let mut buffers = vec![None; R::BUFFERS.len()];
            for (b, name) in R::BUFFERS.iter().enumerate() {
                match saved.buffers.get(*name) {
                    Some(t) => {
                        if t.shape() != p.shape() {
                            return Err(err(
                                OP,
                                format!("state buffer '{name}' of parameter {i} has shape {:?} but the parameter has shape {:?}", t.shape(), p.shape()),
                            ));
                        }
                        if !t.dtype().is_float() {
                            return Err(err(OP, format!("state buffer '{name}' of parameter {i} is {}, not a float tensor", t.dtype())));
                        }
                        buffers[b] = Some(deep_copy(t, p.dtype())?);
                    }
                    None if options[*gi].uses_buffer(b) && saved.step > 0 => {
                        return Err(err(
                            OP,
                            format!("parameter {i} (step {}) has no state buffer '{name}', which {} needs with these hyperparameters", saved.step, R::NAME),
                        ));
                    }
                    None => {}
                }
            }
            slots.push(Some(Slot { step: saved.step, buffers, scalars }));
        }
        for (g, o) in self.groups.iter_mut().zip(options) {
            g.options = o;
        }
        self.state = slots;
        Ok(())
    }
}

/// Checks a hyperparameter with a message naming the optimizer.
pub(crate) fn check(ok: bool, optimizer: &str, what: &str, value: impl std::fmt::Display, rule: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::Msg(format!("{optimizer}: invalid {what} {value} ({rule})")))
    }
}

/// `a + w * (b - a)` as torch's `lerp_` computes it (the other form for `w >= 0.5`).
#[inline(always)]
pub(crate) fn lerp<W: Float>(a: W, b: W, w: W, w_small: bool, one_minus_w: W) -> W {
    if w_small {
        a + w * (b - a)
    } else {
        b - (b - a) * one_minus_w
    }
}

pub(crate) fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}
