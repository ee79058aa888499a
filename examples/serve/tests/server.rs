//! The generated binaries (`serve-mlp`, `serve-cnn`) started on free loopback ports and driven
//! over HTTP: metadata, JSON and binary inference against `forward`, batching, back-pressure,
//! deadlines, graceful shutdown, and every kind of bad input.

mod common;

use std::time::Duration;

use common::{assert_close, bin, forward_rows, images, json_request, save_weights, scratch, Http, ServerProcess};
use hyper::{Method, StatusCode};
use serve_mnist::{Cnn, Mlp};
use tensorbrain::prelude::*;
use tensorbrain::quant::{QuantConfig, Quantize};

const INFER: &str = "/v2/models/mlp/infer";

fn mlp_server(test: &str, extra: &[&str]) -> (Mlp, ServerProcess) {
    let model = Mlp::init(7);
    let weights = save_weights(&model, &scratch(test));
    let mut args = vec!["--weights", weights.as_str()];
    args.extend_from_slice(extra);
    (model, ServerProcess::start(bin("mlp"), &args))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_health_and_openapi_come_from_the_signature() {
    let (_, server) = mlp_server("metadata", &[]);
    let http = Http::new(&server.addr);
    assert_eq!(http.get("/v2/health/live").await.status, StatusCode::OK);
    assert_eq!(http.get("/v2/health/ready").await.status, StatusCode::OK);
    assert_eq!(http.get("/v2/models/mlp/ready").await.status, StatusCode::OK);

    let meta = http.get("/v2/models/mlp").await.json();
    assert_eq!(
        meta,
        serde_json::json!({
            "name": "mlp", "versions": ["1"], "platform": "tensorbrain",
            "inputs": [{ "name": "x", "datatype": "FP32", "shape": [-1, 1, 28, 28] }],
            "outputs": [{ "name": "output", "datatype": "FP32", "shape": [-1, 10] }],
        })
    );
    assert_eq!(http.get("/v2/models/mlp/versions/1").await.json(), meta);

    let missing = http.get("/v2/models/resnet").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.json()["error"].as_str().unwrap().contains("unknown model `resnet`; this server serves `mlp`"));
    let v2 = http.get("/v2/models/mlp/versions/2").await;
    assert_eq!(v2.status, StatusCode::NOT_FOUND);
    assert!(v2.json()["error"].as_str().unwrap().contains("no version `2`"));
    let nowhere = http.get("/v3/anything").await;
    assert_eq!((nowhere.status, nowhere.headers["content-type"].to_str().unwrap()), (StatusCode::NOT_FOUND, "application/json"));
    assert!(nowhere.json()["error"].is_string());
    assert_eq!(http.get(INFER).await.status, StatusCode::METHOD_NOT_ALLOWED);

    let openapi = http.get("/openapi.json").await.json();
    assert_eq!(openapi["openapi"], "3.0.3");
    assert_eq!(openapi["components"]["schemas"]["RequestInput"]["properties"]["name"]["enum"], serde_json::json!(["x"]));
    assert!(openapi["paths"]["/v2/models/{model}/infer"]["post"]["responses"]["429"].is_object());

    let config = http.get("/v2/models/mlp/config").await.json();
    assert_eq!(config["max_batch_size"], 64);
    assert_eq!(config["input"][0]["dims"], serde_json::json!([1, 28, 28]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_results_equal_forward() {
    let (model, server) = mlp_server("infer", &[]);
    let http = Http::new(&server.addr);
    let x = images(3, 1);
    let want = forward_rows(|i| model.forward_dyn(i), &x);

    let reply = http.post(INFER, json_request(&x)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["model_name"], "mlp");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([3, 10]));
    assert_eq!(v["outputs"][0]["datatype"], "FP32");
    for (got, want) in reply.output_rows(10).iter().zip(&want) {
        assert_close(got, want, "JSON");
    }
    let timing = reply.headers["server-timing"].to_str().unwrap();
    assert!(timing.starts_with("queue;dur=") && timing.contains(", compute;dur="), "{timing}");
    assert_eq!(reply.headers["x-batch-rows"], "3");

    // Triton's binary extension both ways.
    let header = serde_json::json!({
        "id": "b1",
        "inputs": [{ "name": "x", "shape": [3, 1, 28, 28], "datatype": "FP32", "parameters": { "binary_data_size": x.len() * 4 } }],
        "outputs": [{ "name": "output", "parameters": { "binary_data": true } }],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    x.iter().for_each(|v| body.extend_from_slice(&v.to_le_bytes()));
    let reply = http.send(Method::POST, INFER, &[("Inference-Header-Content-Length", header.len().to_string())], body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let json_len: usize = reply.headers["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let head: serde_json::Value = serde_json::from_slice(&reply.body[..json_len]).unwrap();
    assert_eq!(head["id"], "b1");
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 3 * 10 * 4);
    let got: Vec<f32> = reply.body[json_len..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_close(&got, &want.concat(), "binary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_and_still_match_one_by_one() {
    // A long max wait so that requests sent together are certain to meet in the queue.
    let (model, server) = mlp_server("batching", &["--max-wait-us", "50000", "--max-batch", "64"]);
    let http = Http::new(&server.addr);
    let metrics = Http::new(&server.metrics_addr);
    let n = 24;
    let x = images(n, 2);
    let want = forward_rows(|i| model.forward_dyn(i), &x);
    let replies = futures_join(n, |i| {
        let http = http.clone();
        let body = json_request(&x[i * 784..(i + 1) * 784]);
        async move { http.post(INFER, body).await }
    })
    .await;
    let mut largest = 0;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_close(&reply.output_rows(10)[0], &want[i], &format!("request {i}"));
        largest = largest.max(reply.headers["x-batch-rows"].to_str().unwrap().parse::<usize>().unwrap());
    }
    assert!(largest > 1, "no request was batched with another");
    // The batch-size histogram: 24 rows (plus none from warm-up, which bypasses the queue)
    // in fewer forwards than requests.
    let rows = metrics.metric("tensorbrain_batch_size_sum").await.expect("batch size sum");
    let forwards = metrics.metric("tensorbrain_batch_size_count").await.expect("batch size count");
    assert_eq!(rows, n as f64);
    assert!(forwards < n as f64, "{forwards} forwards for {n} requests");
    let ok = metrics.metric("tensorbrain_requests_total{status=\"200\"}").await;
    assert_eq!(ok, Some(n as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after_and_no_5xx() {
    // The CNN takes milliseconds per image; a queue of 2 overflows under 40 at once.
    let mut model = Cnn::init(3);
    model.eval(); // as the server does: no dropout
    let weights = save_weights(&model, &scratch("backpressure"));
    let server = ServerProcess::start(bin("cnn"), &["--weights", &weights, "--queue", "2", "--max-batch", "1", "--max-wait-us", "0"]);
    let http = Http::new(&server.addr);
    let x = images(1, 3);
    let want = forward_rows(|i| model.forward_dyn(i), &x);
    let replies = futures_join(40, |_| {
        let http = http.clone();
        let body = json_request(&x);
        async move { http.post("/v2/models/cnn/infer", body).await }
    })
    .await;
    let (mut ok, mut refused) = (0, 0);
    for reply in &replies {
        match reply.status {
            StatusCode::OK => {
                ok += 1;
                assert_close(&reply.output_rows(10)[0], &want[0], "accepted request");
            }
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert_eq!(reply.headers["retry-after"], "1");
                assert!(reply.json()["error"].as_str().unwrap().contains("all 2 queue slots are taken"));
            }
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert!(ok >= 1 && refused >= 1, "{ok} served, {refused} refused");
    // Overload ends: the next request is served.
    assert_eq!(http.post("/v2/models/cnn/infer", json_request(&x)).await.status, StatusCode::OK);
}

/// With a lag target no runtime can meet (1 µs), the shedding controller raises the refused
/// fraction to everything within a few dozen probes: the refusal is the protocol's 429, and the
/// metrics say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_http_stage_sheds_requests_before_reading_them() {
    let (_, server) = mlp_server("shed", &["--shed-lag-us", "1"]);
    let http = Http::new(&server.addr);
    let x = images(1, 8);
    let until = std::time::Instant::now() + Duration::from_secs(20);
    let shed = loop {
        let reply = http.post(INFER, json_request(&x)).await;
        match reply.status {
            StatusCode::TOO_MANY_REQUESTS => break reply,
            StatusCode::OK => assert!(std::time::Instant::now() < until, "never shed"),
            other => panic!("unexpected {other}: {}", reply.text()),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(shed.headers["retry-after"], "1");
    let message = shed.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains("requests wait") && message.contains("--shed-lag-us"), "{message}");
    let metrics = Http::new(&server.metrics_addr);
    assert!(metrics.metric("tensorbrain_shed_fraction").await.unwrap() > 0.0);
    assert!(metrics.metric("tensorbrain_requests_total{status=\"429\"}").await.unwrap() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_is_a_504() {
    let (_, server) = mlp_server("deadline", &[]);
    let http = Http::new(&server.addr);
    let x = images(1, 4);
    let body = serde_json::json!({
        "parameters": { "timeout": 1 },
        "inputs": [{ "name": "x", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": x }],
    });
    let reply = http.post(INFER, body.to_string().into_bytes()).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    assert!(reply.json()["error"].as_str().unwrap().contains("deadline"));
    // The server's own deadline is still generous for ordinary requests.
    assert_eq!(http.post(INFER, json_request(&x)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let mut model = Cnn::init(5);
    model.eval();
    let weights = save_weights(&model, &scratch("shutdown"));
    let mut server = ServerProcess::start(bin("cnn"), &["--weights", &weights, "--max-batch", "1", "--max-wait-us", "0"]);
    let http = Http::new(&server.addr);
    let metrics = Http::new(&server.metrics_addr);
    let x = images(1, 6);
    let want = forward_rows(|i| model.forward_dyn(i), &x);
    let n = 8;
    let in_flight = tokio::spawn(futures_join(n, {
        let http = http.clone();
        let x = x.clone();
        move |_| {
            let http = http.clone();
            let body = json_request(&x);
            async move { http.post("/v2/models/cnn/infer", body).await }
        }
    }));
    // Wait until the server holds all of them, then ask it to stop.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let held = metrics.metric("tensorbrain_inflight_requests").await.unwrap_or(0.0);
        let done = metrics.metric("tensorbrain_requests_total{status=\"200\"}").await.unwrap_or(0.0);
        if held + done >= n as f64 {
            break;
        }
        assert!(std::time::Instant::now() < until, "requests never reached the server");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.sigterm();
    let replies = in_flight.await.unwrap();
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_close(&reply.output_rows(10)[0], &want[0], "drained request");
    }
    let status = server.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(&server.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_protocols_error_json() {
    let (_, server) = mlp_server("bad-input", &["--max-batch", "4", "--max-body-bytes", "200000"]);
    let http = Http::new(&server.addr);
    let x = images(1, 8);
    let tensor = |name: &str, shape: serde_json::Value, datatype: &str, data: serde_json::Value| {
        serde_json::json!({ "inputs": [{ "name": name, "shape": shape, "datatype": datatype, "data": data }] }).to_string().into_bytes()
    };
    let shape = serde_json::json!([1, 1, 28, 28]);
    let mut nan_body = serde_json::json!({ "inputs": [{ "name": "x", "shape": [1, 1, 28, 28], "datatype": "FP32", "parameters": { "binary_data_size": 784 * 4 } }] }).to_string().into_bytes();
    let nan_header = nan_body.len();
    for i in 0..784 {
        nan_body.extend_from_slice(&(if i == 100 { f32::NAN } else { 0.5f32 }).to_le_bytes());
    }
    type Case = (&'static str, Vec<(&'static str, String)>, Vec<u8>, StatusCode, &'static str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", vec![], b"{\"inputs\": [".to_vec(), StatusCode::BAD_REQUEST, "not a valid inference request"),
        ("wrong shape", vec![], tensor("x", serde_json::json!([1, 784]), "FP32", serde_json::json!(x)), StatusCode::BAD_REQUEST, "input `x` must have shape [-1, 1, 28, 28] ([B, 1, 28, 28]), got [1, 784]"),
        ("wrong dtype", vec![], tensor("x", shape.clone(), "FP64", serde_json::json!(x)), StatusCode::BAD_REQUEST, "input `x` must be FP32, got datatype FP64"),
        ("wrong name", vec![], tensor("image", shape.clone(), "FP32", serde_json::json!(x)), StatusCode::BAD_REQUEST, "unknown input `image`; Mlp takes `x` [-1, 1, 28, 28] FP32"),
        ("NaN (binary)", vec![("Inference-Header-Content-Length", nan_header.to_string())], nan_body.clone(), StatusCode::BAD_REQUEST, "input `x` holds NaN or infinity at element 100"),
        ("Inf (JSON overflow)", vec![], tensor("x", shape.clone(), "FP32", serde_json::json!(vec![1e39; 784])), StatusCode::BAD_REQUEST, "holds NaN or infinity at element 0"),
        ("too few values", vec![], tensor("x", shape.clone(), "FP32", serde_json::json!(&x[..700])), StatusCode::BAD_REQUEST, "which is 784 values, but 700 were given"),
        ("batch over --max-batch", vec![], tensor("x", serde_json::json!([5, 1, 28, 28]), "FP32", serde_json::json!(vec![0.0; 5 * 784])), StatusCode::BAD_REQUEST, "a batch of 5 is more than this server's --max-batch 4"),
        ("body over --max-body-bytes", vec![], vec![b' '; 300_000], StatusCode::PAYLOAD_TOO_LARGE, "larger than this server's limit of 200000 bytes"),
        ("bad header length", vec![("Inference-Header-Content-Length", "ten".into())], json_request(&x), StatusCode::BAD_REQUEST, "Inference-Header-Content-Length must be a byte count"),
        ("not UTF-8", vec![], vec![0xff, 0xfe, 0x00], StatusCode::BAD_REQUEST, "not a valid inference request"),
        ("empty body", vec![], vec![], StatusCode::BAD_REQUEST, "not a valid inference request"),
    ];
    for (what, headers, body, status, message) in cases {
        let reply = http.send(Method::POST, INFER, &headers, body).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        assert_eq!(reply.headers["content-type"], "application/json", "{what}");
        let error = reply.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(message), "{what}: got {error:?}, expected it to contain {message:?}");
    }
    // After all that, still serving.
    assert_eq!(http.post(INFER, json_request(&x)).await.status, StatusCode::OK);
    assert_eq!(http.get("/v2/health/ready").await.status, StatusCode::OK);

    // With --non-finite pass, the same NaN reaches the model.
    drop(server);
    let (_, server) = mlp_server("bad-input-pass", &["--non-finite", "pass"]);
    let http = Http::new(&server.addr);
    let reply = http.send(Method::POST, INFER, &[("Inference-Header-Content-Length", nan_header.to_string())], nan_body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_dynamic_and_saved_static_models_serve_their_quantized_forward() {
    let dir = scratch("int8");
    let f32_model = Mlp::init(7);
    let weights = save_weights(&f32_model, &dir);

    // --int8 dynamic quantizes --weights at start. Its activation ranges come from each batch,
    // so one image per request is compared with the same image alone.
    let server = ServerProcess::start(bin("mlp"), &["--weights", &weights, "--int8", "dynamic"]);
    let http = Http::new(&server.addr);
    let mut dynamic = Mlp::init(7);
    dynamic.quantize(std::iter::empty::<Tensor>(), &QuantConfig::dynamic()).unwrap();
    for seed in 0..3 {
        let x = images(1, seed);
        let reply = http.post(INFER, json_request(&x)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let got = &reply.output_rows(10)[0];
        assert_close(got, &forward_rows(|i| dynamic.forward_dyn(i), &x)[0], "int8 dynamic");
        // The int8 path really ran: near the f32 result, but not equal to it.
        let f32_row = &forward_rows(|i| f32_model.forward_dyn(i), &x)[0];
        let diff = got.iter().zip(f32_row).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff > 0.0 && diff < 0.05, "int8 vs f32: largest difference {diff}");
    }
    drop(server);

    // A saved static model: no --weights, batch-independent, so a batch of 3 in one request.
    let mut fixed = Mlp::init(7);
    let calib = Tensor::from_slice(&images(32, 9), &[32, 1, 28, 28]);
    let plan = fixed.quantize([calib], &QuantConfig::static_ptq()).unwrap();
    let file = dir.join("mlp-int8.safetensors");
    plan.save(&file).unwrap();
    let file = file.to_string_lossy().into_owned();
    let server = ServerProcess::start(bin("mlp"), &["--int8", &file]);
    let http = Http::new(&server.addr);
    let x = images(3, 5);
    let reply = http.post(INFER, json_request(&x)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    for (got, want) in reply.output_rows(10).iter().zip(&forward_rows(|i| fixed.forward_dyn(i), &x)) {
        assert_close(got, want, "int8 static");
    }
    drop(server);

    // Two sources of weights, and a file that is not there: refused, saying which.
    let out = std::process::Command::new(bin("mlp")).args(["--weights", &weights, "--int8", &file, "--port", "0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--weights and --int8") && stderr.contains("--int8 dynamic"), "{stderr}");
    let out = std::process::Command::new(bin("mlp")).args(["--int8", "/nonexistent/mlp-int8.safetensors", "--port", "0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/mlp-int8.safetensors"), "{stderr}");
}

#[test]
fn bad_weights_name_the_problem() {
    // CNN weights into the MLP: every mismatch listed, and no server starts.
    let dir = scratch("wrong-weights");
    let weights = save_weights(&Cnn::init(0), &dir);
    let out = std::process::Command::new(bin("mlp")).args(["--weights", &weights, "--port", "0"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the checkpoint does not fit") && stderr.contains("fc1.weight has shape [128, 9216] in the file but [256, 784] in the model"), "{stderr}");

    let out = std::process::Command::new(bin("mlp")).args(["--port", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--weights"));
}

/// Runs `n` futures made by `make` concurrently and returns their outputs in order.
async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(make(i))).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
