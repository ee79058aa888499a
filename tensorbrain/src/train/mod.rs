//! Training: the loop ([`Trainer`]: `fit`, `train_one_epoch`, `evaluate`), metrics, progress
//! bars, gradient accumulation, mixed precision with loss scaling, a CSV log and a PNG plot
//! of the curves, and checkpoints that resume bit for bit.

mod amp;
mod history;
mod metrics;
mod objective;
mod plot;
mod trainer;

pub use amp::{autocast, autocast_dtype, GradScaler, Precision, ScalerState, DEFAULT_MIN_SCALE};
pub use history::{EpochRecord, History};
pub use metrics::{count_correct, Metrics};
pub use objective::{classification, Objective, StepOutput};
pub use trainer::{SchedulerStep, Trainer};
