//! Normalisation layers with running statistics or learned scales.

mod batch;
mod rms;

pub use batch::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormSaved};
pub use rms::{RMSNorm, RMSNormOf, RMSNormSaved};
