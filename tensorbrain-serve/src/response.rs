//! Encodes an inference result: the protocol's JSON, or Triton's binary tensor extension (a
//! JSON header whose length is in `Inference-Header-Content-Length`, then the raw bytes).

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, Serializer};
use tensorbrain::nn::Signature;

use crate::batcher::Completed;
use crate::tensor_data::{datatype_name, TensorData};

pub const HEADER_CONTENT_LENGTH: HeaderName = HeaderName::from_static("inference-header-content-length");

#[derive(serde::Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: [OutputTensor<'a>; 1],
}

#[derive(serde::Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(serde::Serialize)]
struct BinaryParams {
    binary_data_size: usize,
}

/// Tensor data as a flat JSON array (half floats as their f32 values).
struct JsonData<'a>(&'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::F16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            TensorData::BF16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            TensorData::F32(v) => s.collect_seq(v),
            TensorData::F64(v) => s.collect_seq(v),
            TensorData::I64(v) => s.collect_seq(v),
            TensorData::I32(v) => s.collect_seq(v),
            TensorData::I16(v) => s.collect_seq(v),
            TensorData::I8(v) => s.collect_seq(v),
            TensorData::U8(v) => s.collect_seq(v),
            TensorData::Bool(v) => s.collect_seq(v),
        }
    }
}

/// The 200 answer, with `Server-Timing` (queue, compute) and `X-Batch-Rows` headers.
pub fn infer_response(model: &str, id: Option<&str>, done: &Completed, binary: bool) -> Response {
    let output = OutputTensor {
        name: Signature::OUTPUT_NAME,
        datatype: datatype_name(done.output.dtype()),
        shape: &done.shape,
        parameters: binary.then(|| BinaryParams { binary_data_size: done.output.byte_len() }),
        data: (!binary).then_some(JsonData(&done.output)),
    };
    let body = InferResponse { model_name: model, model_version: crate::MODEL_VERSION, id, outputs: [output] };
    let mut bytes = serde_json::to_vec(&body).expect("serialising numbers and strings cannot fail");
    let json_len = bytes.len();
    let mut response = if binary {
        done.output.write_le_bytes(&mut bytes);
        let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
        r.headers_mut().insert(HEADER_CONTENT_LENGTH, HeaderValue::from(json_len));
        r
    } else {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    };
    let timing = format!(
        "queue;dur={:.3}, compute;dur={:.3}",
        done.queue_time.as_secs_f64() * 1e3,
        done.compute_time.as_secs_f64() * 1e3
    );
    let headers = response.headers_mut();
    headers.insert(HeaderName::from_static("server-timing"), HeaderValue::from_str(&timing).expect("ASCII"));
    headers.insert(HeaderName::from_static("x-batch-rows"), HeaderValue::from(done.batch_rows));
    response
}
