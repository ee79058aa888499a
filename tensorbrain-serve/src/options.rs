//! The flags of a generated serving binary.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::decode::NonFinite;

/// Serve a TensorBrain model over the Open Inference Protocol (KServe v2 REST).
#[derive(Parser, Clone, Debug)]
#[command(version, about)]
pub struct Options {
    /// Weights to serve: a safetensors file as `Module::save` (or the mnist example) writes it.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["random_weights", "int8"])]
    pub weights: Option<PathBuf>,

    /// Serve randomly initialised weights from this seed instead (for trying the server out).
    #[arg(long, value_name = "SEED", conflicts_with = "weights")]
    pub random_weights: Option<u64>,

    /// The name in URLs (`/v2/models/NAME/infer`); the model's type name in lower case by default.
    #[arg(long)]
    pub model_name: Option<String>,

    /// Address to listen on; 0.0.0.0 to accept connections from other machines.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port for the protocol (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,

    /// Port for Prometheus `/metrics` (0: any free port).
    #[arg(long, default_value_t = 8002)]
    pub metrics_port: u16,

    /// Most rows (along the batch dim) in one forward.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_batch: u64,

    /// How long, in microseconds, the first request of a batch waits for others to join it.
    /// 0 batches greedily: whatever queued while the last forward ran goes into the next one,
    /// so batches grow with load and an idle server adds no wait.
    #[arg(long, default_value_t = 0)]
    pub max_wait_us: u64,

    /// Requests that may wait for the model; more get 429 Too Many Requests with Retry-After.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub queue: u64,

    /// Refuse new requests (429, before reading them) while connections wait longer than this
    /// many microseconds to be handled: the HTTP stage is behind, which the batch queue cannot
    /// see when parsing, not the model, is the bottleneck. 0 turns shedding off.
    #[arg(long, default_value_t = 2000)]
    pub shed_lag_us: u64,

    /// Deadline per request in milliseconds (a request's `parameters.timeout` may shorten it);
    /// past it the answer is 504.
    #[arg(long, default_value_t = 1000)]
    pub deadline_ms: u64,

    /// Largest accepted request body; larger ones get 413.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_body_bytes: usize,

    /// NaN and infinite inputs: reject (400) or pass to the model.
    #[arg(long, value_enum, default_value_t = NonFinite::Reject)]
    pub non_finite: NonFinite,

    /// Threads for the model's kernels (0: one per core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Threads that handle HTTP (parse, validate, encode).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub http_threads: u64,

    /// Serve in INT8. `dynamic` quantizes the weights of `--weights` at start (per-channel i8
    /// weights; activations quantized per batch, so no calibration data is needed); a FILE is
    /// an int8 model written by `QuantizedGraph::save` (for one, `model.quantize(&loader,
    /// &QuantConfig::static_ptq())?.save(path)`), static or dynamic, which needs no --weights.
    /// Inputs and outputs stay FP32 on the wire.
    #[arg(long, value_name = "dynamic|FILE")]
    pub int8: Option<Int8Source>,
}

/// Where `--int8` takes the int8 model from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Int8Source {
    /// Quantize the loaded f32 weights at start, activations per batch.
    Dynamic,
    /// A file written by `QuantizedGraph::save`.
    File(PathBuf),
}

impl std::str::FromStr for Int8Source {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "dynamic" { Int8Source::Dynamic } else { Int8Source::File(PathBuf::from(s)) })
    }
}

impl Options {
    /// The options a binary would get from `args` (the first item is the program name).
    pub fn from_args<I, T>(args: I) -> Result<Options, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Options::try_parse_from(args)
    }
}
