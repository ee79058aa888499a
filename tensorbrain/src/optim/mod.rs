//! Optimizers, gradient clipping and learning-rate schedulers, with PyTorch's semantics.
//!
//! ```no_run
//! use tensorbrain::optim::{lr_scheduler::{CosineAnnealingLR, LrScheduler}, AdamW, AdamWOptions, Optimizer};
//! # use tensorbrain::{DType, Tensor};
//! # fn loss(w: &Tensor) -> Tensor { w.mul(w).sum_all() }
//! let w = Tensor::randn(&[3, 4], DType::F32).set_requires_grad(true);
//! let mut opt = AdamW::new(vec![w.clone()], AdamWOptions { lr: 1e-3, ..Default::default() }).unwrap();
//! let mut sched = CosineAnnealingLR::new(&mut opt, 100, 0.0).unwrap();
//! for _ in 0..100 {
//!     opt.zero_grad();
//!     loss(&w).backward();
//!     tensorbrain::optim::clip_grad_norm(&[w.clone()], 1.0, 2.0).unwrap();
//!     opt.step().unwrap();
//!     sched.step(&mut opt);
//! }
//! ```
//!
//! Every optimizer here is an [`ElementwiseOptimizer`] over an [`UpdateRule`] (its options
//! struct): the update of each parameter runs as one fused pass over the parameter, its gradient
//! and its state buffers, directly on the storage, outside autograd.

// Argument checks are written `!(x >= 0.0)` on purpose: they reject NaN too. `%` instead of
// `is_multiple_of` keeps the crate's minimum Rust version.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::manual_is_multiple_of)]

mod adadelta;
mod adagrad;
mod adam;
mod adamax;
mod clip;
mod lion;
mod nadam;
mod radam;
pub mod lr_scheduler;
mod optimizer;
pub(crate) use adam::{fused_adam, AdamHyper};
mod rmsprop;
mod sgd;
mod state;

pub use adadelta::{Adadelta, AdadeltaOptions};
pub use adagrad::{Adagrad, AdagradOptions};
pub use adam::{Adam, AdamOptions, AdamW, AdamWOptions};
pub use adamax::{Adamax, AdamaxOptions};
pub use clip::{clip_grad_norm, clip_grad_value};
pub use lion::{Lion, LionOptions};
pub use nadam::{NAdam, NAdamOptions};
pub use radam::{RAdam, RAdamOptions};
pub use optimizer::{ElementwiseOptimizer, ParamGroup, StepContext, UpdateRule};
pub use rmsprop::{RmsProp, RmsPropOptions};
pub use sgd::{Sgd, SgdOptions};
pub use state::{GroupState, Hyperparameters, OptimizerState, ParamState};
pub use tensorbrain_kernels::Float;

use crate::tensor::{Result, Tensor};

/// The interface training loops and schedulers use, object safe (`&mut dyn Optimizer`).
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient (others are skipped, and their
    /// step counts do not advance), like `optimizer.step()`.
    fn step(&mut self) -> Result<()>;

    /// Clears every parameter's gradient (PyTorch's `zero_grad(set_to_none=True)`).
    fn zero_grad(&self);

    /// The learning rate of the first parameter group.
    fn lr(&self) -> f64 {
        self.group_lr(0)
    }

    /// Sets the learning rate of every parameter group (with one group: of that group).
    fn set_lr(&mut self, lr: f64) {
        for g in 0..self.num_groups() {
            self.set_group_lr(g, lr);
        }
    }

    /// Number of parameter groups.
    fn num_groups(&self) -> usize;

    /// The learning rate of group `group` (panics if out of range).
    fn group_lr(&self, group: usize) -> f64;

    /// Sets the learning rate of group `group` (panics if out of range).
    fn set_group_lr(&mut self, group: usize, lr: f64);

    /// The group's momentum (SGD, RMSprop) or first beta (Adam, AdamW, Lion), which
    /// [`lr_scheduler::OneCycleLR`] cycles; `None` for optimizers without one.
    fn group_momentum(&self, group: usize) -> Option<f64>;

    /// Sets what [`Optimizer::group_momentum`] reads; returns false if there is no such value.
    fn set_group_momentum(&mut self, group: usize, momentum: f64) -> bool;

    /// Every parameter, group by group (for clipping: `clip_grad_norm(&opt.params(), ..)`).
    fn params(&self) -> Vec<Tensor>;

    /// A snapshot (deep copy) of the optimizer's state and hyperparameters.
    fn state_dict(&self) -> OptimizerState;

    /// Restores a snapshot taken from an optimizer of the same kind over parameters of the same
    /// shapes, group for group. Nothing changes if it fails.
    fn load_state_dict(&mut self, state: &OptimizerState) -> Result<()>;
}
