//! Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// `torch.optim.SGD`.
pub type Sgd = ElementwiseOptimizer<SgdOptions>;

/// SGD's hyperparameters (defaults are PyTorch's).
///
/// With `g = grad + weight_decay * p` (negated first if `maximize`), momentum keeps
/// `buf = momentum * buf + (1 - dampening) * g` (on the first step `buf = g`), and the update is
/// `p -= lr * (nesterov ? g + momentum * buf : buf)` (`p -= lr * g` without momentum).
#[derive(Clone, Debug, PartialEq)]
pub struct SgdOptions {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub maximize: bool,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false, maximize: false }
    }
}

impl UpdateRule for SgdOptions {
    const NAME: &'static str = "sgd";
    const BUFFERS: &'static [&'static str] = &["momentum_buffer"];

    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn momentum(&self) -> Option<f64> {
        Some(self.momentum)
    }
    fn set_momentum(&mut self, momentum: f64) {
        self.momentum = momentum;
    }

    fn validate(&self) -> Result<()> {
        check(self.lr >= 0.0, "SGD", "learning rate", self.lr, "must be >= 0")?;
        check(self.momentum >= 0.0, "SGD", "momentum", self.momentum, "must be >= 0")?;
        check(self.dampening.is_finite(), "SGD", "dampening", self.dampening, "must be finite")?;
        check(self.weight_decay >= 0.0, "SGD", "weight_decay", self.weight_decay, "must be >= 0")?;
        check(
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            "SGD",
            "nesterov setting: momentum",
            format!("{} with dampening {}", self.momentum, self.dampening),
            "Nesterov momentum requires a momentum > 0 and zero dampening",
        )
    }

    fn uses_buffer(&self, _index: usize) -> bool {
        self.momentum != 0.0
    }

    fn hyperparameters(&self) -> Hyperparameters {
        Hyperparameters::new()
            .with("lr", self.lr)
            .with("momentum", self.momentum)
            .with("dampening", self.dampening)
            .with("weight_decay", self.weight_decay)
            .with("nesterov", flag(self.nesterov))
            .with("maximize", flag(self.maximize))
    }

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
        let n = Self::NAME;
        Ok(SgdOptions {
            lr: h.get(n, "lr")?,
            momentum: h.get(n, "momentum")?,
            dampening: h.get(n, "dampening")?,
            weight_decay: h.get(n, "weight_decay")?,
            nesterov: h.get_bool(n, "nesterov")?,
            maximize: h.get_bool(n, "maximize")?,
        })
    }

    fn update<W: Float>(&self, ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
        let neg_lr = W::from_f64(-self.lr);
        let wd = W::from_f64(self.weight_decay);
        let has_wd = self.weight_decay != 0.0;
        let sign = W::from_f64(if self.maximize { -1.0 } else { 1.0 });
        let effective = |p: W, g: W| {
            let g = g * sign;
            if has_wd {
                g + wd * p
            } else {
                g
            }
        };
        if self.momentum == 0.0 {
            for (p, &g) in param.iter_mut().zip(grad) {
                let g = effective(*p, g);
                *p = *p + neg_lr * g;
            }
            return;
        }
        let m = W::from_f64(self.momentum);
        let keep = W::from_f64(1.0 - self.dampening);
        let buf = &mut *buffers[0];
        let fresh = ctx.is_fresh(0);
        let nesterov = self.nesterov;
        for ((p, &g), b) in param.iter_mut().zip(grad).zip(buf.iter_mut()) {
            let g = effective(*p, g);
            *b = if fresh { g } else { *b * m + keep * g };
            let d = if nesterov { g + m * *b } else { *b };
            *p = *p + neg_lr * d;
        }
    }
}
