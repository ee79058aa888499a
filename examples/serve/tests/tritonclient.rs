//! The generated MLP server driven by NVIDIA's Python client, `tritonclient[http]` from PyPI
//! (a client nobody here wrote): health, metadata, configuration, inference with JSON and with
//! binary tensors, concurrent single-image requests, and an error, each checked against
//! `forward` on the same input.
//!
//! CI installs the client (`.ci/run`); there a missing client fails the test. On a developer
//! machine without it the test says what to install and returns.

mod common;

use std::process::Command;

use common::{assert_close, bin, forward_rows, images, save_weights, scratch, ServerProcess};
use serve_mnist::Mlp;
use tensorbrain::prelude::*;

const INSTALL: &str = "python3 -m pip install 'tritonclient[http]' numpy";

/// Whether `python3` can import the client; in CI its absence is a failure.
fn tritonclient_available() -> bool {
    let ok = Command::new("python3").args(["-c", "import tritonclient.http, numpy"]).status().is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("tritonclient is not installed, and CI must run this test: {INSTALL} (.ci/run does this)");
        }
        eprintln!("\n*** SKIPPED tritonclient test: the Python client is not installed. To run it: {INSTALL}\n");
    }
    ok
}

#[test]
fn tritonclient_gets_forwards_results_with_json_and_binary_tensors() {
    if !tritonclient_available() {
        return;
    }
    let dir = scratch("tritonclient");
    let model = Mlp::init(11);
    let weights = save_weights(&model, &dir);
    let server = ServerProcess::start(bin("mlp"), &["--weights", &weights, "--max-wait-us", "2000"]);

    let n = 6;
    let x = images(n, 12);
    let rows: Vec<&[f32]> = x.chunks(784).collect();
    let inputs = dir.join("inputs.json");
    std::fs::write(&inputs, serde_json::json!({ "x": rows }).to_string()).unwrap();
    let results = dir.join("results.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/triton_client.py");
    let out = Command::new("python3").args([script, &server.addr, "mlp"]).arg(&inputs).arg(&results).output().unwrap();
    assert!(out.status.success(), "the client script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();

    assert_eq!((r["live"].as_bool(), r["ready"].as_bool(), r["model_ready"].as_bool()), (Some(true), Some(true), Some(true)));
    assert_eq!(r["server_metadata"]["name"], "tensorbrain-serve");
    assert_eq!(r["metadata"]["inputs"][0], serde_json::json!({ "name": "x", "datatype": "FP32", "shape": [-1, 1, 28, 28] }));
    assert_eq!(r["metadata"]["outputs"][0], serde_json::json!({ "name": "output", "datatype": "FP32", "shape": [-1, 10] }));
    assert_eq!(r["config"]["max_batch_size"], 64);

    let want = forward_rows(|i| model.forward_dyn(i), &x);
    let as_rows = |v: &serde_json::Value| -> Vec<Vec<f32>> {
        v.as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().map(|e| e.as_f64().unwrap() as f32).collect()).collect()
    };
    for mode in ["json", "binary", "one_by_one"] {
        let got = as_rows(&r[mode]);
        assert_eq!(got.len(), n, "{mode}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(g, w, &format!("{mode} row {i}"));
        }
    }
    assert_eq!(r["json_response"]["id"], "req-json");
    assert_eq!(r["binary_output_meta"]["parameters"]["binary_data_size"], n * 10 * 4);
    let error = r["wrong_shape_error"].as_str().expect("the client raised an error");
    assert!(error.contains("input `x` must have shape [-1, 1, 28, 28]"), "{error}");
}
