//! Generated serving binaries for TensorBrain models.
//!
//! One line turns a `#[model]` into an inference server that speaks the Open Inference
//! Protocol (KServe v2 REST, as Triton, KServe, Seldon MLServer and TorchServe's v2 mode do):
//!
//! ```ignore
//! // src/bin/serve.rs
//! tensorbrain_serve::serve_main!(my_crate::Mlp);
//! ```
//!
//! `cargo build --release --bin serve` then gives a binary with flags (`--weights`, `--port`,
//! `--metrics-port`, `--max-batch`, `--max-wait-us`, `--queue`, `--threads`, `--int8`, ...; `--help`
//! lists them). The model's typed `forward` signature is the source of truth: input names,
//! dtypes and shapes (`[-1, 784]` for the batch dim) in the metadata and the OpenAPI document
//! come from it, and every request is checked against it before it is queued.
//!
//! Inside: axum on tokio parses and validates; a dynamic batcher on its own thread stacks
//! concurrent requests along the batch dim (up to `--max-batch` rows, waiting at most
//! `--max-wait-us`), runs one forward and splits the result; its queue is bounded, and a full
//! queue answers 429 with `Retry-After`. When the HTTP stage itself falls behind (a small model
//! and JSON requests), new requests are refused before they are read (`--shed-lag-us`).
//! Prometheus metrics are served on a separate port. `--int8` serves the model's int8 graph.
//!
//! It is a function-like macro rather than an attribute on `main` because it needs nothing
//! from the item it would decorate: a binary is the model type and the flags, and
//! [`serve`] is there for a `main` that wants to do more.

mod admission;
mod batcher;
mod decode;
mod error;
mod fast_json;
mod metrics;
mod openapi;
mod options;
mod response;
mod routes;
mod server;
mod tensor_data;

pub use batcher::{BatchConfig, Completed, InferFn};
pub use decode::{Decoder, InferRequest, NonFinite};
pub use error::ApiError;
pub use options::{Int8Source, Options};
pub use server::{load_model, main_for, model_infer_fn, serve, terminate_signal, Server};
pub use tensor_data::{datatype_name, TensorData};

/// Models are served as this one version.
pub const MODEL_VERSION: &str = "1";

/// Defines `main` for a binary that serves `$model` (a `#[model]` type) with the flags of
/// [`Options`]; see [`main_for`].
#[macro_export]
macro_rules! serve_main {
    ($model:ty) => {
        fn main() -> ::std::process::ExitCode {
            $crate::main_for::<$model>()
        }
    };
}
