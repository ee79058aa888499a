//! Training checkpoints: everything needed to resume a run exactly where it stopped.
//!
//! A training checkpoint is a directory of two safetensors files, saved all-or-nothing by a
//! [`CheckpointDir`] (a new directory per save, committed by one rename, with the files'
//! SHA-256s in `SHA256SUMS`):
//! - `model.safetensors`: parameters and buffers under the names a PyTorch model with the same
//!   fields has (`fc1.weight`), so `model.load_state_dict(safetensors.torch.load_file(..))`
//!   works as is;
//! - `training_state.safetensors`: the optimizer's state tensors, with the optimizer's
//!   hyperparameters, the scheduler, the epoch and step counters, the random generator's
//!   position, the loss scale and the history so far as metadata.
//!
//! Both files carry the same save id, which [`TrainingCheckpoint::load`] checks. That matters
//! for the flat layout of earlier TensorBrain versions, which it still reads: both files
//! directly in the run's directory, each replaced on its own, so that a save cut off between
//! the two left files of different saves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checksums;
use super::store::CheckpointDir;
use super::{from_safetensors_bytes_with_metadata, to_safetensors_bytes};
use crate::optim::OptimizerState;
use crate::tensor::{Error, Result, Tensor};
use crate::train::{History, ScalerState};

pub const MODEL_FILE: &str = "model.safetensors";
pub const STATE_FILE: &str = "training_state.safetensors";

const ID_KEY: &str = "tensorbrain.save_id";
const STATE_KEY: &str = "tensorbrain.training_state";
const FORMAT: u32 = 1;

/// The counters and small state of a run (saved as JSON metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    pub format: u32,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// The default generator's `(seed, position)` (dropout masks, random init).
    pub rng_seed: u64,
    pub rng_position: String,
    /// The scheduler's `state_dict` as metadata, if the run has a scheduler.
    pub scheduler: Option<HashMap<String, String>>,
    /// Dynamic loss scaling, if on.
    pub scaler: Option<ScalerState>,
    pub history: History,
    /// Where a data-parallel run stood (absent in single-process checkpoints and in those
    /// written before it existed).
    #[serde(default)]
    pub data_parallel: Option<DataParallelState>,
}

/// What a data-parallel run needs to resume mid-epoch, under any world size: see
/// `dist::DistributedSampler::set_position`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataParallelState {
    /// Ranks of the run that saved.
    pub world_size: usize,
    /// Samples of the current epoch's global order (all ranks) already trained on.
    pub epoch_position: usize,
    /// Samples per optimizer step over all ranks.
    pub global_batch: usize,
}

impl TrainingState {
    pub fn new(epoch: usize, step: u64, rng: (u64, u128), history: History) -> TrainingState {
        TrainingState { format: FORMAT, epoch, step, rng_seed: rng.0, rng_position: rng.1.to_string(), scheduler: None, scaler: None, history, data_parallel: None }
    }

    pub fn rng(&self) -> Result<(u64, u128)> {
        let pos = self.rng_position.parse().map_err(|_| Error::Msg(format!("training state: bad generator position '{}'", self.rng_position)))?;
        Ok((self.rng_seed, pos))
    }
}

/// A loaded checkpoint.
pub struct TrainingCheckpoint {
    pub model: HashMap<String, Tensor>,
    pub optimizer: OptimizerState,
    pub state: TrainingState,
    /// The directory the files were read from.
    pub path: PathBuf,
}

fn save_id(state: &TrainingState) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("epoch{}-step{}-{}-{}", state.epoch, state.step, std::process::id(), nanos)
}

impl TrainingCheckpoint {
    /// Saves a checkpoint as the newest of `dir` (created if missing), keeping the last
    /// [`DEFAULT_KEEP_LAST`](super::DEFAULT_KEEP_LAST); see [`TrainingCheckpoint::save_to`].
    pub fn save(dir: &Path, model: &[(String, Tensor)], optimizer: &OptimizerState, state: &TrainingState) -> Result<PathBuf> {
        Self::save_to(&CheckpointDir::new(dir), model, optimizer, state)
    }

    /// Saves a checkpoint into `store` all-or-nothing and returns its directory
    /// (`ckpt-<number>-epoch<epoch>`). If the save fails part-way, the checkpoints already
    /// there are untouched.
    pub fn save_to(store: &CheckpointDir, model: &[(String, Tensor)], optimizer: &OptimizerState, state: &TrainingState) -> Result<PathBuf> {
        let id = save_id(state);
        let model_bytes = to_safetensors_bytes(model, Some(HashMap::from([(ID_KEY.to_string(), id.clone())])))?;
        let mut meta = optimizer.metadata();
        meta.insert(ID_KEY.to_string(), id);
        let json = serde_json::to_string(state).map_err(|e| Error::Msg(format!("cannot encode the training state: {e}")))?;
        meta.insert(STATE_KEY.to_string(), json);
        let state_bytes = to_safetensors_bytes(&optimizer.to_tensors(), Some(meta))?;
        store.save(&format!("epoch{}", state.epoch), &[(MODEL_FILE, &model_bytes), (STATE_FILE, &state_bytes)])
    }

    /// Reads the newest checkpoint under `path`: the newest committed `ckpt-*` directory of a
    /// run's directory, or, when there are none, the checkpoint files in `path` itself (a
    /// `ckpt-*` directory given directly, or the flat layout of earlier versions). Files are
    /// checked against their SHA-256s when the checkpoint lists them. Missing, corrupt,
    /// truncated or mismatched files are errors that name the file. Temporaries left by
    /// killed saves are removed on the way.
    pub fn load(path: &Path) -> Result<TrainingCheckpoint> {
        let store = CheckpointDir::new(path);
        store.remove_stale_temporaries();
        let committed = store.list()?;
        let Some(newest) = committed.last() else {
            return Self::load_files(path);
        };
        Self::load_files(newest).map_err(|e| match committed.len() {
            1 => e,
            n => Error::Msg(format!("{e}\n(an older checkpoint is {}: to resume from it, pass that path)", committed[n - 2].display())),
        })
    }

    /// Reads the two files of one checkpoint in `dir`.
    fn load_files(dir: &Path) -> Result<TrainingCheckpoint> {
        let model_path = dir.join(MODEL_FILE);
        let state_path = dir.join(STATE_FILE);
        if !model_path.is_file() && !state_path.is_file() {
            return Err(Error::Msg(format!(
                "{} is not a training checkpoint: it has no ckpt-* checkpoint directories, and {MODEL_FILE} is missing",
                dir.display()
            )));
        }
        for p in [&model_path, &state_path] {
            if !p.is_file() {
                return Err(Error::Msg(format!("{} is not a training checkpoint: {} is missing", dir.display(), p.display())));
            }
        }
        let sums = checksums::read(dir)?;
        let read = |path: &PathBuf, name: &str| -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
            let bytes = std::fs::read(path).map_err(|e| Error::Io { context: format!("cannot read checkpoint {}", path.display()), source: e })?;
            // Parse first: "truncated: ..." says more than a checksum mismatch would.
            let parsed = from_safetensors_bytes_with_metadata(&bytes).map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
            if let Some(sums) = &sums {
                checksums::verify(sums, dir, name, &bytes)?;
            }
            Ok(parsed)
        };
        let (model, model_meta) = read(&model_path, MODEL_FILE)?;
        let (tensors, meta) = read(&state_path, STATE_FILE)?;
        let bad = |p: &PathBuf, what: String| Error::Msg(format!("{}: {what}", p.display()));
        let model_id = model_meta.get(ID_KEY).ok_or_else(|| bad(&model_path, format!("no '{ID_KEY}' metadata: not written by a TensorBrain training checkpoint")))?;
        let state_id = meta.get(ID_KEY).ok_or_else(|| bad(&state_path, format!("no '{ID_KEY}' metadata: not written by a TensorBrain training checkpoint")))?;
        if model_id != state_id {
            return Err(Error::Msg(format!(
                "{}: {MODEL_FILE} (save {model_id}) and {STATE_FILE} (save {state_id}) come from different saves; \
                 the save was interrupted between the two files, so this checkpoint cannot be resumed exactly",
                dir.display()
            )));
        }
        let json = meta.get(STATE_KEY).ok_or_else(|| bad(&state_path, format!("no '{STATE_KEY}' metadata")))?;
        let state: TrainingState = serde_json::from_str(json).map_err(|e| bad(&state_path, format!("the training state is not valid: {e}")))?;
        if state.format != FORMAT {
            return Err(bad(&state_path, format!("checkpoint format {} (this TensorBrain reads format {FORMAT})", state.format)));
        }
        let optimizer = OptimizerState::from_tensors(tensors, &meta).map_err(|e| bad(&state_path, e.to_string()))?;
        Ok(TrainingCheckpoint { model, optimizer, state, path: dir.to_path_buf() })
    }
}
