//! `fit`, `train_one_epoch` and `evaluate`: the loop every training script writes, once.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::amp::{autocast, GradScaler, Precision};
use super::history::{EpochRecord, History};
use super::metrics::Metrics;
use super::objective::{Objective, StepOutput};
use crate::autograd::no_grad;
use crate::checkpoint::{CheckpointDir, TrainingCheckpoint, TrainingState};
use crate::data::DataLoader;
use crate::nn::{Module, ModuleExt};
use crate::ops::with_default_generator;
use crate::optim::lr_scheduler::{LrScheduler, SchedulerState};
use crate::optim::{clip_grad_norm, Optimizer};
use crate::tensor::{Device, Error, Result, Tensor};

/// `t` in host memory (metrics are computed on the CPU).
fn on_host(t: &Tensor) -> Result<Tensor> {
    t.detach().try_to_device(Device::Cpu)
}

/// When the scheduler steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SchedulerStep {
    /// After each epoch, with the evaluation loss (or the training loss without an evaluation
    /// set) as the metric for `ReduceLROnPlateau`.
    #[default]
    Epoch,
    /// After each optimizer step (OneCycleLR, warmup-cosine over steps).
    Batch,
}

/// A model, its optimizer and what goes with them through training.
///
/// ```no_run
/// # use tensorbrain::prelude::*;
/// # use tensorbrain::train::{Trainer, classification};
/// # use tensorbrain::optim::{Adam, AdamOptions};
/// # fn run<M: Module>(model: &mut M, train: &tensorbrain::data::DataLoader, test: &tensorbrain::data::DataLoader,
/// #        forward: fn(&M, &Tensor) -> tensorbrain::Result<Tensor>) -> tensorbrain::Result<()> {
/// let opt = Adam::new(model.parameters(), AdamOptions { lr: 1e-3, ..Default::default() })?;
/// let mut trainer = Trainer::new(model, opt).log_csv("runs/mlp.csv").plot("runs/mlp.png").checkpoint_dir("runs/mlp");
/// trainer.fit(train, Some(test), 5, &classification(forward))?;
/// # Ok(()) }
/// ```
pub struct Trainer<'a, M: Module> {
    model: &'a mut M,
    optimizer: Box<dyn Optimizer + 'a>,
    scheduler: Option<Box<dyn LrScheduler + 'a>>,
    scheduler_step: SchedulerStep,
    scaler: Option<GradScaler>,
    precision: Precision,
    accumulate: usize,
    clip_norm: Option<f64>,
    progress: bool,
    top_k: usize,
    csv: Option<PathBuf>,
    plot: Option<PathBuf>,
    checkpoints: Option<CheckpointDir>,
    epoch: usize,
    step: u64,
    skipped: u64,
    history: History,
    device: Device,
}

impl<'a, M: Module> Trainer<'a, M> {
    pub fn new(model: &'a mut M, optimizer: impl Optimizer + 'a) -> Self {
        Trainer {
            model,
            optimizer: Box::new(optimizer),
            scheduler: None,
            scheduler_step: SchedulerStep::Epoch,
            scaler: None,
            precision: Precision::F32,
            accumulate: 1,
            clip_norm: None,
            progress: true,
            top_k: 0,
            csv: None,
            plot: None,
            checkpoints: None,
            epoch: 0,
            step: 0,
            skipped: 0,
            history: History::default(),
            device: Device::Cpu,
        }
    }

    /// A learning-rate scheduler built over this trainer's optimizer, stepped per `when`.
    pub fn scheduler(mut self, scheduler: impl LrScheduler + 'a, when: SchedulerStep) -> Self {
        self.scheduler = Some(Box::new(scheduler));
        self.scheduler_step = when;
        self
    }

    /// Sums gradients over `batches` batches per optimizer step (each loss divided by
    /// `batches`, so the step equals one over the combined batch for mean losses).
    pub fn accumulate(mut self, batches: usize) -> Self {
        self.accumulate = batches.max(1);
        self
    }

    /// Clips the global L2 norm of the gradients before each step.
    pub fn clip_grad_norm(mut self, max_norm: f64) -> Self {
        self.clip_norm = Some(max_norm);
        self
    }

    /// Computes forward and backward in `precision` against f32 master weights. F16 turns on
    /// dynamic loss scaling ([`GradScaler`] with PyTorch's defaults); see [`Trainer::scaler`].
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        if precision == Precision::F16 && self.scaler.is_none() {
            self.scaler = Some(GradScaler::default());
        }
        self
    }

    /// Uses this loss scaler (in any precision).
    pub fn scaler(mut self, scaler: GradScaler) -> Self {
        self.scaler = Some(scaler);
        self
    }

    /// Progress bars and a line per epoch on the terminal (on by default).
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Also measures top-`k` accuracy on the evaluation set.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Rewrites a CSV log of every epoch at `path` after each epoch.
    pub fn log_csv(mut self, path: impl Into<PathBuf>) -> Self {
        self.csv = Some(path.into());
        self
    }

    /// Redraws a PNG of the loss and accuracy curves at `path` after each epoch.
    pub fn plot(mut self, path: impl Into<PathBuf>) -> Self {
        self.plot = Some(path.into());
        self
    }

    /// Saves a training checkpoint into `dir` after each epoch, as a new `ckpt-*` directory
    /// committed all-or-nothing, keeping the last two (see [`CheckpointDir`]).
    pub fn checkpoint_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoints(CheckpointDir::new(dir))
    }

    /// Saves a training checkpoint into `store` after each epoch (to keep more than two:
    /// `.checkpoints(CheckpointDir::new("runs/mlp").keep_last(5))`).
    pub fn checkpoints(mut self, store: CheckpointDir) -> Self {
        self.checkpoints = Some(store);
        self
    }

    pub fn model(&self) -> &M {
        self.model
    }

    pub fn optimizer(&self) -> &dyn Optimizer {
        &*self.optimizer
    }

    /// Epochs completed.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Optimizer steps taken (skipped overflow steps included).
    pub fn global_step(&self) -> u64 {
        self.step
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Trains until `epochs` epochs are complete (counting epochs done before a resume),
    /// evaluating after each, and logs, plots and checkpoints as configured. A loader without
    /// batches is an error (before anything runs), as is a loss that stops being finite.
    pub fn fit<O: Objective<M>>(&mut self, train: &DataLoader, eval: Option<&DataLoader>, epochs: usize, objective: &O) -> Result<&History> {
        train.check_not_empty(TRAIN_DATA)?;
        if let Some(eval) = eval {
            eval.check_not_empty(EVAL_DATA)?;
        }
        while self.epoch < epochs {
            let lr = self.optimizer.lr();
            let skipped_before = self.skipped;
            let start = Instant::now();
            let train_metrics = self.train_one_epoch(train, objective)?;
            let seconds = start.elapsed().as_secs_f64();
            let eval_metrics = eval.map(|loader| self.evaluate(loader, objective)).transpose()?;
            if self.scheduler_step == SchedulerStep::Epoch {
                let metric = eval_metrics.as_ref().unwrap_or(&train_metrics).mean_loss();
                if let Some(s) = &mut self.scheduler {
                    s.try_step_with_metric(&mut *self.optimizer, metric)?;
                }
            }
            let record = EpochRecord {
                epoch: self.epoch,
                train_loss: train_metrics.mean_loss(),
                train_accuracy: train_metrics.accuracy(),
                eval_loss: eval_metrics.as_ref().map(Metrics::mean_loss),
                eval_accuracy: eval_metrics.as_ref().and_then(Metrics::accuracy),
                eval_top_k_accuracy: eval_metrics.as_ref().and_then(Metrics::top_k_accuracy),
                lr,
                seconds,
                samples_per_second: train_metrics.samples() as f64 / seconds.max(1e-9),
                skipped_steps: self.skipped - skipped_before,
            };
            if self.progress {
                println!("{}", describe(&record, self.top_k));
            }
            self.history.epochs.push(record);
            if let Some(path) = &self.csv {
                self.history.write_csv(path)?;
            }
            if let Some(path) = &self.plot {
                self.history.write_plot(path)?;
            }
            if let Some(store) = &self.checkpoints {
                self.save_checkpoint_to(store)?;
            }
        }
        Ok(&self.history)
    }

    /// One pass over `loader` in training mode; counts toward [`Trainer::epoch`].
    ///
    /// Stops with a "training diverged" error when the loss is not finite (without loss
    /// scaling), or, with a loss scaler, when every optimizer step of the epoch overflowed or
    /// the scale collapsed below its minimum ([`GradScaler::collapsed`]): then the gradients
    /// are inf or NaN at any scale, and going on would only skip steps.
    pub fn train_one_epoch<O: Objective<M>>(&mut self, loader: &DataLoader, objective: &O) -> Result<Metrics> {
        loader.check_not_empty(TRAIN_DATA)?;
        self.model.train();
        // Counted once the pass completes: an epoch cut short by an error is not done.
        let epoch = self.epoch + 1;
        let mut metrics = Metrics::new(0);
        let bar = self.bar(loader.len(), format!("epoch {epoch}"));
        let start = Instant::now();
        let batches = loader.len();
        let (mut steps, skipped_before) = (0u64, self.skipped);
        self.optimizer.zero_grad();
        self.check_model_device()?;
        for (k, batch) in loader.iter_epoch(epoch as u64 - 1).enumerate() {
            let batch = self.to_device(batch?)?;
            let out = self.forward_backward(objective, &batch)?;
            let loss = out.loss.item::<f32>() as f64;
            if !loss.is_finite() && self.scaler.is_none() {
                return Err(Error::Msg(format!("epoch {epoch}, batch {}: the loss is {loss}; training diverged", k + 1)));
            }
            metrics.add_loss(loss, out.batch_size);
            if let Some((scores, labels)) = &out.scores {
                metrics.add_predictions(&on_host(scores)?, &on_host(labels)?)?;
            }
            if (k + 1) % self.accumulate == 0 || k + 1 == batches {
                self.optimizer_step()?;
                steps += 1;
                if let Some(s) = self.scaler.as_ref().filter(|s| s.collapsed()) {
                    return Err(Error::Msg(format!(
                        "epoch {epoch}, batch {}: the loss scale fell to {:e}, below its minimum {:e}: the gradients overflow at every \
                         scale, so the loss or the weights are inf or NaN; training diverged",
                        k + 1,
                        s.scale(),
                        s.min_scale()
                    )));
                }
            }
            bar.inc(1);
            let rate = metrics.samples() as f64 / start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {:.4}  {rate:.0} samples/s", metrics.mean_loss()));
        }
        bar.finish_and_clear();
        if let Some(s) = &self.scaler {
            if steps > 0 && self.skipped - skipped_before == steps {
                return Err(Error::Msg(format!(
                    "epoch {epoch}: all {steps} optimizer steps overflowed (inf or NaN gradients; the loss scale is now {:e}); \
                     training diverged",
                    s.scale()
                )));
            }
        }
        self.epoch = epoch;
        Ok(metrics)
    }

    /// Measures `loader` in eval mode without recording a tape; the model goes back to
    /// training mode afterwards.
    pub fn evaluate<O: Objective<M>>(&mut self, loader: &DataLoader, objective: &O) -> Result<Metrics> {
        loader.check_not_empty(EVAL_DATA)?;
        self.check_model_device()?;
        self.model.eval();
        let bar = self.bar(loader.len(), "evaluating".into());
        let mut metrics = Metrics::new(self.top_k);
        let result = no_grad(|| -> Result<()> {
            for batch in loader.iter_epoch(0) {
                let out = objective.step(&*self.model, &self.to_device(batch?)?)?;
                metrics.add_loss(out.loss.item::<f32>() as f64, out.batch_size);
                if let Some((scores, labels)) = &out.scores {
                    metrics.add_predictions(&on_host(scores)?, &on_host(labels)?)?;
                }
                bar.inc(1);
            }
            Ok(())
        });
        bar.finish_and_clear();
        self.model.train();
        result.map(|_| metrics)
    }

    fn bar(&self, len: usize, prefix: String) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})").expect("a valid template").progress_chars("=> "));
        bar.set_prefix(prefix);
        bar
    }

    /// Forward and backward of one batch, in the trainer's precision.
    fn forward_backward<O: Objective<M>>(&mut self, objective: &O, batch: &[Tensor]) -> Result<StepOutput> {
        let out = if self.precision == Precision::F32 {
            objective.step(&*self.model, batch)?
        } else {
            let dtype = self.precision.dtype();
            // The casts are on the tape: gradients flow back to the f32 masters.
            let mut masters = Vec::new();
            self.model.visit_params_mut("", &mut |_, p| {
                let low = p.to_dtype(dtype);
                masters.push(std::mem::replace(p, low));
            });
            let batch: Vec<Tensor> = batch.iter().map(|t| if t.dtype().is_float() { t.detach().to_dtype(dtype) } else { t.clone() }).collect();
            let out = autocast(dtype, || objective.step(&*self.model, &batch));
            let mut masters = masters.into_iter();
            self.model.visit_params_mut("", &mut |_, p| *p = masters.next().expect("same parameters"));
            out?
        };
        let mut loss = out.loss.clone();
        if self.accumulate > 1 {
            loss = loss.mul_scalar(1.0 / self.accumulate as f64);
        }
        if let Some(s) = &self.scaler {
            loss = s.scale_loss(&loss);
        }
        loss.try_backward()?;
        Ok(out)
    }

    fn optimizer_step(&mut self) -> Result<()> {
        let params = self.optimizer.params();
        let finite = match &mut self.scaler {
            Some(s) => {
                let finite = s.unscale(&params)?;
                s.update(!finite);
                finite
            }
            None => true,
        };
        if finite {
            if let Some(max) = self.clip_norm {
                clip_grad_norm(&params, max, 2.0)?;
            }
            self.optimizer.step()?;
        } else {
            self.skipped += 1;
        }
        self.optimizer.zero_grad();
        self.step += 1;
        if self.scheduler_step == SchedulerStep::Batch {
            if let Some(s) = &mut self.scheduler {
                s.try_step(&mut *self.optimizer)?;
            }
        }
        Ok(())
    }

    /// Each batch moved to `device` before the forward pass, and each batch's scores moved back
    /// for the metrics: training and evaluation run on `device`. The model must already be
    /// there: move it with `Module::to_device` before creating the optimizer (as in PyTorch,
    /// where the optimizer holds the moved parameters); `fit` checks this.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// An error naming the first parameter that is not on the trainer's device.
    fn check_model_device(&self) -> Result<()> {
        let mut misplaced = None;
        self.model.visit_params("", &mut |name, p| {
            if misplaced.is_none() && p.device() != self.device {
                misplaced = Some((name.to_string(), p.device()));
            }
        });
        match misplaced {
            None => Ok(()),
            Some((name, on)) => Err(Error::Msg(format!(
                "Trainer::device({}): parameter {name} is on {on}; move the model with model.to_device({:?}) before creating the optimizer",
                self.device, self.device
            ))),
        }
    }

    /// `batch` on the trainer's device.
    fn to_device(&self, batch: Vec<Tensor>) -> Result<Vec<Tensor>> {
        if self.device == Device::Cpu && batch.iter().all(|t| t.device() == Device::Cpu) {
            return Ok(batch);
        }
        batch.iter().map(|t| t.try_to_device(self.device)).collect()
    }

    /// Writes a training checkpoint (weights, optimizer, scheduler, counters, generator,
    /// loss scale, history) as the newest in `dir`; returns its directory.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf> {
        self.save_checkpoint_to(&CheckpointDir::new(dir))
    }

    /// [`Trainer::save_checkpoint`] into `store`.
    pub fn save_checkpoint_to(&self, store: &CheckpointDir) -> Result<PathBuf> {
        let rng = with_default_generator(|g| g.state());
        let mut state = TrainingState::new(self.epoch, self.step, rng, self.history.clone());
        state.scheduler = self.scheduler.as_ref().map(|s| s.state_dict().to_metadata());
        state.scaler = self.scaler.as_ref().map(GradScaler::state);
        TrainingCheckpoint::save_to(store, &self.model.state_dict(), &self.optimizer.state_dict(), &state)
    }

    /// Restores everything [`Trainer::save_checkpoint`] wrote, so that `fit` carries on as if
    /// it had never stopped, from the newest complete checkpoint under `path` (see
    /// [`TrainingCheckpoint::load`]); returns the checkpoint's directory. Nothing changes if
    /// the checkpoint does not fit this trainer.
    pub fn resume(&mut self, path: &Path) -> Result<PathBuf> {
        let ckpt = TrainingCheckpoint::load(path)?;
        let dir = ckpt.path.as_path();
        // Check everything that can fail before changing anything.
        self.model.check_state_dict(&ckpt.model, &dir.display().to_string())?;
        let scheduler = match (&self.scheduler, &ckpt.state.scheduler) {
            (Some(_), Some(meta)) => Some(SchedulerState::from_metadata(meta)?),
            (None, None) => None,
            (Some(_), None) => return Err(Error::Msg(format!("{}: the checkpoint has no scheduler state, but this trainer has a scheduler", dir.display()))),
            (None, Some(_)) => return Err(Error::Msg(format!("{}: the checkpoint has scheduler state, but this trainer has no scheduler", dir.display()))),
        };
        let rng = ckpt.state.rng()?;
        let before = self.optimizer.state_dict();
        self.optimizer.load_state_dict(&ckpt.optimizer)?;
        if let (Some(s), Some(st)) = (&mut self.scheduler, &scheduler) {
            if let Err(e) = s.load_state_dict(st) {
                self.optimizer.load_state_dict(&before)?;
                return Err(e);
            }
        }
        self.model.load_state_dict(ckpt.model, &dir.display().to_string())?;
        with_default_generator(|g| g.set_state(rng));
        if let (Some(s), Some(st)) = (&mut self.scaler, ckpt.state.scaler) {
            s.load_state(st);
        }
        self.epoch = ckpt.state.epoch;
        self.step = ckpt.state.step;
        self.history = ckpt.state.history;
        Ok(ckpt.path)
    }
}

const TRAIN_DATA: &str = "the training data";
const EVAL_DATA: &str = "the evaluation data";

/// One line per epoch: `epoch 3  loss 0.1234  acc 96.5%  eval loss 0.1000  eval acc 97.0%  ...`
fn describe(r: &EpochRecord, top_k: usize) -> String {
    let mut s = format!("epoch {:>3}  train loss {:.4}", r.epoch, r.train_loss);
    if let Some(a) = r.train_accuracy {
        s += &format!("  acc {:.2}%", 100.0 * a);
    }
    if let Some(l) = r.eval_loss {
        s += &format!("  | eval loss {l:.4}");
    }
    if let Some(a) = r.eval_accuracy {
        s += &format!("  acc {:.2}%", 100.0 * a);
    }
    if let Some(a) = r.eval_top_k_accuracy {
        s += &format!("  top-{top_k} {:.2}%", 100.0 * a);
    }
    s += &format!("  | lr {:.2e}  {:.1} s  {:.0} samples/s", r.lr, r.seconds, r.samples_per_second);
    if r.skipped_steps > 0 {
        s += &format!("  ({} overflow steps skipped)", r.skipped_steps);
    }
    s
}
