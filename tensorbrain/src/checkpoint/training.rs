//! Training checkpoints: everything needed to resume a run exactly where it stopped.
//!
//! A checkpoint is a directory of two safetensors files, each written atomically:
//! - `model.safetensors`: parameters and buffers under the names a PyTorch model with the same
//!   fields has (`fc1.weight`), so `model.load_state_dict(safetensors.torch.load_file(..))`
//!   works as is;
//! - `training_state.safetensors`: the optimizer's state tensors, with the optimizer's
//!   hyperparameters, the scheduler, the epoch and step counters, the random generator's
//!   position, the loss scale and the history so far as metadata.
//!
//! Both files carry the same save id. The model file is written first, so a save cut off
//! between the two leaves files with different ids, which [`TrainingCheckpoint::load`] reports
//! instead of resuming from a mixture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{load_safetensors_with_metadata, to_safetensors_bytes, write_atomically};
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
}

impl TrainingState {
    pub fn new(epoch: usize, step: u64, rng: (u64, u128), history: History) -> TrainingState {
        TrainingState { format: FORMAT, epoch, step, rng_seed: rng.0, rng_position: rng.1.to_string(), scheduler: None, scaler: None, history }
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
}

fn save_id(state: &TrainingState) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("epoch{}-step{}-{}-{}", state.epoch, state.step, std::process::id(), nanos)
}

impl TrainingCheckpoint {
    /// Writes a checkpoint into `dir` (created if missing), replacing any checkpoint there.
    pub fn save(dir: &Path, model: &[(String, Tensor)], optimizer: &OptimizerState, state: &TrainingState) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io { context: format!("cannot create checkpoint directory {}", dir.display()), source: e })?;
        let id = save_id(state);
        let model_bytes = to_safetensors_bytes(model, Some(HashMap::from([(ID_KEY.to_string(), id.clone())])))?;
        let mut meta = optimizer.metadata();
        meta.insert(ID_KEY.to_string(), id);
        let json = serde_json::to_string(state).map_err(|e| Error::Msg(format!("cannot encode the training state: {e}")))?;
        meta.insert(STATE_KEY.to_string(), json);
        let state_bytes = to_safetensors_bytes(&optimizer.to_tensors(), Some(meta))?;
        write_atomically(&dir.join(MODEL_FILE), &model_bytes)?;
        write_atomically(&dir.join(STATE_FILE), &state_bytes)
    }

    /// Reads a checkpoint written by [`TrainingCheckpoint::save`]. Missing, corrupt, truncated
    /// or mismatched files are errors that name the file.
    pub fn load(dir: &Path) -> Result<TrainingCheckpoint> {
        let model_path = dir.join(MODEL_FILE);
        let state_path = dir.join(STATE_FILE);
        for p in [&model_path, &state_path] {
            if !p.is_file() {
                return Err(Error::Msg(format!("{} is not a training checkpoint: {} is missing", dir.display(), p.display())));
            }
        }
        let (model, model_meta) = load_safetensors_with_metadata(&model_path)?;
        let (tensors, meta) = load_safetensors_with_metadata(&state_path)?;
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
        Ok(TrainingCheckpoint { model, optimizer, state })
    }
}
