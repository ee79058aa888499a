//! Pooling layers beyond the fixed-window ones in `layers.rs`.

mod adaptive;

pub use adaptive::{AdaptiveAvgPool2d, AdaptiveAvgPoolSaved};
