//! Prometheus metrics through the `metrics` facade, rendered by `metrics-exporter-prometheus`
//! on the server's separate metrics port.
//!
//! | name | kind | what |
//! | --- | --- | --- |
//! | `tensorbrain_requests_total{status}` | counter | inference requests answered, by HTTP status |
//! | `tensorbrain_request_duration_seconds` | histogram | inference request latency, body read to response |
//! | `tensorbrain_queue_duration_seconds` | histogram | time a request waited before its forward started |
//! | `tensorbrain_compute_duration_seconds` | histogram | time of one batched forward |
//! | `tensorbrain_batch_size` | histogram | rows per forward |
//! | `tensorbrain_queue_depth` | gauge | requests waiting for the batcher |
//! | `tensorbrain_inflight_requests` | gauge | inference requests being handled |
//! | `tensorbrain_shed_fraction` | gauge | fraction of new requests refused because the HTTP stage is behind |
//! | `tensorbrain_http_lag_seconds` | gauge | how long a ready connection waits to be handled (standing minimum) |

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];
const BATCH_BUCKETS: [f64; 11] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// The process's recorder, installed on first use (a process has one global recorder; tests
/// that start several servers share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("tensorbrain_batch_size".into()), &BATCH_BUCKETS))
            .expect("bucket lists are non-empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's): then ours still
        // renders, it just sees nothing, which the metrics endpoint cannot hide; say so.
        if metrics::set_global_recorder(recorder).is_err() {
            eprintln!("tensorbrain-serve: a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    metrics::describe_counter!("tensorbrain_requests_total", "Inference requests answered, by HTTP status");
    metrics::describe_histogram!("tensorbrain_request_duration_seconds", metrics::Unit::Seconds, "Inference request latency");
    metrics::describe_histogram!("tensorbrain_queue_duration_seconds", metrics::Unit::Seconds, "Time a request waited for its forward");
    metrics::describe_histogram!("tensorbrain_compute_duration_seconds", metrics::Unit::Seconds, "Time of one batched forward");
    metrics::describe_histogram!("tensorbrain_batch_size", "Rows per forward");
    metrics::describe_gauge!("tensorbrain_queue_depth", "Requests waiting for the batcher");
    metrics::describe_gauge!("tensorbrain_inflight_requests", "Inference requests being handled");
    metrics::describe_gauge!("tensorbrain_shed_fraction", "Fraction of new requests refused because the HTTP stage is behind");
    metrics::describe_gauge!("tensorbrain_http_lag_seconds", metrics::Unit::Seconds, "How long a ready connection waits to be handled");
}

pub fn request(status: u16, latency: Duration) {
    counter!("tensorbrain_requests_total", "status" => status.to_string()).increment(1);
    histogram!("tensorbrain_request_duration_seconds").record(latency.as_secs_f64());
}

pub fn queue_depth(depth: usize) {
    gauge!("tensorbrain_queue_depth").set(depth as f64);
}

pub fn queue_time(t: Duration) {
    histogram!("tensorbrain_queue_duration_seconds").record(t.as_secs_f64());
}

pub fn batch(rows: usize, compute: Duration) {
    histogram!("tensorbrain_batch_size").record(rows as f64);
    histogram!("tensorbrain_compute_duration_seconds").record(compute.as_secs_f64());
}

pub fn shedding(fraction: f64, lag: Duration) {
    gauge!("tensorbrain_shed_fraction").set(fraction);
    gauge!("tensorbrain_http_lag_seconds").set(lag.as_secs_f64());
}

/// Counts a request in flight for as long as it lives.
pub struct InFlight;

impl InFlight {
    pub fn start() -> InFlight {
        gauge!("tensorbrain_inflight_requests").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!("tensorbrain_inflight_requests").decrement(1.0);
    }
}
