//! Mixed precision: compute in bf16 or f16 against f32 master weights, with dynamic loss
//! scaling so that small f16 gradients do not flush to zero.
//!
//! The trainer casts parameters to the compute dtype for each forward (the casts are on the
//! tape, so gradients arrive at the f32 masters in f32) and casts float inputs too; the model
//! runs under [`autocast`] so that a `#[model]` declared in f32 accepts the low-precision
//! inputs. PyTorch does the same with `autocast` and `GradScaler`.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

use crate::autograd::no_grad;
use crate::tensor::{DType, Result, Tensor};

/// The dtype forward and backward compute in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        }
    }
}

thread_local! {
    static AUTOCAST: Cell<Option<DType>> = const { Cell::new(None) };
}

/// Runs `f` with f32-declared model inputs accepted in `dtype` as well.
pub fn autocast<R>(dtype: DType, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<DType>);
    impl Drop for Restore {
        fn drop(&mut self) {
            AUTOCAST.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(AUTOCAST.with(|a| a.replace(Some(dtype))));
    f()
}

/// The dtype [`autocast`] is running in, if any.
pub fn autocast_dtype() -> Option<DType> {
    AUTOCAST.with(Cell::get)
}

/// Dynamic loss scaling, as `torch.amp.GradScaler`: the loss is multiplied by `scale` before
/// backward; gradients are divided by it before the step; a step whose gradients overflowed is
/// skipped and the scale halved; after `growth_interval` clean steps the scale doubles.
#[derive(Clone, Debug)]
pub struct GradScaler {
    state: ScalerState,
    growth_factor: f64,
    backoff_factor: f64,
    growth_interval: u64,
    min_scale: f64,
}

/// The default [`GradScaler::min_scale`]: 2^-24, f16's smallest subnormal. A loss multiplied by
/// less flushes to zero in f16, so a scale that fell this far has stopped meaning anything; it
/// only gets here when gradients overflow at every scale tried, i.e. when the loss or the
/// weights are already inf or NaN.
pub const DEFAULT_MIN_SCALE: f64 = 1.0 / (1u64 << 24) as f64;

/// What a [`GradScaler`] carries between steps (and checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    pub scale: f64,
    /// Clean steps since the scale last changed.
    pub growth_tracker: u64,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler::new(65536.0)
    }
}

impl GradScaler {
    /// PyTorch's defaults: growth ×2 every 2000 clean steps, backoff ×0.5.
    pub fn new(init_scale: f64) -> GradScaler {
        GradScaler {
            state: ScalerState { scale: init_scale, growth_tracker: 0 },
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            min_scale: DEFAULT_MIN_SCALE,
        }
    }

    /// The scale below which [`GradScaler::collapsed`] reports divergence (default
    /// [`DEFAULT_MIN_SCALE`]).
    pub fn with_min_scale(mut self, min_scale: f64) -> GradScaler {
        self.min_scale = min_scale;
        self
    }

    pub fn min_scale(&self) -> f64 {
        self.min_scale
    }

    /// Whether overflowing steps have halved the scale below its minimum: the gradients are
    /// not finite at any scale, so training has diverged.
    pub fn collapsed(&self) -> bool {
        self.state.scale < self.min_scale
    }

    pub fn with_growth_interval(mut self, steps: u64) -> GradScaler {
        self.growth_interval = steps.max(1);
        self
    }

    pub fn scale(&self) -> f64 {
        self.state.scale
    }

    pub fn state(&self) -> ScalerState {
        self.state.clone()
    }

    pub fn load_state(&mut self, state: ScalerState) {
        self.state = state;
    }

    /// The loss to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss.mul_scalar(self.state.scale)
    }

    /// Divides every gradient by the scale (in place); true if all of them are finite.
    pub fn unscale(&self, params: &[Tensor]) -> Result<bool> {
        let inv = 1.0 / self.state.scale;
        let mut finite = true;
        no_grad(|| -> Result<()> {
            for p in params {
                if let Some(g) = p.grad() {
                    let g = g.mul_scalar(inv);
                    finite &= g.try_to_dtype(DType::F64)?.sum(&[], false).item::<f64>().is_finite();
                    p.set_grad(Some(g));
                }
            }
            Ok(())
        })?;
        Ok(finite)
    }

    /// Adjusts the scale after a step (`found_inf`: the step was skipped).
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.state.scale *= self.backoff_factor;
            self.state.growth_tracker = 0;
        } else {
            self.state.growth_tracker += 1;
            if self.state.growth_tracker >= self.growth_interval {
                self.state.scale *= self.growth_factor;
                self.state.growth_tracker = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_skips_overflow_and_grows_after_clean_steps() {
        let mut s = GradScaler::new(8.0).with_growth_interval(2);
        let p = Tensor::zeros(&[2], DType::F32).set_requires_grad(true);
        p.set_grad(Some(Tensor::from_vec(vec![8.0f32, 16.0], &[2])));
        assert!(s.unscale(std::slice::from_ref(&p)).unwrap());
        assert_eq!(p.grad().unwrap().to_vec::<f32>(), vec![1.0, 2.0]);
        p.set_grad(Some(Tensor::from_vec(vec![f32::INFINITY, 1.0], &[2])));
        assert!(!s.unscale(std::slice::from_ref(&p)).unwrap());
        s.update(true);
        assert_eq!(s.scale(), 4.0);
        s.update(false);
        assert_eq!(s.scale(), 4.0);
        s.update(false);
        assert_eq!(s.scale(), 8.0);
    }

    #[test]
    fn the_scale_collapses_below_its_minimum() {
        let mut s = GradScaler::new(4.0).with_min_scale(1.0);
        s.update(true);
        s.update(true);
        assert!(!s.collapsed(), "scale 1 is the minimum, not below it");
        s.update(true);
        assert!(s.collapsed());
        // The default minimum: 65536 halves 40 times to 2^-24, the 41st overflow collapses it.
        let mut s = GradScaler::default();
        (0..40).for_each(|_| s.update(true));
        assert!(!s.collapsed());
        s.update(true);
        assert!(s.collapsed());
    }

    #[test]
    fn autocast_nests_and_restores() {
        assert_eq!(autocast_dtype(), None);
        autocast(DType::BF16, || {
            assert_eq!(autocast_dtype(), Some(DType::BF16));
            autocast(DType::F16, || assert_eq!(autocast_dtype(), Some(DType::F16)));
            assert_eq!(autocast_dtype(), Some(DType::BF16));
        });
        assert_eq!(autocast_dtype(), None);
    }
}
