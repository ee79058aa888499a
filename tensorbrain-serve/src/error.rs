//! The protocol's error answer: an HTTP status and `{"error": "<what was wrong>"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A request the server will not (or cannot) answer with a result.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for the `Retry-After` header of a 429 or 503.
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after_s: None }
    }

    /// 400: the request is wrong; the message says what and what was expected.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 429: the queue is full; come back later rather than wait here.
    pub fn queue_full(capacity: usize) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("the server is overloaded: all {capacity} queue slots are taken; retry later"),
            retry_after_s: Some(1),
        }
    }

    /// 429: the HTTP stage is behind (see `admission`), so this request is refused before it
    /// is read.
    pub fn shed(lag: std::time::Duration, fraction: f64) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "the server is overloaded: requests wait {:.1} ms before they are read (over --shed-lag-us), so {:.0}% of new ones are refused; retry later",
                lag.as_secs_f64() * 1e3,
                fraction * 100.0
            ),
            retry_after_s: Some(1),
        }
    }

    /// 504: the request's deadline passed before its result was ready.
    pub fn deadline_exceeded(deadline: std::time::Duration) -> ApiError {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, format!("the request's deadline of {} ms passed before its result was ready", deadline.as_millis()))
    }

    /// 503: the server is shutting down or its compute thread has stopped.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into(), retry_after_s: Some(1) }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `{"error": message}` with `content-type: application/json`.
pub fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, [(header::CONTENT_TYPE, "application/json")], error_body(&self.message)).into_response();
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
