//! Adamax: Adam with the infinity norm in place of the second moment.

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, lerp, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// `torch.optim.Adamax`.
pub type Adamax = ElementwiseOptimizer<AdamaxOptions>;

/// Adamax's hyperparameters (defaults are PyTorch's). With `g = grad + weight_decay * p`:
/// `exp_avg = lerp(exp_avg, g, 1 - beta1)`, `exp_inf = max(beta2 * exp_inf, |g| + eps)`,
/// `p -= lr / (1 - beta1^step) * exp_avg / exp_inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamaxOptions {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for AdamaxOptions {
    fn default() -> Self {
        AdamaxOptions { lr: 2e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, maximize: false }
    }
}

impl UpdateRule for AdamaxOptions {
    const NAME: &'static str = "adamax";
    const BUFFERS: &'static [&'static str] = &["exp_avg", "exp_inf"];

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
        check(self.lr >= 0.0, "Adamax", "learning rate", self.lr, "must be >= 0")?;
        check(self.eps >= 0.0, "Adamax", "epsilon", self.eps, "must be >= 0")?;
        check((0.0..1.0).contains(&self.betas.0), "Adamax", "beta1", self.betas.0, "must be in [0, 1)")?;
        check((0.0..1.0).contains(&self.betas.1), "Adamax", "beta2", self.betas.1, "must be in [0, 1)")?;
        check(self.weight_decay >= 0.0, "Adamax", "weight_decay", self.weight_decay, "must be >= 0")
    }
    fn uses_buffer(&self, _: usize) -> bool {
        true
    }
    fn hyperparameters(&self) -> Hyperparameters {
        Hyperparameters::new()
            .with("lr", self.lr)
            .with("beta1", self.betas.0)
            .with("beta2", self.betas.1)
            .with("eps", self.eps)
            .with("weight_decay", self.weight_decay)
            .with("maximize", flag(self.maximize))
    }
    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
        let n = Self::NAME;
        Ok(AdamaxOptions {
            lr: h.get(n, "lr")?,
            betas: (h.get(n, "beta1")?, h.get(n, "beta2")?),
            eps: h.get(n, "eps")?,
            weight_decay: h.get(n, "weight_decay")?,
            maximize: h.get_bool(n, "maximize")?,
        })
    }
    fn update<W: Float>(&self, ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
        let [m, u] = buffers else { unreachable!("adamax keeps two buffers") };
        let (beta1, beta2) = self.betas;
        let w1 = 1.0 - beta1;
        let (w1_small, w1w, one_minus_w1) = (w1.abs() < 0.5, W::from_f64(w1), W::one() - W::from_f64(w1));
        let clr = self.lr / (1.0 - beta1.powf(ctx.step as f64));
        let (neg_clr, b2, eps, wd) = (W::from_f64(-clr), W::from_f64(beta2), W::from_f64(self.eps), W::from_f64(self.weight_decay));
        let sign = W::from_f64(if self.maximize { -1.0 } else { 1.0 });
        let has_wd = self.weight_decay != 0.0;
        for (((p, &g), m), u) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(u.iter_mut()) {
            let mut g = g * sign;
            if has_wd {
                g = g + wd * *p;
            }
            *m = lerp(*m, g, w1w, w1_small, one_minus_w1);
            let (decayed, fresh) = (*u * b2, g.abs() + eps);
            // torch.maximum: NaN propagates.
            *u = if decayed.is_nan() || fresh.is_nan() { W::nan() } else if decayed > fresh { decayed } else { fresh };
            *p = *p + neg_clr * (*m / *u);
        }
    }
}
