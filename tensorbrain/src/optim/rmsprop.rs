//! RMSprop, plain or centered, with momentum.

use tensorbrain_kernels::Float;

use super::optimizer::{check, flag, lerp, ElementwiseOptimizer, StepContext, UpdateRule};
use super::state::Hyperparameters;
use crate::tensor::Result;

/// `torch.optim.RMSprop`.
pub type RmsProp = ElementwiseOptimizer<RmsPropOptions>;

/// RMSprop's hyperparameters (defaults are PyTorch's). With `g = grad + weight_decay * p`:
/// `sq = alpha * sq + (1 - alpha) * g^2`; centered also keeps `ga = lerp(ga, g, 1 - alpha)` and
/// uses `sq - ga^2`; `avg = sqrt(..) + eps`; then `buf = momentum * buf + g / avg`,
/// `p -= lr * buf` (or `p -= lr * g / avg` without momentum).
#[derive(Clone, Debug, PartialEq)]
pub struct RmsPropOptions {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
}

impl Default for RmsPropOptions {
    fn default() -> Self {
        RmsPropOptions { lr: 1e-2, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false, maximize: false }
    }
}

impl UpdateRule for RmsPropOptions {
    const NAME: &'static str = "rmsprop";
    const BUFFERS: &'static [&'static str] = &["square_avg", "momentum_buffer", "grad_avg"];

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
        check(self.lr >= 0.0, "RMSprop", "learning rate", self.lr, "must be >= 0")?;
        check(self.eps >= 0.0, "RMSprop", "epsilon", self.eps, "must be >= 0")?;
        check(self.momentum >= 0.0, "RMSprop", "momentum", self.momentum, "must be >= 0")?;
        check(self.weight_decay >= 0.0, "RMSprop", "weight_decay", self.weight_decay, "must be >= 0")?;
        check(self.alpha >= 0.0, "RMSprop", "alpha", self.alpha, "must be >= 0")
    }

    fn uses_buffer(&self, index: usize) -> bool {
        match index {
            0 => true,
            1 => self.momentum > 0.0,
            _ => self.centered,
        }
    }

    fn hyperparameters(&self) -> Hyperparameters {
        Hyperparameters::new()
            .with("lr", self.lr)
            .with("alpha", self.alpha)
            .with("eps", self.eps)
            .with("weight_decay", self.weight_decay)
            .with("momentum", self.momentum)
            .with("centered", flag(self.centered))
            .with("maximize", flag(self.maximize))
    }

    fn from_hyperparameters(h: &Hyperparameters) -> Result<Self> {
        let n = Self::NAME;
        Ok(RmsPropOptions {
            lr: h.get(n, "lr")?,
            alpha: h.get(n, "alpha")?,
            eps: h.get(n, "eps")?,
            weight_decay: h.get(n, "weight_decay")?,
            momentum: h.get(n, "momentum")?,
            centered: h.get_bool(n, "centered")?,
            maximize: h.get_bool(n, "maximize")?,
        })
    }

    fn update<W: Float>(&self, _ctx: &StepContext, param: &mut [W], grad: &[W], buffers: &mut [&mut [W]]) {
        let neg_lr = W::from_f64(-self.lr);
        let alpha = W::from_f64(self.alpha);
        let w = 1.0 - self.alpha;
        let (w_small, w, one_minus_w) = (w.abs() < 0.5, W::from_f64(w), W::one() - W::from_f64(w));
        let eps = W::from_f64(self.eps);
        let has_wd = self.weight_decay != 0.0;
        let wd = W::from_f64(self.weight_decay);
        let sign = W::from_f64(if self.maximize { -1.0 } else { 1.0 });
        let mom = W::from_f64(self.momentum);
        let [sq, buf, ga] = buffers else { unreachable!("rmsprop keeps three buffers") };
        // g (after decay) and the new square average.
        let square = |p: W, g: W, s: &mut W| -> W {
            let mut g = g * sign;
            if has_wd {
                g = g + wd * p;
            }
            *s = *s * alpha + w * g * g;
            g
        };
        let centered_avg = |s: W, g: W, a: &mut W| -> W {
            *a = lerp(*a, g, w, w_small, one_minus_w);
            (s + (-*a) * *a).sqrt() + eps
        };
        match (self.centered, self.momentum > 0.0) {
            (false, false) => {
                for ((p, &g), s) in param.iter_mut().zip(grad).zip(sq.iter_mut()) {
                    let g = square(*p, g, s);
                    let avg = s.sqrt() + eps;
                    *p = *p + neg_lr * (g / avg);
                }
            }
            (false, true) => {
                for (((p, &g), s), b) in param.iter_mut().zip(grad).zip(sq.iter_mut()).zip(buf.iter_mut()) {
                    let g = square(*p, g, s);
                    let avg = s.sqrt() + eps;
                    *b = *b * mom + g / avg;
                    *p = *p + neg_lr * *b;
                }
            }
            (true, false) => {
                for (((p, &g), s), a) in param.iter_mut().zip(grad).zip(sq.iter_mut()).zip(ga.iter_mut()) {
                    let g = square(*p, g, s);
                    let avg = centered_avg(*s, g, a);
                    *p = *p + neg_lr * (g / avg);
                }
            }
            (true, true) => {
                for ((((p, &g), s), a), b) in param.iter_mut().zip(grad).zip(sq.iter_mut()).zip(ga.iter_mut()).zip(buf.iter_mut()) {
                    let g = square(*p, g, s);
                    let avg = centered_avg(*s, g, a);
                    *b = *b * mom + g / avg;
                    *p = *p + neg_lr * *b;
                }
            }
        }
    }
}
