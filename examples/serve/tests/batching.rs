//! The batcher with a model written inline (`[B, T] -> [B, T]`, doubling its input): requests
//! of different batch sizes are stacked along `B` and split back; requests whose other dims
//! differ (`T`) run in separate forwards.

mod common;

use std::sync::{Arc, Mutex};

use common::Http;
use hyper::StatusCode;
use tensorbrain::nn::{DimCheck, Signature, TensorSpec};
use tensorbrain::{DType, Tensor};
use tensorbrain_serve::{Options, Server};

fn signature() -> Signature {
    let spec = |name| TensorSpec { name, dtype: DType::F32, dims: vec![DimCheck::Sym("B"), DimCheck::Sym("T")] };
    Signature { model: "Doubler", inputs: vec![spec("x")], output: spec("output") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_batch_sizes_are_stacked_split_back_and_grouped_by_trailing_dims() {
    // Records the shape of every forward it runs.
    let forwards: Arc<Mutex<Vec<Vec<usize>>>> = Arc::default();
    let seen = forwards.clone();
    let infer = Box::new(move |inputs: &[Tensor]| {
        seen.lock().unwrap().push(inputs[0].shape().to_vec());
        let x = inputs[0].to_vec::<f32>();
        Ok(Tensor::from_vec(x.iter().map(|v| v * 2.0).collect(), inputs[0].shape()))
    });
    // A long wait, so that everything sent together meets in one collection round.
    let opts = Options::from_args(["test", "--random-weights", "0", "--max-wait-us", "300000", "--max-batch", "64", "--deadline-ms", "20000"]).unwrap();
    let server = Server::start(signature(), infer, "doubler".into(), &opts).unwrap();
    forwards.lock().unwrap().clear(); // forget the warm-up
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = Http::new(&api.local_addr().unwrap().to_string());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(api, metrics, async {
        let _ = stopped.await;
    }));

    // (rows, T) per request: 1+2+3 rows of T=2, 2+1 rows of T=3, 4+4 rows of T=1.
    let requests: Vec<(usize, usize)> = vec![(1, 2), (2, 3), (2, 2), (4, 1), (3, 2), (1, 3), (4, 1)];
    let mut tasks = Vec::new();
    for (k, &(rows, t)) in requests.iter().enumerate() {
        let data: Vec<f32> = (0..rows * t).map(|i| (100 * k + i) as f32).collect();
        let body = serde_json::json!({ "inputs": [{ "name": "x", "shape": [rows, t], "datatype": "FP32", "data": data }] });
        let http = http.clone();
        tasks.push(tokio::spawn(async move { (data, http.post("/v2/models/doubler/infer", body.to_string().into_bytes()).await) }));
    }
    for (task, &(rows, t)) in tasks.into_iter().zip(&requests) {
        let (data, reply) = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let v = reply.json();
        assert_eq!(v["outputs"][0]["shape"], serde_json::json!([rows, t]));
        let got: Vec<f32> = v["outputs"][0]["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        let want: Vec<f32> = data.iter().map(|x| x * 2.0).collect();
        assert_eq!(got, want, "request of shape [{rows}, {t}] got another request's rows");
    }

    // One forward per T, each holding every row of that T.
    let mut forwards = forwards.lock().unwrap().clone();
    forwards.sort();
    assert_eq!(forwards, vec![vec![3, 3], vec![6, 2], vec![8, 1]]);

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
