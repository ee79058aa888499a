//! An open-loop load generator for Open Inference Protocol servers.
//!
//! Open loop: requests are scheduled at a constant rate whatever the server does, and each
//! latency is counted from the request's *scheduled* send time, so a server (or client) that
//! falls behind shows it as latency instead of quietly lowering the rate (the "coordinated
//! omission" of closed-loop benchmarks).
//!
//!     loadgen sweep --url http://127.0.0.1:8000/v2/models/mlp/infer --rates 1000,2000,5000 --label tensorbrain --csv ours.csv
//!     loadgen phases --url ... --phases 2000:3,15000:5,2000:3 --server-pid PID   # overload and recovery, per 250 ms window
//!     loadgen plot --csv ours.csv --csv fastapi.csv --out sweep.png
//!
//! Each request is one MNIST-sized image (`[1, 1, 28, 28]` FP32), as JSON or binary tensors.
//! The schedule is kept by a plain thread sleeping until each send time; a tokio runtime
//! (`--threads`, default 1) sends the requests over `--connections` keep-alive connections
//! (512), as wrk2 does: a request that finds every connection busy waits, and that counts.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Open-loop load generator for Open Inference Protocol (KServe v2) servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offer each rate for a while; print a latency table.
    Sweep {
        #[command(flatten)]
        target: Target,
        /// Offered rates, requests per second.
        #[arg(long, value_delimiter = ',', required = true)]
        rates: Vec<f64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Write the table as CSV here too.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Run rates back to back (`RATE:SECONDS,...`), reporting each time window: shows how the
    /// server takes an overload and how fast it recovers.
    Phases {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_delimiter = ',', required = true)]
        phases: Vec<String>,
        /// Window length in milliseconds.
        #[arg(long, default_value_t = 250)]
        window_ms: u64,
        /// The server's process id, to sample its resident memory each window.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Draw latency against offered rate from sweep CSVs (one line per file and percentile).
    Plot {
        #[arg(long = "csv", required = true)]
        csvs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args, Clone)]
struct Target {
    /// The infer endpoint.
    #[arg(long)]
    url: String,
    /// The name of the one input.
    #[arg(long, default_value = "x")]
    input: String,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// What to call this server in tables and plots.
    #[arg(long, default_value = "server")]
    label: String,
    /// Seconds of traffic at the first rate before measuring (connections, caches).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// A request not answered within this many milliseconds counts as a timeout.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Threads of the client's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Keep-alive connections; requests beyond this many in flight wait (and the wait counts).
    /// More than the server's queue, so that its back-pressure, not the client, is what limits.
    #[arg(long, default_value_t = 512)]
    connections: usize,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Json,
    Binary,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Status(u16),
    Timeout,
    ConnectionError,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(s) => write!(f, "{s}"),
            Outcome::Timeout => f.write_str("timeout"),
            Outcome::ConnectionError => f.write_str("conn-error"),
        }
    }
}

#[derive(Clone, Copy)]
struct Sample {
    /// Scheduled send time, from the start of the run.
    at: Duration,
    latency: Duration,
    outcome: Outcome,
}

struct Body {
    bytes: Bytes,
    header_len: Option<usize>,
}

fn request_body(input: &str, format: Format) -> Body {
    // A fixed pseudo-random image in [0, 1).
    let image: Vec<f32> = (0..784u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32).collect();
    match format {
        Format::Json => {
            let json = serde_json::json!({ "inputs": [{ "name": input, "shape": [1, 1, 28, 28], "datatype": "FP32", "data": image }] });
            Body { bytes: Bytes::from(json.to_string()), header_len: None }
        }
        Format::Binary => {
            let header = serde_json::json!({
                "inputs": [{ "name": input, "shape": [1, 1, 28, 28], "datatype": "FP32", "parameters": { "binary_data_size": 784 * 4 } }],
                "parameters": { "binary_data_output": true },
            })
            .to_string();
            let mut bytes = header.clone().into_bytes();
            image.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
            Body { bytes: Bytes::from(bytes), header_len: Some(header.len()) }
        }
    }
}

struct Runner {
    target: Target,
    body: Body,
    /// `host:port` and the request path, from `--url`.
    authority: String,
    path: String,
}

/// A request the scheduler has released: when it was due, from the start of the run.
struct Due {
    at: Duration,
    scheduled: Instant,
}

impl Runner {
    fn new(target: Target) -> Result<Arc<Runner>, String> {
        let uri: hyper::Uri = target.url.parse().map_err(|e| format!("--url {}: {e}", target.url))?;
        let authority = uri.authority().ok_or_else(|| format!("--url {} has no host", target.url))?.to_string();
        let path = uri.path_and_query().map_or("/".to_string(), |p| p.to_string());
        let body = request_body(&target.input, target.format);
        Ok(Arc::new(Runner { target, body, authority, path }))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Outcome> {
        let stream = TcpStream::connect(&self.authority).await.map_err(|_| Outcome::ConnectionError)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| Outcome::ConnectionError)?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends one request on `conn` (opening it if needed); a connection that failed or timed
    /// out is dropped so that the next request opens a fresh one.
    async fn one(&self, conn: &mut Option<SendRequest<Full<Bytes>>>) -> Outcome {
        let call = async {
            if !matches!(conn, Some(c) if !c.is_closed()) {
                *conn = Some(self.connect().await?);
            }
            let sender = conn.as_mut().expect("connected");
            sender.ready().await.map_err(|_| Outcome::ConnectionError)?;
            let mut req = Request::post(&self.path).header("host", &self.authority).header("content-type", "application/json");
            if let Some(n) = self.body.header_len {
                req = req.header("inference-header-content-length", n);
            }
            let req = req.body(Full::new(self.body.bytes.clone())).expect("valid request");
            let resp = sender.send_request(req).await.map_err(|_| Outcome::ConnectionError)?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await.map_err(|_| Outcome::ConnectionError)?;
            Ok::<_, Outcome>(Outcome::Status(status))
        };
        let outcome = match tokio::time::timeout(Duration::from_millis(self.target.timeout_ms), call).await {
            Err(_) => Outcome::Timeout,
            Ok(Err(o)) | Ok(Ok(o)) => o,
        };
        if outcome == Outcome::Timeout || outcome == Outcome::ConnectionError {
            *conn = None;
        }
        outcome
    }

    /// Offers `phases` (rate, seconds) back to back; returns every request's sample.
    ///
    /// This thread keeps the schedule (the OS timer is precise to tens of microseconds, tokio's
    /// to a millisecond) and hands each due request to `--connections` keep-alive connections
    /// on the runtime behind `rt`, as wrk2 does. A request that finds them all busy waits for
    /// one, and that wait counts in its latency.
    fn run(self: &Arc<Runner>, rt: &tokio::runtime::Handle, phases: &[(f64, f64)]) -> Vec<Sample> {
        let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<Due>();
        let due_rx = Arc::new(tokio::sync::Mutex::new(due_rx));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..self.target.connections {
            let (runner, due_rx, tx) = (self.clone(), due_rx.clone(), tx.clone());
            rt.spawn(async move {
                let mut conn = None;
                loop {
                    let next = due_rx.lock().await.recv().await;
                    let Some(Due { at, scheduled }) = next else { break };
                    let outcome = runner.one(&mut conn).await;
                    let _ = tx.send(Sample { at, latency: scheduled.elapsed(), outcome });
                }
            });
        }
        drop(tx);
        let start = Instant::now();
        let mut phase_start = Duration::ZERO;
        for &(rate, seconds) in phases {
            let count = (rate * seconds).round() as u64;
            for i in 0..count {
                let at = phase_start + Duration::from_secs_f64(i as f64 / rate);
                let scheduled = start + at;
                let now = Instant::now();
                if scheduled > now {
                    std::thread::sleep(scheduled - now);
                }
                let _ = due_tx.send(Due { at, scheduled });
            }
            phase_start += Duration::from_secs_f64(seconds);
        }
        drop(due_tx);
        // The connection tasks end when the schedule is done and drained.
        let mut samples: Vec<Sample> = rx.iter().collect();
        samples.sort_by_key(|s| s.at);
        samples
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3))
}

/// Counts by outcome, `200: 9990, 429: 10`.
fn outcomes(samples: &[Sample]) -> String {
    let mut counts: std::collections::BTreeMap<Outcome, usize> = Default::default();
    samples.iter().for_each(|s| *counts.entry(s.outcome).or_default() += 1);
    counts.iter().map(|(o, n)| format!("{o}: {n}")).collect::<Vec<_>>().join(", ")
}

struct Row {
    offered: f64,
    achieved: f64,
    p: [Option<Duration>; 4],
    errors: usize,
    outcomes: String,
}

const PERCENTILES: [f64; 4] = [50.0, 95.0, 99.0, 99.9];

fn summarise(offered: f64, seconds: f64, samples: &[Sample]) -> Row {
    let mut ok: Vec<Duration> = samples.iter().filter(|s| s.outcome == Outcome::Status(200)).map(|s| s.latency).collect();
    ok.sort();
    // Throughput is what completed while the rate was offered, not the backlog drained after.
    let window = Duration::from_secs_f64(seconds);
    let completed_in_time = samples.iter().filter(|s| s.outcome == Outcome::Status(200) && s.at + s.latency <= window).count();
    Row {
        offered,
        achieved: completed_in_time as f64 / seconds,
        p: PERCENTILES.map(|p| percentile(&ok, p)),
        errors: samples.len() - ok.len(),
        outcomes: outcomes(samples),
    }
}

fn parse_phase(s: &str) -> Result<(f64, f64), String> {
    let (rate, secs) = s.split_once(':').ok_or_else(|| format!("phase `{s}` should be RATE:SECONDS"))?;
    Ok((rate.parse().map_err(|e| format!("rate in `{s}`: {e}"))?, secs.parse().map_err(|e| format!("seconds in `{s}`: {e}"))?))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build().expect("tokio runtime")
}

fn sweep(target: Target, rates: &[f64], duration: f64, csv: Option<PathBuf>) -> Result<(), String> {
    let rt = runtime(target.threads);
    let runner = Runner::new(target.clone())?;
    let mut rows = Vec::new();
    if target.warmup > 0.0 {
        runner.run(rt.handle(), &[(rates[0], target.warmup)]);
    }
    for &rate in rates {
        let samples = runner.run(rt.handle(), &[(rate, duration)]);
        let row = summarise(rate, duration, &samples);
        eprintln!("{}: offered {rate}/s -> {:.0}/s ok, p99 {} ms ({})", target.label, row.achieved, ms(row.p[2]), row.outcomes);
        rows.push(row);
        // Let queues empty before the next rate.
        std::thread::sleep(Duration::from_millis(500));
    }
    let format = match target.format {
        Format::Json => "JSON",
        Format::Binary => "binary",
    };
    println!("\n{} ({format} tensors, one image per request, {duration} s per rate, open loop)\n", target.label);
    println!("| offered req/s | achieved ok/s | p50 ms | p95 ms | p99 ms | p99.9 ms | not 200 | outcomes |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &rows {
        println!(
            "| {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.offered, r.achieved, ms(r.p[0]), ms(r.p[1]), ms(r.p[2]), ms(r.p[3]), r.errors, r.outcomes
        );
    }
    if let Some(path) = csv {
        let mut out = String::from("label,offered,achieved,p50_ms,p95_ms,p99_ms,p999_ms,errors\n");
        for r in &rows {
            let _ = writeln!(out, "{},{},{:.1},{},{},{},{},{}", target.label, r.offered, r.achieved, ms(r.p[0]), ms(r.p[1]), ms(r.p[2]), ms(r.p[3]), r.errors);
        }
        std::fs::write(&path, out).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn phases(target: Target, phases: &[(f64, f64)], window_ms: u64, server_pid: Option<u32>) -> Result<(), String> {
    let rt = runtime(target.threads);
    let runner = Runner::new(target.clone())?;
    // Memory is sampled on a plain thread so that a busy client runtime does not skip samples.
    let total: f64 = phases.iter().map(|p| p.1).sum();
    let window = Duration::from_millis(window_ms);
    let sampler = server_pid.map(|pid| {
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut out = Vec::new();
            while start.elapsed().as_secs_f64() < total + 1.0 {
                out.push((start.elapsed(), rss_kib(pid)));
                std::thread::sleep(window / 2);
            }
            out
        })
    });
    if target.warmup > 0.0 {
        runner.run(rt.handle(), &[(phases[0].0, target.warmup)]);
    }
    let samples = runner.run(rt.handle(), phases);
    let rss = sampler.map(|s| s.join().unwrap_or_default()).unwrap_or_default();
    println!("\n{}: phases {:?} (rate/s, seconds), {window_ms} ms windows, latency from scheduled send time\n", target.label, phases);
    println!("| window s | offered/s | 200 | 429 | other | p50 ms (200) | p99 ms (200) | p99 ms (429) | server RSS MiB |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let n_windows = (total * 1000.0 / window_ms as f64).ceil() as usize;
    for w in 0..n_windows {
        let (lo, hi) = (window * w as u32, window * (w as u32 + 1));
        let in_window: Vec<&Sample> = samples.iter().filter(|s| s.at >= lo && s.at < hi).collect();
        let mut ok: Vec<Duration> = in_window.iter().filter(|s| s.outcome == Outcome::Status(200)).map(|s| s.latency).collect();
        let mut refused: Vec<Duration> = in_window.iter().filter(|s| s.outcome == Outcome::Status(429)).map(|s| s.latency).collect();
        ok.sort();
        refused.sort();
        let other = in_window.len() - ok.len() - refused.len();
        let mem = rss.iter().filter(|(t, _)| *t >= lo && *t < hi).filter_map(|(_, m)| *m).max();
        println!(
            "| {:.2} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            lo.as_secs_f64(),
            in_window.len() as f64 / window.as_secs_f64(),
            ok.len(),
            refused.len(),
            other,
            ms(percentile(&ok, 50.0)),
            ms(percentile(&ok, 99.0)),
            ms(percentile(&refused, 99.0)),
            mem.map_or("-".into(), |m| format!("{:.1}", m as f64 / 1024.0)),
        );
    }
    println!("\nall requests: {}", outcomes(&samples));
    Ok(())
}

/// One sweep CSV: its label and (offered, [p50, p95, p99, p99.9]) rows.
type Series = (String, Vec<(f64, [Option<f64>; 4])>);

fn read_csv(path: &PathBuf) -> Result<Series, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut label = String::new();
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 7 {
            return Err(format!("{}: short line {line:?}", path.display()));
        }
        label = f[0].to_string();
        let offered: f64 = f[1].parse().map_err(|e| format!("{}: {e}", path.display()))?;
        rows.push((offered, [3, 4, 5, 6].map(|i| f[i].parse().ok())));
    }
    Ok((label, rows))
}

fn plot(csvs: &[PathBuf], out: &PathBuf) -> Result<(), String> {
    use plotters::prelude::*;
    let series: Vec<Series> = csvs.iter().map(read_csv).collect::<Result<_, _>>()?;
    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .map(|bytes| plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_ok())
        .unwrap_or(false);
    let err = |e: String| format!("drawing {}: {e}", out.display());
    let root = BitMapBackend::new(out, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let all = || series.iter().flat_map(|(_, rows)| rows.iter());
    // Both axes logarithmic: the baseline's rates are a fraction of ours.
    let x_max = all().map(|r| r.0).fold(1.0, f64::max) * 1.25;
    let x_min = all().map(|r| r.0).fold(f64::INFINITY, f64::min).max(1.0) * 0.8;
    let y_values = || all().flat_map(|r| r.1.iter().flatten().copied());
    let y_min = y_values().fold(f64::INFINITY, f64::min).max(0.01) * 0.8;
    let y_max = y_values().fold(0.1, f64::max) * 1.25;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if font {
        builder.caption("latency vs offered load (open loop, one image per request)", ("sans-serif", 22)).x_label_area_size(45).y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale()).map_err(|e| err(e.to_string()))?;
    let mut mesh = chart.configure_mesh();
    if font {
        mesh.x_desc("offered requests/s (log)").y_desc("latency, ms (log)");
    }
    mesh.draw().map_err(|e| err(e.to_string()))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (k, (label, rows)) in series.iter().enumerate() {
        for (j, name) in ["p50", "p99"].iter().enumerate() {
            let pi = [0, 2][j];
            let color = colors[k % colors.len()];
            let style = if j == 0 { color.stroke_width(2) } else { color.mix(0.6).stroke_width(2) };
            let points: Vec<(f64, f64)> = rows.iter().filter_map(|(x, p)| p[pi].map(|y| (*x, y))).collect();
            let line = chart.draw_series(LineSeries::new(points.clone(), style)).map_err(|e| err(e.to_string()))?;
            if font {
                let legend = format!("{label} {name}");
                line.label(legend).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            }
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| err(e.to_string()))?;
        }
    }
    if font {
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Sweep { target, rates, duration, csv } => sweep(target, &rates, duration, csv),
        Command::Phases { target, phases: list, window_ms, server_pid } => {
            list.iter().map(|p| parse_phase(p)).collect::<Result<Vec<_>, _>>().and_then(|p| phases(target, &p, window_ms, server_pid))
        }
        Command::Plot { csvs, out } => plot(&csvs, &out),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
