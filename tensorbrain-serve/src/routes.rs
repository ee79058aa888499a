//! The REST surface of the Open Inference Protocol (KServe v2), plus Triton's model
//! configuration and binary-tensor extensions and an OpenAPI document of it all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::json;

use crate::admission::Admission;
use crate::batcher::BatchQueue;
use crate::decode::Decoder;
use crate::error::{error_body, ApiError};
use crate::metrics::{self as m, InFlight};
use crate::response::{infer_response, HEADER_CONTENT_LENGTH};
use crate::tensor_data::datatype_name;
use crate::{openapi, MODEL_VERSION};

/// What every handler shares.
pub struct App {
    pub model_name: String,
    pub decoder: Decoder,
    pub queue: BatchQueue,
    /// The longest a request may take; its `parameters.timeout` can only shorten it.
    pub deadline: Duration,
    pub max_body_bytes: usize,
    pub max_wait: Duration,
    /// Sheds load when the HTTP stage falls behind.
    pub admission: Arc<Admission>,
    /// Set once warm-up ran a real forward; cleared when shutdown begins.
    pub ready: AtomicBool,
}

impl App {
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.queue.is_alive()
    }

    /// Checks the `{model}` (and `{version}`) of a path.
    fn check_model(&self, path: &HashMap<String, String>) -> Result<(), ApiError> {
        let name = path.get("model").map(String::as_str).unwrap_or_default();
        if name != self.model_name {
            return Err(ApiError::not_found(format!("unknown model `{name}`; this server serves `{}`", self.model_name)));
        }
        match path.get("version") {
            Some(v) if v != MODEL_VERSION => {
                Err(ApiError::not_found(format!("model `{name}` has no version `{v}`; its one version is `{MODEL_VERSION}`")))
            }
            _ => Ok(()),
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready))
        .route("/v2/models/{model}/config", get(model_config))
        .route("/v2/models/{model}/versions/{version}/config", get(model_config))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer))
        .route("/openapi.json", get(openapi_document))
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here; see /openapi.json") })
        .with_state(app)
        // A panic in a handler is a 500 for that request, not the end of the server.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = format!("internal error: the handler panicked: {}", crate::batcher::panic_message(&*panic));
    eprintln!("tensorbrain-serve: {message} (the server keeps serving)");
    ApiError::internal(message).into_response()
}

fn json_response(value: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn server_metadata() -> Response {
    json_response(json!({
        "name": "tensorbrain-serve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_configuration"],
    }))
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(State(app): State<Arc<App>>) -> Result<StatusCode, ApiError> {
    if app.is_ready() {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::unavailable("not ready: warming up, shutting down, or the compute thread has stopped"))
    }
}

async fn model_ready(State(app): State<Arc<App>>, Path(path): Path<HashMap<String, String>>) -> Result<StatusCode, ApiError> {
    app.check_model(&path)?;
    ready(State(app)).await
}

async fn model_metadata(State(app): State<Arc<App>>, Path(path): Path<HashMap<String, String>>) -> Result<Response, ApiError> {
    app.check_model(&path)?;
    let sig = &app.decoder.signature;
    let tensor = |t: &tensorbrain::nn::TensorSpec| json!({ "name": t.name, "datatype": datatype_name(t.dtype), "shape": t.shape_with_wildcards() });
    Ok(json_response(json!({
        "name": app.model_name,
        "versions": [MODEL_VERSION],
        "platform": "tensorbrain",
        "inputs": sig.inputs.iter().map(tensor).collect::<Vec<_>>(),
        "outputs": [tensor(&sig.output)],
    })))
}

/// Triton's model configuration (what `tritonclient`'s `get_model_config` reads): with a batch
/// dim, `dims` leave it out and `max_batch_size` says how large it may be.
async fn model_config(State(app): State<Arc<App>>, Path(path): Path<HashMap<String, String>>) -> Result<Response, ApiError> {
    app.check_model(&path)?;
    let sig = &app.decoder.signature;
    let batched = app.decoder.batch_symbol.is_some();
    let tensor = |t: &tensorbrain::nn::TensorSpec| {
        let dims = t.shape_with_wildcards();
        let dims = if batched { &dims[1..] } else { &dims[..] };
        json!({ "name": t.name, "data_type": format!("TYPE_{}", datatype_name(t.dtype)), "dims": dims })
    };
    let mut config = json!({
        "name": app.model_name,
        "platform": "tensorbrain",
        "max_batch_size": if batched { app.decoder.max_batch } else { 0 },
        "input": sig.inputs.iter().map(tensor).collect::<Vec<_>>(),
        "output": [tensor(&sig.output)],
    });
    if batched {
        config["dynamic_batching"] = json!({ "max_queue_delay_microseconds": app.max_wait.as_micros() as u64 });
    }
    Ok(json_response(config))
}

async fn openapi_document(State(app): State<Arc<App>>) -> Response {
    json_response(openapi::document(&app.model_name, &app.decoder))
}

async fn infer(State(app): State<Arc<App>>, Path(path): Path<HashMap<String, String>>, headers: HeaderMap, body: Body) -> Response {
    let _in_flight = InFlight::start();
    let started = Instant::now();
    let response = match infer_inner(&app, &path, &headers, body, started).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    m::request(response.status().as_u16(), started.elapsed());
    response
}

async fn infer_inner(app: &App, path: &HashMap<String, String>, headers: &HeaderMap, body: Body, started: Instant) -> Result<Response, ApiError> {
    app.check_model(path)?;
    // Behind already: refuse before reading (hyper drains a body that has arrived, so the
    // connection stays open).
    if app.admission.shed() {
        return Err(ApiError::shed(app.admission.lag(), app.admission.fraction()));
    }
    let body = read_body(body, app.max_body_bytes).await?;
    // Refuse overload before paying for the decode.
    if app.queue.is_full() {
        return Err(ApiError::queue_full(app.queue.capacity()));
    }
    let header_len = match headers.get(&HEADER_CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()).ok_or_else(|| {
            ApiError::bad_request(format!("Inference-Header-Content-Length must be a byte count, got {:?}", String::from_utf8_lossy(v.as_bytes())))
        })?),
    };
    let request = app.decoder.decode(&body, header_len)?;
    drop(body);
    let deadline = request.timeout.map_or(app.deadline, |t| t.min(app.deadline));
    let (id, binary) = (request.id.clone(), request.binary_output);
    let reply = app.queue.submit(request, started + deadline)?;
    let done = match tokio::time::timeout_at((started + deadline).into(), reply).await {
        Err(_elapsed) => return Err(ApiError::deadline_exceeded(deadline)),
        Ok(Err(_dropped)) => return Err(ApiError::unavailable("the compute thread stopped before answering")),
        Ok(Ok(result)) => result?,
    };
    Ok(infer_response(&app.model_name, id.as_deref(), &done, binary))
}

/// After the limit is passed, up to this many further bytes are read and dropped (for at most
/// [`DRAIN_TIME`]) before the 413 goes out. Closing a socket with unread data makes the kernel
/// send a reset, which can destroy the 413 before the client reads it (seen as "connection
/// reset" or "incomplete message" instead of the answer); draining a moderate excess lets the
/// client get the reason, while a huge body is still cut off.
const DRAIN_BYTES: usize = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The whole body, or 413 past the limit.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > limit {
            drop(buf);
            let _ = tokio::time::timeout(DRAIN_TIME, drain(body, DRAIN_BYTES)).await;
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than this server's limit of {limit} bytes (--max-body-bytes)"),
            ));
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

/// Reads and drops up to `cap` bytes of what is left of a body.
async fn drain(mut body: Body, cap: usize) {
    let mut seen = 0;
    while seen < cap {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// The Prometheus endpoint, served on its own port.
pub fn metrics_router() -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m::handle().render()) }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], error_body("the metrics are at /metrics")) })
}
