//! Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// Lion, as in the paper's reference implementation (PyTorch has no built-in Lion).
pub type Lion = ElementwiseOptimizer<LionOptions>;

/// Lion's hyperparameters. Per step: `p *= 1 - lr * weight_decay`,
/// `p -= lr * sign(beta1 * m + (1 - beta1) * g)`, then `m = beta2 * m + (1 - beta2) * g`
/// (`m` starts at zero; `sign(0) = 0`).
#[derive(Clone, Debug, PartialEq)]
pub struct LionOptions {
    pub lr: f64,
    pub betas: (f64, f64),
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for LionOptions {
    fn default() -> Self {
        LionOptions { lr: 1e-4, betas: (0.9, 0.99), weight_decay: 0.0, maximize: false }
    }
}

impl UpdateRule for LionOptions {
    const NAME: &'static str = "lion";
    const BUFFERS: &'static [&'static str] = &["exp_avg"];

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
        check(self.lr >= 0.0, "Lion", "learning rate", self.lr, "must be >= 0")?;
        check((0.0..1.0).contains(&self.betas.0), "Lion", "beta1", self.betas.0, "must be in [0, 1)")?;
        check((0.0..1.0).contains(&self.betas.1), "Lion", "beta2", self.betas.1, "must be in [0, 1)")?;
        check(self.weight_decay >= 0.0, "Lion", "weight_decay", self.weight_decay, "must be >= 0")
    }

    fn uses_buffer(&self, _index: usize) -> bool {
        true
    }

    fn hyperparameters(&self) -> Hyperparameters {
        Hyperparameters::new()
            .with("lr", self.lr)
            .with("beta1", self.betas.0)
            .with("beta2", self.betas.1)
            .with("weight_decay", self.weight_decay)
            .with("maximize", flag(self.maximize))
    }

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
        let n = Self::NAME;
        Ok(LionOptions {
            lr: h.get(n, "lr")?,
            betas: (h.get(n, "beta1")?, h.get(n, "beta2")?),
            weight_decay: h.get(n, "weight_decay")?,
            maximize: h.get_bool(n, "maximize")?,
        })
    }

    fn update<W: Float>(&self, _ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
        let neg_lr = W::from_f64(-self.lr);
        let decay = self.weight_decay != 0.0;
        let decay_factor = W::from_f64(1.0 - self.lr * self.weight_decay);
        let (b1, w1) = (W::from_f64(self.betas.0), W::from_f64(1.0 - self.betas.0));
        let (b2, w2) = (W::from_f64(self.betas.1), W::from_f64(1.0 - self.betas.1));
        let sign = W::from_f64(if self.maximize { -1.0 } else { 1.0 });
        let (zero, one) = (W::zero(), W::one());
        let m = &mut *buffers[0];
        for ((p, &g), m) in param.iter_mut().zip(grad).zip(m.iter_mut()) {
            let g = g * sign;
            if decay {
                *p = *p * decay_factor;
            }
            let c = *m * b1 + w1 * g;
            // torch.sign: 0 stays 0, NaN stays NaN.
            let u = if c > zero {
                one
            } else if c < zero {
                -one
            } else {
                c * zero
            };
            *p = *p + neg_lr * u;
            *m = *m * b2 + w2 * g;
        }
    }
}
