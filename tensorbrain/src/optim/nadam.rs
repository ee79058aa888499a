//! NAdam: Adam with Nesterov momentum and a momentum schedule.

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, lerp, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// `torch.optim.NAdam`.
pub type NAdam = ElementwiseOptimizer<NAdamOptions>;

/// NAdam's hyperparameters (defaults are PyTorch's). With `mu_t = beta1 (1 - 0.5 * 0.96^(t
/// momentum_decay))` and `mu_product` their running product, the update is
/// `p -= lr (1 - mu_t) / (1 - mu_product) * g / denom + lr mu_{t+1} / (1 - mu_product mu_{t+1})
/// * exp_avg / denom`, with `denom = sqrt(exp_avg_sq / (1 - beta2^t)) + eps`.
///
/// `mu_product` is one scalar per parameter, named, saved (a 0-d tensor) and accumulated in f32
/// as in PyTorch's state.
#[derive(Clone, Debug, PartialEq)]
pub struct NAdamOptions {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum_decay: f64,
    pub decoupled_weight_decay: bool,
    pub maximize: bool,
}

impl Default for NAdamOptions {
    fn default() -> Self {
        NAdamOptions { lr: 2e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, momentum_decay: 4e-3, decoupled_weight_decay: false, maximize: false }
    }
}

impl NAdamOptions {
    /// The momentum coefficient of step `t`: `beta1 (1 - 0.5 * 0.96^(t momentum_decay))`.
    fn mu(&self, t: f64) -> f64 {
        self.betas.0 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay))
    }
}

impl UpdateRule for NAdamOptions {
    const NAME: &'static str = "nadam";
    const BUFFERS: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];
    const SCALARS: &'static [(&'static str, f64)] = &[("mu_product", 1.0)];

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
        check(self.lr >= 0.0, "NAdam", "learning rate", self.lr, "must be >= 0")?;
        check(self.eps >= 0.0, "NAdam", "epsilon", self.eps, "must be >= 0")?;
        check((0.0..1.0).contains(&self.betas.0), "NAdam", "beta1", self.betas.0, "must be in [0, 1)")?;
        check((0.0..1.0).contains(&self.betas.1), "NAdam", "beta2", self.betas.1, "must be in [0, 1)")?;
        check(self.weight_decay >= 0.0, "NAdam", "weight_decay", self.weight_decay, "must be >= 0")?;
        check(self.momentum_decay >= 0.0, "NAdam", "momentum_decay", self.momentum_decay, "must be >= 0")
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
            .with("momentum_decay", self.momentum_decay)
            .with("decoupled_weight_decay", flag(self.decoupled_weight_decay))
            .with("maximize", flag(self.maximize))
    }
    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
        let n = Self::NAME;
        Ok(NAdamOptions {
            lr: h.get(n, "lr")?,
            betas: (h.get(n, "beta1")?, h.get(n, "beta2")?),
            eps: h.get(n, "eps")?,
            weight_decay: h.get(n, "weight_decay")?,
            momentum_decay: h.get(n, "momentum_decay")?,
            decoupled_weight_decay: h.get_bool(n, "decoupled_weight_decay")?,
            maximize: h.get_bool(n, "maximize")?,
        })
    }
    fn step_scalars(&self, step: u64, scalars: &mut [f64]) {
        // PyTorch keeps mu_product as an f32 scalar tensor: multiply in f32.
        scalars[0] = ((scalars[0] as f32) * (self.mu(step as f64) as f32)) as f64;
    }
    fn update<W: Float>(&self, ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
        let [m, v] = buffers else { unreachable!("nadam keeps two buffers") };
        let (beta1, beta2) = self.betas;
        let step = ctx.step as f64;
        let bias_correction2 = W::from_f64(1.0 - beta2.powf(step));
        let (mu, mu_next) = (self.mu(step), self.mu(step + 1.0));
        let product = ctx.scalars[0];
        let c_grad = W::from_f64(-self.lr * (1.0 - mu) / (1.0 - product));
        let c_avg = W::from_f64((-self.lr * mu_next) / (1.0 - product * mu_next));
        let w1 = 1.0 - beta1;
        let (w1_small, w1w, one_minus_w1) = (w1.abs() < 0.5, W::from_f64(w1), W::one() - W::from_f64(w1));
        let (b2, w2, eps, wd) = (W::from_f64(beta2), W::from_f64(1.0 - beta2), W::from_f64(self.eps), W::from_f64(self.weight_decay));
        let sign = W::from_f64(if self.maximize { -1.0 } else { 1.0 });
        let decay = self.weight_decay != 0.0;
        let decay_factor = W::from_f64(1.0 - self.lr * self.weight_decay);
        for (((p, &g), m), v) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
            let mut g = g * sign;
            if decay {
                if self.decoupled_weight_decay {
                    *p = *p * decay_factor;
                } else {
                    g = g + wd * *p;
                }
            }
            *m = lerp(*m, g, w1w, w1_small, one_minus_w1);
            *v = *v * b2 + w2 * g * g;
            let denom = (*v / bias_correction2).sqrt() + eps;
            *p = *p + c_grad * (g / denom);
            *p = *p + c_avg * (*m / denom);
        }
    }
}
