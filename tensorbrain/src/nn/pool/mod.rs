//! Pooling layers beyond the fixed-window ones in `layers.rs`.

mod adaptive;
mod window;

pub use adaptive::{AdaptiveAvgPool2d, AdaptiveAvgPoolSaved};
pub use window::{AvgPool2dWith, MaxPool2dWith};
