//! Starting a server: load the model, warm it up, start the batcher, bind the two listeners,
//! serve until SIGTERM (or Ctrl-C), then drain: stop accepting, finish what is queued, exit 0.

use std::future::{Future, IntoFuture};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tensorbrain::nn::{DimCheck, ModelSignature, ModuleExt, Signature, StaticModel};
use tensorbrain::quant::{QuantConfig, Quantize};
use tensorbrain::Tensor;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::batcher::{self, BatchConfig, InferFn};
use crate::decode::Decoder;
use crate::options::{Int8Source, Options};
use crate::routes::{self, App};

/// A warmed-up model with its batcher running, ready to be put behind listeners.
pub struct Server {
    app: Arc<App>,
    batcher: JoinHandle<()>,
}

impl Server {
    /// Runs a warm-up forward (at batch 1 and at `--max-batch`), then starts the batcher. The
    /// server reports ready only after this succeeded.
    pub fn start(signature: Signature, mut infer: InferFn, model_name: String, opts: &Options) -> Result<Server, String> {
        crate::metrics::handle();
        let decoder = Decoder::new(signature, opts.max_batch as usize, opts.non_finite);
        warm_up(&decoder, &mut infer)?;
        let config = BatchConfig {
            max_batch: opts.max_batch as usize,
            max_wait: Duration::from_micros(opts.max_wait_us),
            queue: opts.queue as usize,
            batchable: decoder.batch_symbol.is_some(),
        };
        let (queue, batcher) = batcher::spawn(infer, config).map_err(|e| format!("could not start the batcher thread: {e}"))?;
        let app = App {
            model_name,
            decoder,
            queue,
            deadline: Duration::from_millis(opts.deadline_ms),
            max_body_bytes: opts.max_body_bytes,
            max_wait: config.max_wait,
            admission: Arc::new(Admission::new((opts.shed_lag_us > 0).then(|| Duration::from_micros(opts.shed_lag_us)))),
            ready: AtomicBool::new(true),
        };
        Ok(Server { app: Arc::new(app), batcher })
    }

    pub fn model_name(&self) -> &str {
        &self.app.model_name
    }

    /// Serves the protocol on `api` and Prometheus metrics on `metrics` until `shutdown`
    /// resolves; then stops accepting, lets in-flight requests finish, drains the queue and
    /// joins the batcher.
    pub async fn serve(self, api: TcpListener, metrics: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = Arc::downgrade(&self.app);
        tokio::spawn(async move {
            shutdown.await;
            if let Some(app) = app.upgrade() {
                app.ready.store(false, Ordering::Relaxed);
            }
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // Histograms keep raw samples until rendered; upkeep bounds them between scrapes.
        let upkeep = tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                crate::metrics::handle().run_upkeep();
            }
        });
        let probe = tokio::spawn(self.app.admission.clone().probe());
        let api = axum::serve(api, routes::router(self.app)).with_graceful_shutdown(stopped(stop_rx.clone()));
        let metrics = axum::serve(metrics, routes::metrics_router()).with_graceful_shutdown(stopped(stop_rx));
        let (api_result, metrics_result) = tokio::join!(api.into_future(), metrics.into_future());
        upkeep.abort();
        probe.abort();
        // Every handle on the queue is gone with the router: the batcher finishes what is
        // queued and returns.
        let batcher = self.batcher;
        tokio::task::spawn_blocking(move || batcher.join()).await.ok();
        api_result.and(metrics_result)
    }
}

/// Zero inputs of the declared shapes with `rows` along the batch dim (1 for other symbols).
fn warm_up_inputs(decoder: &Decoder, rows: usize) -> Vec<Tensor> {
    decoder
        .signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .dims
                .iter()
                .map(|d| match d {
                    DimCheck::Known(n) => *n,
                    DimCheck::Sym(s) if Some(*s) == decoder.batch_symbol => rows,
                    DimCheck::Sym(_) | DimCheck::Any => 1,
                })
                .collect();
            Tensor::zeros(&shape, spec.dtype)
        })
        .collect()
}

/// A real forward at batch 1 and at the largest batch: proves the weights fit the model and
/// sizes the allocator's pools before the first request.
fn warm_up(decoder: &Decoder, infer: &mut InferFn) -> Result<(), String> {
    let sig = &decoder.signature;
    let mut sizes = vec![1];
    if decoder.batch_symbol.is_some() && decoder.max_batch > 1 {
        sizes.push(decoder.max_batch);
    }
    for rows in sizes {
        let inputs = warm_up_inputs(decoder, rows);
        let out = match catch_unwind(AssertUnwindSafe(|| infer(&inputs))) {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(format!("warm-up forward of {} failed: {e}", sig.model)),
            Err(panic) => return Err(format!("warm-up forward of {} panicked: {}", sig.model, batcher::panic_message(&*panic))),
        };
        if out.dtype() != sig.output.dtype {
            return Err(format!("{} returned {} but its signature declares {}", sig.model, out.dtype(), sig.output.dtype));
        }
        if decoder.batch_symbol.is_some() && out.shape().first() != Some(&rows) {
            return Err(format!("{} returned shape {:?} for a batch of {rows}", sig.model, out.shape()));
        }
    }
    Ok(())
}

/// Builds a model from the flags: `--weights FILE` loaded into it (every tensor checked), or
/// `--random-weights SEED`; switched to eval mode; then, with `--int8`, its int8 graph
/// installed as its inference path (quantized from those weights, or loaded from a file).
pub fn load_model<M: ModuleExt + StaticModel>(opts: &Options) -> Result<M, String> {
    let int8_file = match &opts.int8 {
        Some(Int8Source::File(path)) => Some(path),
        _ => None,
    };
    if let (Some(_), Some(path)) = (&opts.weights, int8_file) {
        return Err(format!(
            "--weights and --int8 {} both give the weights; an int8 file holds its own (use --int8 dynamic to quantize --weights)",
            path.display()
        ));
    }
    let mut model = match (&opts.weights, opts.random_weights) {
        (Some(path), _) => {
            let mut model = M::init(0);
            model.load(path).map_err(|e| format!("loading weights: {e}"))?;
            model
        }
        (None, Some(seed)) => M::init(seed),
        // Its f32 weights are not used: the int8 file replaces the inference path.
        (None, None) if int8_file.is_some() => M::init(0),
        (None, None) => return Err("give --weights FILE (or --random-weights SEED to try the server out)".into()),
    };
    model.eval();
    let plan = match &opts.int8 {
        None => return Ok(model),
        Some(Int8Source::Dynamic) => model
            .quantize(std::iter::empty::<Tensor>(), &QuantConfig::dynamic())
            .map_err(|e| format!("--int8 dynamic: {e}"))?,
        Some(Int8Source::File(path)) => model.load_quantized(path).map_err(|e| format!("--int8 {}: {e}", path.display()))?,
    };
    eprint!("tensorbrain-serve: {}", plan.report());
    Ok(model)
}

/// The batcher's forward for a `#[model]`: the signature check, then the generated inference
/// path without autograd.
pub fn model_infer_fn<M: StaticModel + ModelSignature + 'static>(model: M) -> InferFn {
    let signature = M::signature();
    Box::new(move |inputs: &[Tensor]| {
        signature.check(inputs)?;
        tensorbrain::autograd::no_grad(|| tensorbrain::nn::run_static(&model, inputs))
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminate_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                eprintln!("tensorbrain-serve: cannot watch SIGTERM ({e}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// What a generated binary's `main` runs: parse the flags, load, warm up, serve until SIGTERM.
pub fn serve<M: ModuleExt + StaticModel + ModelSignature + 'static>(opts: Options) -> Result<(), String> {
    tensorbrain::set_num_threads(opts.threads);
    let signature = M::signature();
    let model_name = opts.model_name.clone().unwrap_or_else(|| signature.model.to_lowercase());
    let model: M = load_model(&opts)?;
    let server = Server::start(signature.clone(), model_infer_fn(model), model_name, &opts)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.http_threads as usize)
        .enable_all()
        .build()
        .map_err(|e| format!("could not start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let bind = |port: u16| async move {
            TcpListener::bind((opts.host, port)).await.map_err(|e| format!("cannot listen on {}:{port}: {e}", opts.host))
        };
        let api = bind(opts.port).await?;
        let metrics = bind(opts.metrics_port).await?;
        let (api_addr, metrics_addr) = (api.local_addr().map_err(|e| e.to_string())?, metrics.local_addr().map_err(|e| e.to_string())?);
        eprintln!(
            "tensorbrain-serve: {signature}, max batch {} rows, max wait {} us, queue {}, {} kernel thread(s), {} HTTP thread(s)",
            opts.max_batch, opts.max_wait_us, opts.queue, tensorbrain::num_threads(), opts.http_threads
        );
        // Tests and scripts read these two lines to find the ports (with --port 0).
        println!("listening on http://{api_addr}/v2/models/{}", server.model_name());
        println!("metrics on http://{metrics_addr}/metrics");
        server.serve(api, metrics, terminate_signal()).await.map_err(|e| format!("serving: {e}"))?;
        eprintln!("tensorbrain-serve: shut down cleanly");
        Ok(())
    })
}

/// A generated binary's `main`: flags from the command line, errors to stderr, exit code 0
/// after a clean shutdown.
pub fn main_for<M: ModuleExt + StaticModel + ModelSignature + 'static>() -> std::process::ExitCode {
    use clap::Parser;
    match serve::<M>(Options::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tensorbrain-serve: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
