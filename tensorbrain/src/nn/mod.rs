//! Layers and the `Module` trait.

mod layers;
mod module;
mod static_model;

pub use module::{join, Module, ModuleExt, Summary, SummaryRow};
pub use static_model::{check_inputs, count_params, run_static, AsParam, DimCheck, StaticModel};
pub use layers::{AvgPool2d, Conv2d, Dropout, Embedding, Flatten, LayerNorm, Linear, MaxPool2d, ReLU, SiLU, Sigmoid, Tanh, GELU};
