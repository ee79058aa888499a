//! RAdam: Adam with the variance of the adaptive learning rate rectified in early steps.

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, lerp, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// `torch.optim.RAdam`.
pub type RAdam = ElementwiseOptimizer<RAdamOptions>;

/// RAdam's hyperparameters (defaults are PyTorch's). `decoupled_weight_decay` decays the
/// parameter (AdamW-style) instead of adding to the gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct RAdamOptions {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled_weight_decay: bool,
    pub maximize: bool,
}

impl Default for RAdamOptions {
    fn default() -> Self {
        RAdamOptions { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, decoupled_weight_decay: false, maximize: false }
    }
}

impl UpdateRule for RAdamOptions {
    const NAME: &'static str = "radam";
    const BUFFERS: &'static [&'static str] = &["exp_avg", "exp_avg_sq"];

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
        check(self.lr >= 0.0, "RAdam", "learning rate", self.lr, "must be >= 0")?;
        check(self.eps >= 0.0, "RAdam", "epsilon", self.eps, "must be >= 0")?;
        check((0.0..1.0).contains(&self.betas.0), "RAdam", "beta1", self.betas.0, "must be in [0, 1)")?;
        check((0.0..1.0).contains(&self.betas.1), "RAdam", "beta2", self.betas.1, "must be in [0, 1)")?;
        check(self.weight_decay >= 0.0, "RAdam", "weight_decay", self.weight_decay, "must be >= 0")
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
            .with("decoupled_weight_decay", flag(self.decoupled_weight_decay))
            .with("maximize", flag(self.maximize))
    }
    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
        let n = Self::NAME;
        Ok(RAdamOptions {
            lr: h.get(n, "lr")?,
            betas: (h.get(n, "beta1")?, h.get(n, "beta2")?),
            eps: h.get(n, "eps")?,
            weight_decay: h.get(n, "weight_decay")?,
            decoupled_weight_decay: h.get_bool(n, "decoupled_weight_decay")?,
            maximize: h.get_bool(n, "maximize")?,
        })
    }
    fn update<W: Float>(&self, ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
        let [m, v] = buffers else { unreachable!("radam keeps two buffers") };
        let (beta1, beta2) = self.betas;
        let step = ctx.step as f64;
        let w1 = 1.0 - beta1;
        let (w1_small, w1w, one_minus_w1) = (w1.abs() < 0.5, W::from_f64(w1), W::one() - W::from_f64(w1));
        let (b2, w2) = (W::from_f64(beta2), W::from_f64(1.0 - beta2));
        let bc1 = W::from_f64(1.0 - beta1.powf(step));
        let bias_correction2 = 1.0 - beta2.powf(step);
        let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * step * beta2.powf(step) / bias_correction2;
        // The rectification and the adaptive step, as PyTorch's single-tensor path computes
        // them (Python floats, then tensor ops in the parameter's dtype).
        let rect = (rho_t > 5.0).then(|| W::from_f64(((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).powf(0.5)));
        let (lr, eps, bc2_sqrt) = (W::from_f64(self.lr), W::from_f64(self.eps), W::from_f64(bias_correction2.powf(0.5)));
        let sign = W::from_f64(if self.maximize { -1.0 } else { 1.0 });
        let wd = W::from_f64(self.weight_decay);
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
            let corrected = *m / bc1;
            *p = match rect {
                Some(r) => *p - corrected * lr * (bc2_sqrt / (v.sqrt() + eps)) * r,
                None => *p - corrected * lr,
            };
        }
    }
}
