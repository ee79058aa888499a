//! The OpenAPI 3 document of the REST surface, written for the model being served: its input
//! names, datatypes and shapes appear in the request schema, so a generated client (or a
//! fuzzer such as schemathesis) knows what a valid request looks like.
//!
//! It is built as JSON rather than derived from Rust types because most of it comes from the
//! model's signature at run time.

use serde_json::{json, Value};

use crate::decode::Decoder;
use crate::tensor_data::{datatype_name, PROTOCOL_DATATYPES};
use crate::MODEL_VERSION;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_ok(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
    })
}

/// The path parameters: this server serves one model, in one version.
fn model_params(model: &str, versioned: bool) -> Value {
    let mut params = vec![json!({ "name": "model", "in": "path", "required": true, "schema": { "type": "string", "enum": [model] } })];
    if versioned {
        params.push(json!({ "name": "version", "in": "path", "required": true, "schema": { "type": "string", "enum": [MODEL_VERSION] } }));
    }
    Value::Array(params)
}

fn ready_op(summary: &str, params: Value) -> Value {
    json!({ "get": {
        "summary": summary,
        "parameters": params,
        "responses": {
            "200": { "description": "ready" },
            "404": error_response("no such model or version"),
            "503": error_response("not ready"),
        }
    }})
}

fn metadata_op(params: Value) -> Value {
    json!({ "get": {
        "summary": "Model metadata: input and output names, datatypes and shapes (-1 for sizes fixed per request)",
        "parameters": params,
        "responses": { "200": json_ok("metadata", "ModelMetadata"), "404": error_response("no such model or version") }
    }})
}

fn config_op(params: Value) -> Value {
    json!({ "get": {
        "summary": "Triton's model configuration",
        "parameters": params,
        "responses": {
            "200": { "description": "configuration", "content": { "application/json": { "schema": { "type": "object" } } } },
            "404": error_response("no such model or version"),
        }
    }})
}

fn infer_op(mut params: Value) -> Value {
    if let Value::Array(list) = &mut params {
        list.push(json!({
            "name": "Inference-Header-Content-Length", "in": "header", "required": false,
            "schema": { "type": "integer", "minimum": 0 }
        }));
    }
    json!({ "post": {
        "summary": "Run the model",
        "description": "JSON tensors, or Triton's binary tensor extension: the first `Inference-Header-Content-Length` bytes are the JSON request, each input with `parameters.binary_data_size` takes that many little-endian bytes from what follows.",
        "parameters": params,
        "requestBody": {
            "required": true,
            "content": {
                "application/json": { "schema": { "$ref": "#/components/schemas/InferenceRequest" } },
                "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
            }
        },
        "responses": {
            "200": {
                "description": "the output (binary when requested: JSON header, then data)",
                "headers": {
                    "Server-Timing": { "description": "queue and compute time in ms", "schema": { "type": "string" } },
                    "X-Batch-Rows": { "description": "rows in the forward that computed this result", "schema": { "type": "integer" } },
                },
                "content": {
                    "application/json": { "schema": { "$ref": "#/components/schemas/InferenceResponse" } },
                    "application/octet-stream": { "schema": { "type": "string", "format": "binary" } },
                }
            },
            "400": error_response("the request does not fit the model; the message says what and what was expected"),
            "404": error_response("no such model or version"),
            "413": error_response("the body is larger than --max-body-bytes"),
            "429": {
                "description": "the queue is full; retry later",
                "headers": { "Retry-After": { "schema": { "type": "integer" } } },
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
            },
            "500": error_response("the model failed on this input"),
            "503": error_response("shutting down"),
            "504": error_response("the deadline passed before the result was ready"),
        }
    }})
}

/// The document for the model behind `decoder`, served as `model`.
pub fn document(model: &str, decoder: &Decoder) -> Value {
    let sig = &decoder.signature;
    let input_names: Vec<&str> = sig.inputs.iter().map(|i| i.name).collect();
    let described: Vec<String> = sig
        .inputs
        .iter()
        .map(|i| format!("`{}`: {} {:?}", i.name, datatype_name(i.dtype), i.shape_with_wildcards()))
        .collect();
    let tensor_meta = json!({
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": { "type": "string" },
            "datatype": { "type": "string" },
            "shape": { "type": "array", "items": { "type": "integer" } },
        }
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": format!("{model}: Open Inference Protocol (KServe v2)"),
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Serves `{model}` ({}). Inputs: {}. Output: `output` {} {:?}.",
                sig, described.join(", "), datatype_name(sig.output.dtype), sig.output.shape_with_wildcards()),
        },
        "paths": {
            "/v2": { "get": {
                "summary": "Server metadata",
                "responses": { "200": json_ok("metadata", "ServerMetadata") }
            }},
            "/v2/health/live": { "get": { "summary": "Liveness", "responses": { "200": { "description": "live" } } } },
            "/v2/health/ready": { "get": {
                "summary": "Readiness: a warm-up forward succeeded and the server is not shutting down",
                "responses": { "200": { "description": "ready" }, "503": error_response("not ready") }
            }},
            "/v2/models/{model}": metadata_op(model_params(model, false)),
            "/v2/models/{model}/versions/{version}": metadata_op(model_params(model, true)),
            "/v2/models/{model}/ready": ready_op("Model readiness", model_params(model, false)),
            "/v2/models/{model}/versions/{version}/ready": ready_op("Model readiness", model_params(model, true)),
            "/v2/models/{model}/config": config_op(model_params(model, false)),
            "/v2/models/{model}/versions/{version}/config": config_op(model_params(model, true)),
            "/v2/models/{model}/infer": infer_op(model_params(model, false)),
            "/v2/models/{model}/versions/{version}/infer": infer_op(model_params(model, true)),
            "/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3", "content": { "application/json": { "schema": { "type": "object" } } } } }
            }},
        },
        "components": { "schemas": {
            "Error": {
                "type": "object", "required": ["error"],
                "properties": { "error": { "type": "string" } }
            },
            "ServerMetadata": {
                "type": "object", "required": ["name", "version", "extensions"],
                "properties": {
                    "name": { "type": "string" }, "version": { "type": "string" },
                    "extensions": { "type": "array", "items": { "type": "string" } },
                }
            },
            "ModelMetadata": {
                "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
                "properties": {
                    "name": { "type": "string" },
                    "versions": { "type": "array", "items": { "type": "string", "enum": [MODEL_VERSION] } },
                    "platform": { "type": "string" },
                    "inputs": { "type": "array", "items": tensor_meta },
                    "outputs": { "type": "array", "items": tensor_meta },
                }
            },
            "Parameters": { "type": "object", "additionalProperties": true },
            "RequestInput": {
                "type": "object", "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": { "type": "string", "enum": input_names },
                    "shape": { "type": "array", "items": { "type": "integer", "minimum": 1 } },
                    "datatype": { "type": "string", "enum": PROTOCOL_DATATYPES },
                    "parameters": { "$ref": "#/components/schemas/Parameters" },
                    "data": { "type": "array", "items": {} },
                }
            },
            "RequestOutput": {
                "type": "object", "required": ["name"],
                "properties": { "name": { "type": "string" }, "parameters": { "$ref": "#/components/schemas/Parameters" } }
            },
            "InferenceRequest": {
                "type": "object", "required": ["inputs"],
                "properties": {
                    "id": { "type": "string" },
                    "parameters": { "$ref": "#/components/schemas/Parameters" },
                    "inputs": { "type": "array", "items": { "$ref": "#/components/schemas/RequestInput" } },
                    "outputs": { "type": "array", "items": { "$ref": "#/components/schemas/RequestOutput" } },
                }
            },
            "ResponseOutput": {
                "type": "object", "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": { "type": "string" },
                    "shape": { "type": "array", "items": { "type": "integer" } },
                    "datatype": { "type": "string" },
                    "parameters": { "$ref": "#/components/schemas/Parameters" },
                    "data": { "type": "array", "items": { "type": "number", "nullable": true } },
                }
            },
            "InferenceResponse": {
                "type": "object", "required": ["model_name", "outputs"],
                "properties": {
                    "model_name": { "type": "string" },
                    "model_version": { "type": "string" },
                    "id": { "type": "string" },
                    "outputs": { "type": "array", "items": { "$ref": "#/components/schemas/ResponseOutput" } },
                }
            },
        }}
    })
}
