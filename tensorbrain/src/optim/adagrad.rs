//! Adagrad: per-element learning rates from the running sum of squared gradients.

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// `torch.optim.Adagrad`.
pub type Adagrad = ElementwiseOptimizer<AdagradOptions>;

/// Adagrad's hyperparameters (defaults are PyTorch's). With `g = grad + weight_decay * p`:
/// `sum += g^2`, `p -= lr / (1 + (step - 1) * lr_decay) * g / (sqrt(sum) + eps)`; `sum` starts
/// at `initial_accumulator_value`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdagradOptions {
    pub lr: f64,
    pub lr_decay: f64,
    pub weight_decay: f64,
    pub initial_accumulator_value: f64,
    pub eps: f64,
    pub maximize: bool,
}

impl Default for AdagradOptions {
    fn default() -> Self {
        AdagradOptions { lr: 1e-2, lr_decay: 0.0, weight_decay: 0.0, initial_accumulator_value: 0.0, eps: 1e-10, maximize: false }
    }
}

impl UpdateRule for AdagradOptions {
    const NAME: &'static str = "adagrad";
    const BUFFERS: &'static [&'static str] = &["sum"];

    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn validate(&self) -> Result<()> {
        check(self.lr >= 0.0, "Adagrad", "learning rate", self.lr, "must be >= 0")?;
        check(self.lr_decay >= 0.0, "Adagrad", "lr_decay", self.lr_decay, "must be >= 0")?;
        check(self.weight_decay >= 0.0, "Adagrad", "weight_decay", self.weight_decay, "must be >= 0")?;
        check(self.initial_accumulator_value >= 0.0, "Adagrad", "initial_accumulator_value", self.initial_accumulator_value, "must be >= 0")?;
        check(self.eps >= 0.0, "Adagrad", "epsilon", self.eps, "must be >= 0")
    }
    fn uses_buffer(&self, _: usize) -> bool {
        true
    }
    fn hyperparameters(&self) -> Hyperparameters {
        Hyperparameters::new()
            .with("lr", self.lr)
            .with("lr_decay", self.lr_decay)
            .with("weight_decay", self.weight_decay)
            .with("initial_accumulator_value", self.initial_accumulator_value)
            .with("eps", self.eps)
            .with("maximize", flag(self.maximize))
    }
    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
        let n = Self::NAME;
        Ok(AdagradOptions {
            lr: h.get(n, "lr")?,
            lr_decay: h.get(n, "lr_decay")?,
            weight_decay: h.get(n, "weight_decay")?,
            initial_accumulator_value: h.get(n, "initial_accumulator_value")?,
            eps: h.get(n, "eps")?,
            maximize: h.get_bool(n, "maximize")?,
        })
    }
    fn update<W: Float>(&self, ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
        let [sum] = buffers else { unreachable!("adagrad keeps one buffer") };
        if ctx.is_fresh(0) && self.initial_accumulator_value != 0.0 {
            sum.fill(W::from_f64(self.initial_accumulator_value));
        }
        let clr = self.lr / (1.0 + (ctx.step as f64 - 1.0) * self.lr_decay);
        let (neg_clr, eps, wd) = (W::from_f64(-clr), W::from_f64(self.eps), W::from_f64(self.weight_decay));
        let sign = W::from_f64(if self.maximize { -1.0 } else { 1.0 });
        let has_wd = self.weight_decay != 0.0;
        for ((p, &g), s) in param.iter_mut().zip(grad).zip(sum.iter_mut()) {
            let mut g = g * sign;
            if has_wd {
                g = g + wd * *p;
            }
            *s = *s + g * g;
            *p = *p + neg_clr * (g / (s.sqrt() + eps));
        }
    }
}
