//! A model that panics on some input: that request gets a 500 naming the panic, and the server
//! (its batcher thread included) keeps serving everyone else.

mod common;

use common::Http;
use hyper::StatusCode;
use tensorbrain::nn::{DimCheck, Signature, TensorSpec};
use tensorbrain::{DType, Tensor};
use tensorbrain_serve::{Options, Server};

fn signature() -> Signature {
    let spec = |name| TensorSpec { name, dtype: DType::F32, dims: vec![DimCheck::Sym("B"), DimCheck::Known(2)] };
    Signature { model: "Doubler", inputs: vec![spec("x")], output: spec("output") }
}

fn request(values: [f32; 2]) -> Vec<u8> {
    serde_json::json!({ "inputs": [{ "name": "x", "shape": [1, 2], "datatype": "FP32", "data": values }] }).to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_forward_is_a_500_and_the_server_keeps_serving() {
    // Doubles its input, but panics when it sees 13.
    let infer = Box::new(|inputs: &[Tensor]| {
        let x = inputs[0].to_vec::<f32>();
        if x.contains(&13.0) {
            panic!("unlucky input");
        }
        Ok(Tensor::from_vec(x.iter().map(|v| v * 2.0).collect(), inputs[0].shape()))
    });
    let opts = Options::from_args(["test", "--random-weights", "0", "--max-wait-us", "0"]).unwrap();
    let server = Server::start(signature(), infer, "doubler".into(), &opts).unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = api.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(api, metrics, async {
        let _ = stopped.await;
    }));

    let http = Http::new(&addr);
    let path = "/v2/models/doubler/infer";
    let fine = http.post(path, request([1.0, 2.0])).await;
    assert_eq!(fine.status, StatusCode::OK, "{}", fine.text());
    assert_eq!(fine.output_rows(2), vec![vec![2.0, 4.0]]);

    let bad = http.post(path, request([13.0, 0.0])).await;
    assert_eq!(bad.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(bad.json()["error"].as_str().unwrap().contains("the model panicked: unlucky input"), "{}", bad.text());

    for i in 0..3 {
        let again = http.post(path, request([i as f32, 0.5])).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text());
        assert_eq!(again.output_rows(2), vec![vec![2.0 * i as f32, 1.0]]);
    }
    assert_eq!(http.get("/v2/health/ready").await.status, StatusCode::OK);

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
