//! Normalisation layers with running statistics or learned scales.

mod batch;
mod group;
mod instance;
mod rms;

pub use group::{GroupNorm, GroupNormOf};
pub use instance::{InstanceNorm1d, InstanceNorm2d, InstanceNormOf};
pub use batch::{BatchNorm, BatchNormOf, BatchNorm1d, BatchNorm2d, BatchNormSaved};
pub use rms::{RMSNorm, RMSNormOf, RMSNormSaved};
