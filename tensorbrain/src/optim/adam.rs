//! Adam and AdamW (decoupled weight decay), with AMSGrad.

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, lerp, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// `torch.optim.Adam`.
pub type Adam = ElementwiseOptimizer<AdamOptions>;
/// `torch.optim.AdamW`.
pub type AdamW = ElementwiseOptimizer<AdamWOptions>;

/// Adam's hyperparameters (defaults are PyTorch's). `weight_decay` is an L2 term added to the
/// gradient; for decoupled decay use [`AdamWOptions`].
#[derive(Clone, Debug, PartialEq)]
pub struct AdamOptions {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, amsgrad: false, maximize: false }
    }
}

/// AdamW's hyperparameters (defaults are PyTorch's: note `weight_decay` 0.01). Decay is
/// decoupled: `p *= 1 - lr * weight_decay` before the Adam update.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamWOptions {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        AdamWOptions { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 1e-2, amsgrad: false, maximize: false }
    }
}

const BUFFERS: &[&str] = &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"];

fn validate(name: &str, lr: f64, betas: (f64, f64), eps: f64, weight_decay: f64) -> Result<()> {
    check(lr >= 0.0, name, "learning rate", lr, "must be >= 0")?;
    check(eps >= 0.0, name, "epsilon", eps, "must be >= 0")?;
    check((0.0..1.0).contains(&betas.0), name, "beta1", betas.0, "must be in [0, 1)")?;
    check((0.0..1.0).contains(&betas.1), name, "beta2", betas.1, "must be in [0, 1)")?;
    check(weight_decay >= 0.0, name, "weight_decay", weight_decay, "must be >= 0")
}

fn hyper(lr: f64, betas: (f64, f64), eps: f64, weight_decay: f64, amsgrad: bool, maximize: bool) -> Hyperparameters {
    Hyperparameters::new()
        .with("lr", lr)
        .with("beta1", betas.0)
        .with("beta2", betas.1)
        .with("eps", eps)
        .with("weight_decay", weight_decay)
        .with("amsgrad", flag(amsgrad))
        .with("maximize", flag(maximize))
}

type Parsed = (f64, (f64, f64), f64, f64, bool, bool);

fn parse(n: &str, h: &Hyperparameters) -> Result<Parsed> {
    Ok((
        h.get(n, "lr")?,
        (h.get(n, "beta1")?, h.get(n, "beta2")?),
        h.get(n, "eps")?,
        h.get(n, "weight_decay")?,
        h.get_bool(n, "amsgrad")?,
        h.get_bool(n, "maximize")?,
    ))
}

/// Adam's or AdamW's hyperparameters as the fused GPU step (adam.cu) takes them (read only by
/// the `cuda` feature's step): the options (AdamW's carry the same fields) and the kind of decay.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) struct AdamHyper {
    pub options: AdamOptions,
    /// AdamW's decoupled decay rather than Adam's L2 term.
    pub decoupled: bool,
}

/// The hyperparameters of `rule` if it is Adam or AdamW, the rules with a fused GPU kernel.
pub(crate) fn fused_adam<R: UpdateRule>(rule: &R) -> Option<AdamHyper> {
    let any = rule as &dyn std::any::Any;
    if let Some(o) = any.downcast_ref::<AdamOptions>() {
        return Some(AdamHyper { options: o.clone(), decoupled: false });
    }
    let AdamWOptions { lr, betas, eps, weight_decay, amsgrad, maximize } = any.downcast_ref::<AdamWOptions>()?.clone();
    Some(AdamHyper { options: AdamOptions { lr, betas, eps, weight_decay, amsgrad, maximize }, decoupled: true })
}

/// The single-tensor Adam step of `torch.optim.adam`, op for op.
#[allow(clippy::too_many_arguments)]
fn adam_update<W: Float>(
    ctx: &StepContext,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
    param: &mut [W],
    grad: &[W],
    buffers: &mut [&mut [W]],
) {
    let (beta1, beta2) = betas;
    let step = ctx.step as f64;
    let bias_correction1 = 1.0 - beta1.powf(step);
    let bias_correction2 = 1.0 - beta2.powf(step);
    let step_size = lr / bias_correction1;
    let bc2_sqrt = W::from_f64(bias_correction2.powf(0.5));
    let neg_step_size = W::from_f64(-step_size);
    let eps = W::from_f64(eps);
    let w1 = 1.0 - beta1;
    let (w1_small, w1, one_minus_w1) = (w1.abs() < 0.5, W::from_f64(w1), W::from_f64(1.0) - W::from_f64(w1));
    let b2 = W::from_f64(beta2);
    let w2 = W::from_f64(1.0 - beta2);
    let sign = W::from_f64(if maximize { -1.0 } else { 1.0 });
    let l2 = !decoupled && weight_decay != 0.0;
    let wd = W::from_f64(weight_decay);
    let decay = decoupled && weight_decay != 0.0;
    let decay_factor = W::from_f64(1.0 - lr * weight_decay);

    let [m, v, vmax] = buffers else { unreachable!("adam keeps three buffers") };
    let elementwise = |p: &mut W, g: W, m: &mut W, v: &mut W| -> W {
        let mut g = g * sign;
        if decay {
            *p = *p * decay_factor;
        } else if l2 {
            g = g + wd * *p;
        }
        *m = lerp(*m, g, w1, w1_small, one_minus_w1);
        *v = *v * b2 + w2 * g * g;
        g
    };
    if amsgrad {
        for ((((p, &g), m), v), vmax) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()).zip(vmax.iter_mut()) {
            elementwise(p, g, m, v);
            *vmax = if *vmax >= *v || vmax.is_nan() { *vmax } else { *v };
            let denom = vmax.sqrt() / bc2_sqrt + eps;
            *p = *p + neg_step_size * (*m / denom);
        }
    } else {
        for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
            elementwise(p, g, m, v);
            let denom = v.sqrt() / bc2_sqrt + eps;
            *p = *p + neg_step_size * (*m / denom);
        }
    }
}

macro_rules! adam_rule {
    ($opts:ident, $name:literal, $display:literal, $decoupled:expr) => {
        impl UpdateRule for $opts {
            const NAME: &'static str = $name;
            const BUFFERS: &'static [&'static str] = BUFFERS;

            fn lr(&self) -> f64 {
                self.lr
            }
            fn set_lr(&mut self, lr: f64) {
                self.lr = lr;
            }
            fn momentum(&self) -> Option<f64> {
                Some(self.betas.0)
            }
            fn set_momentum(&mut self, momentum: f64) {
                self.betas.0 = momentum;
            }
            fn validate(&self) -> Result<()> {
                validate($display, self.lr, self.betas, self.eps, self.weight_decay)
            }
            fn uses_buffer(&self, index: usize) -> bool {
                index < 2 || self.amsgrad
            }
            fn hyperparameters(&self) -> Hyperparameters {
                hyper(self.lr, self.betas, self.eps, self.weight_decay, self.amsgrad, self.maximize)
            }
            fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
                let (lr, betas, eps, weight_decay, amsgrad, maximize) = parse(Self::NAME, h)?;
                Ok($opts { lr, betas, eps, weight_decay, amsgrad, maximize })
            }
            fn update<W: Float>(&self, ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
                adam_update(
                    ctx,
                    self.lr,
                    self.betas,
                    self.eps,
                    self.weight_decay,
                    self.amsgrad,
                    self.maximize,
                    $decoupled,
                    param,
                    grad,
                    buffers,
                )
            }
        }
    };
}

adam_rule!(AdamOptions, "adam", "Adam", false);
adam_rule!(AdamWOptions, "adamw", "AdamW", true);
