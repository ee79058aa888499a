//! Adadelta: step sizes from running averages of squared gradients and squared updates.

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// `torch.optim.Adadelta`.
pub type Adadelta = ElementwiseOptimizer<AdadeltaOptions>;

/// Adadelta's hyperparameters (defaults are PyTorch's). With `g = grad + weight_decay * p`:
/// `square_avg = rho * square_avg + (1 - rho) g^2`,
/// `delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g`,
/// `acc_delta = rho * acc_delta + (1 - rho) delta^2`, `p -= lr * delta`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdadeltaOptions {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for AdadeltaOptions {
    fn default() -> Self {
        AdadeltaOptions { lr: 1.0, rho: 0.9, eps: 1e-6, weight_decay: 0.0, maximize: false }
    }
}

impl UpdateRule for AdadeltaOptions {
    const NAME: &'static str = "adadelta";
    const BUFFERS: &'static [&'static str] = &["square_avg", "acc_delta"];

    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn validate(&self) -> Result<()> {
        check(self.lr >= 0.0, "Adadelta", "learning rate", self.lr, "must be >= 0")?;
        check((0.0..=1.0).contains(&self.rho), "Adadelta", "rho", self.rho, "must be in [0, 1]")?;
        check(self.eps >= 0.0, "Adadelta", "epsilon", self.eps, "must be >= 0")?;
        check(self.weight_decay >= 0.0, "Adadelta", "weight_decay", self.weight_decay, "must be >= 0")
    }
    fn uses_buffer(&self, _: usize) -> bool {
        true
    }
    fn hyperparameters(&self) -> Hyperparameters {
        Hyperparameters::new()
            .with("lr", self.lr)
            .with("rho", self.rho)
            .with("eps", self.eps)
            .with("weight_decay", self.weight_decay)
            .with("maximize", flag(self.maximize))
    }
    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
        let n = Self::NAME;
        Ok(AdadeltaOptions {
            lr: h.get(n, "lr")?,
            rho: h.get(n, "rho")?,
            eps: h.get(n, "eps")?,
            weight_decay: h.get(n, "weight_decay")?,
            maximize: h.get_bool(n, "maximize")?,
        })
    }
    fn update<W: Float>(&self, _ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
        let [sq, acc] = buffers else { unreachable!("adadelta keeps two buffers") };
        let (rho, w, eps, wd, neg_lr) =
            (W::from_f64(self.rho), W::from_f64(1.0 - self.rho), W::from_f64(self.eps), W::from_f64(self.weight_decay), W::from_f64(-self.lr));
        let sign = W::from_f64(if self.maximize { -1.0 } else { 1.0 });
        let has_wd = self.weight_decay != 0.0;
        for (((p, &g), s), a) in param.iter_mut().zip(grad).zip(sq.iter_mut()).zip(acc.iter_mut()) {
            let mut g = g * sign;
            if has_wd {
                g = g + wd * *p;
            }
            *s = *s * rho + w * g * g;
            let std = (*s + eps).sqrt();
            let delta = (*a + eps).sqrt() / std * g;
            *a = *a * rho + w * delta * delta;
            *p = *p + neg_lr * delta;
        }
    }
}
