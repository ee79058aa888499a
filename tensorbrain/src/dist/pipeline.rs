//! Pipeline parallelism: a model cut into stages, one stage per rank; micro-batches flow
//! forward through the ranks and their gradients flow back, under a GPipe or 1F1B schedule.
//!
//! Memory is the point of choosing a schedule. A stage keeps a micro-batch's activations from
//! its forward until its backward. GPipe runs all `m` forwards first, so stage `i` of `p` holds
//! `m` micro-batches at its peak; 1F1B starts backward as soon as the last stage can, so stage
//! `i` holds at most `min(p - i, m)`. Both leave the same idle "bubble": `(p - 1)` slots out of
//! `m + p - 1` per stage, i.e. `(p - 1) / m` relative to the useful work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::{DistError, DistResult};
use super::group::ProcessGroup;
use crate::nn::{Forward, ModuleExt};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// All forwards, then all backwards (Huang et al., 2019).
    GPipe,
    /// One forward, one backward in the steady state (PipeDream-Flush / Megatron's 1F1B).
    OneFOneB,
}

/// One step's figures for this rank's stage.
#[derive(Clone, Debug, Default)]
pub struct PipelineStats {
    pub stage: usize,
    pub num_stages: usize,
    pub micro_batches: usize,
    /// Most micro-batches whose activations were alive at once (GPipe: m; 1F1B: min(p - i, m)).
    pub peak_live_micro_batches: usize,
    /// Bytes of the activations this stage held for backward at the peak: each live
    /// micro-batch's stage input and output (the boundary tensors; the intermediates inside a
    /// stage live exactly as long and scale the same way). Counted from tensor sizes, not RSS.
    pub peak_live_activation_bytes: usize,
    /// `A`: the largest single micro-batch's activation bytes (input + output) on this stage.
    pub activation_bytes_per_micro_batch: usize,
    /// `(p - 1) / (m + p - 1)`: the share of a step each stage idles in an ideal pipeline.
    pub bubble_fraction: f64,
    /// Measured: time blocked waiting for a neighbour / the step's wall time.
    pub wait_fraction: f64,
    pub step_time: Duration,
    /// Last stage: each micro-batch's loss value.
    pub losses: Vec<f64>,
}

/// This rank's stage and its neighbours in the pipeline.
pub struct Pipeline {
    group: Box<dyn ProcessGroup>,
    stage: Box<dyn Forward>,
}

struct Live {
    input: Tensor,
    /// The stage output, or on the last stage the micro-batch's loss.
    output: Tensor,
    bytes: usize,
}

fn bytes_of(t: &Tensor) -> usize {
    t.numel() * t.dtype().size_in_bytes()
}

impl Pipeline {
    /// `stages` lists the whole model's stages in order (e.g. `Sequential`s); this rank keeps
    /// stage `group.rank()` and drops the rest. Needs exactly one stage per rank.
    pub fn new(group: Box<dyn ProcessGroup>, stages: Vec<Box<dyn Forward>>) -> DistResult<Self> {
        if stages.len() != group.world_size() {
            return Err(DistError::Invalid {
                rank: group.rank(),
                op: "Pipeline::new",
                msg: format!("{} stages for {} ranks; expected one stage per rank", stages.len(), group.world_size()),
            });
        }
        let stage = stages.into_iter().nth(group.rank()).expect("length checked");
        Ok(Pipeline { group, stage })
    }

    /// A pipeline from this rank's stage alone (when each rank builds only its own).
    pub fn from_stage(group: Box<dyn ProcessGroup>, stage: Box<dyn Forward>) -> Self {
        Pipeline { group, stage }
    }

    pub fn stage(&self) -> &dyn Forward {
        self.stage.as_ref()
    }

    pub fn group(&self) -> &dyn ProcessGroup {
        self.group.as_ref()
    }

    /// Saves this rank's stage (parameters and buffers) as `dir/stage-<rank>-of-<world>.safetensors`,
    /// atomically, and returns once every stage is saved.
    pub fn save_stage(&self, dir: &Path) -> DistResult<PathBuf> {
        super::checkpoint::save_pipeline_stage(self.group.as_ref(), dir, &self.stage.state_dict())
    }

    /// Loads this rank's stage from a checkpoint written by [`save_stage`](Self::save_stage)
    /// with the same number of stages (another number is an error naming both).
    pub fn load_stage(&mut self, dir: &Path) -> DistResult<()> {
        let tensors = super::checkpoint::load_pipeline_stage(self.group.as_ref(), dir)?;
        Ok(self.stage.load_state_dict(tensors, &dir.display().to_string())?)
    }

    /// One training step's forward and backward over `micro_batches` micro-batches; gradients
    /// accumulate in the stage's parameters (step the optimizer afterwards, then zero them).
    ///
    /// - `input`: the full batch on the first stage (split along dimension 0), ignored elsewhere.
    /// - `loss_fn(j, output)`: on the last stage, micro-batch `j`'s contribution to the loss
    ///   (for a mean over the full batch: the micro-batch mean divided by `micro_batches`).
    pub fn step(
        &self,
        schedule: Schedule,
        micro_batches: usize,
        input: Option<&Tensor>,
        loss_fn: &dyn Fn(usize, &Tensor) -> crate::Result<Tensor>,
    ) -> DistResult<PipelineStats> {
        let g = self.group.as_ref();
        let (i, p, m) = (g.rank(), g.world_size(), micro_batches);
        let (first, last) = (i == 0, i + 1 == p);
        let invalid = |msg: String| DistError::Invalid { rank: i, op: "Pipeline::step", msg };
        if m == 0 {
            return Err(invalid("micro_batches must be at least 1".into()));
        }
        if schedule == Schedule::OneFOneB && p > 1 && m > 1 && !g.sends_are_buffered() {
            // In the steady state stage i sends an activation forward while stage i + 1 sends
            // a gradient back: with sends that wait for their receive, both would wait forever.
            return Err(invalid(
                "1F1B needs sends that return before the peer receives (the thread and MPI backends); this backend's wait for the matching receive (NCCL), so use Schedule::GPipe with it".into(),
            ));
        }
        let batch = if first {
            let x = input.ok_or_else(|| invalid("the first stage needs the input batch".into()))?;
            let n = x.shape().first().copied().unwrap_or(0);
            if n < m {
                return Err(invalid(format!("a batch of {n} cannot be split into {m} micro-batches")));
            }
            Some(x)
        } else {
            None
        };

        let start = Instant::now();
        let mut waited = Duration::ZERO;
        let mut live: BTreeMap<usize, Live> = BTreeMap::new();
        let mut stats = PipelineStats { stage: i, num_stages: p, micro_batches: m, bubble_fraction: (p - 1) as f64 / (m + p - 1) as f64, ..Default::default() };
        let mut live_bytes = 0usize;

        let forward = |j: usize, live: &mut BTreeMap<usize, Live>, waited: &mut Duration, stats: &mut PipelineStats, live_bytes: &mut usize| -> DistResult<()> {
            let x = match batch {
                Some(x) => {
                    let n = x.shape()[0];
                    let (a, b) = (j * n / m, (j + 1) * n / m);
                    x.try_narrow(0, a, b - a)?
                }
                None => {
                    let t = Instant::now();
                    let x = g.recv(i - 1)?;
                    *waited += t.elapsed();
                    x.set_requires_grad(true)
                }
            };
            let y = self.stage.forward(&x)?;
            let output = if last {
                let loss = loss_fn(j, &y)?;
                stats.losses.push(loss.to_vec::<f64>().first().copied().unwrap_or(f64::NAN));
                loss
            } else {
                g.send(&y.detach(), i + 1)?;
                y.clone()
            };
            let bytes = bytes_of(&x) + bytes_of(&y);
            stats.activation_bytes_per_micro_batch = stats.activation_bytes_per_micro_batch.max(bytes);
            // `y` itself stays reachable from `output` (the loss's graph) on the last stage.
            live.insert(j, Live { input: x, output, bytes });
            *live_bytes += bytes;
            stats.peak_live_micro_batches = stats.peak_live_micro_batches.max(live.len());
            stats.peak_live_activation_bytes = stats.peak_live_activation_bytes.max(*live_bytes);
            Ok(())
        };

        let backward = |j: usize, live: &mut BTreeMap<usize, Live>, waited: &mut Duration, live_bytes: &mut usize| -> DistResult<()> {
            let Live { input, output, bytes } =
                live.remove(&j).ok_or_else(|| DistError::Invalid { rank: i, op: "Pipeline::step", msg: format!("internal: backward of micro-batch {j} before its forward") })?;
            if last {
                output.try_backward()?;
            } else {
                let t = Instant::now();
                let grad = g.recv(i + 1)?;
                *waited += t.elapsed();
                output.try_backward_opts(Some(&grad), false)?;
            }
            if !first {
                // An input the stage ignored has no gradient: its gradient is zero.
                let gx = input.grad().unwrap_or_else(|| input.zeros_like());
                g.send(&gx, i - 1)?;
            }
            *live_bytes -= bytes;
            Ok(())
        };

        match schedule {
            Schedule::GPipe => {
                for j in 0..m {
                    forward(j, &mut live, &mut waited, &mut stats, &mut live_bytes)?;
                }
                for j in 0..m {
                    backward(j, &mut live, &mut waited, &mut live_bytes)?;
                }
            }
            Schedule::OneFOneB => {
                // Warm-up: stage i runs p - i - 1 forwards before its first backward can arrive.
                let warmup = (p - i - 1).min(m);
                for j in 0..warmup {
                    forward(j, &mut live, &mut waited, &mut stats, &mut live_bytes)?;
                }
                for k in 0..m - warmup {
                    forward(warmup + k, &mut live, &mut waited, &mut stats, &mut live_bytes)?;
                    backward(k, &mut live, &mut waited, &mut live_bytes)?;
                }
                for k in m - warmup..m {
                    backward(k, &mut live, &mut waited, &mut live_bytes)?;
                }
            }
        }
        stats.step_time = start.elapsed();
        stats.wait_fraction = waited.as_secs_f64() / stats.step_time.as_secs_f64().max(1e-12);
        Ok(stats)
    }
}
