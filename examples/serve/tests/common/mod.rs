//! Test helpers: start a serving binary on free loopback ports, talk HTTP to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tensorbrain::prelude::*;

/// A serving binary running on `--port 0 --metrics-port 0`, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub metrics_addr: String,
}

impl ServerProcess {
    /// Starts `bin` with `args` and waits for the two "listening" lines. Load shedding is off
    /// unless `args` set it: a test machine running many tests at once can keep a server's
    /// HTTP stage behind for long enough that it would (rightly) refuse requests the test
    /// expects answered. The shedding controller has unit tests of its own.
    pub fn start(bin: &str, args: &[&str]) -> ServerProcess {
        let shedding = if args.contains(&"--shed-lag-us") { &[][..] } else { &["--shed-lag-us", "0"][..] };
        let mut child = Command::new(bin)
            .args(["--port", "0", "--metrics-port", "0"])
            .args(shedding)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut addr, mut metrics_addr) = (None, None);
        let until = Instant::now() + Duration::from_secs(120);
        while addr.is_none() || metrics_addr.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("{bin} did not print its addresses (exit: {:?})", child.try_wait());
                }
            };
            let host_port = |rest: &str| rest.split('/').next().unwrap_or_default().to_string();
            if let Some(rest) = line.strip_prefix("listening on http://") {
                addr = Some(host_port(rest));
            } else if let Some(rest) = line.strip_prefix("metrics on http://") {
                metrics_addr = Some(host_port(rest));
            }
        }
        ServerProcess { child, addr: addr.unwrap(), metrics_addr: metrics_addr.unwrap() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sigterm(&self) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet waited on).
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM failed");
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < until, "the server did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bin(name: &str) -> &'static str {
    match name {
        "mlp" => env!("CARGO_BIN_EXE_serve-mlp"),
        "cnn" => env!("CARGO_BIN_EXE_serve-cnn"),
        other => panic!("no binary {other}"),
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tensorbrain-serve-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Saves a model initialised from `seed` and returns the path of its safetensors file.
pub fn save_weights<M: ModuleExt>(model: &M, dir: &std::path::Path) -> String {
    let path = dir.join("model.safetensors");
    model.save(&path).expect("save weights");
    path.to_string_lossy().into_owned()
}

/// `n` images with values in [0, 1), reproducible.
pub fn images(n: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * 784).map(|_| rng.gen::<f32>()).collect()
}

/// What `model.forward` gives for `x` ([n, 1, 28, 28]), row by row.
pub fn forward_rows(forward: impl Fn(&[Tensor]) -> tensorbrain::Result<Tensor>, x: &[f32]) -> Vec<Vec<f32>> {
    let n = x.len() / 784;
    let out = tensorbrain::autograd::no_grad(|| forward(&[Tensor::from_slice(x, &[n, 1, 28, 28])])).expect("forward");
    out.to_vec2::<f32>()
}

/// The protocol's JSON request for images `x`.
pub fn json_request(x: &[f32]) -> Vec<u8> {
    let n = x.len() / 784;
    serde_json::json!({ "inputs": [{ "name": "x", "shape": [n, 1, 28, 28], "datatype": "FP32", "data": x }] }).to_string().into_bytes()
}

pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{what}: element {i} is {g}, forward gives {w}");
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first output's data of a JSON response, as rows of `cols`.
    pub fn output_rows(&self, cols: usize) -> Vec<Vec<f32>> {
        let v = self.json();
        let data: Vec<f32> = v["outputs"][0]["data"].as_array().expect("data").iter().map(|x| x.as_f64().unwrap() as f32).collect();
        data.chunks(cols).map(<[f32]>::to_vec).collect()
    }
}

/// An HTTP/1.1 client with a connection pool.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    pub fn new(addr: &str) -> Http {
        Http { client: Client::builder(TokioExecutor::new()).build_http(), base: format!("http://{addr}") }
    }

    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = self.client.request(req.body(Full::new(Bytes::from(body))).unwrap()).await.expect("HTTP request");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Vec::new()).await
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> Reply {
        self.send(Method::POST, path, &[], body).await
    }

    /// One value of a Prometheus metric line that starts with `prefix`.
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text();
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    }
}
