//! Checkpoints of distributed runs.
//!
//! - Data parallel: the replicas are identical, so rank 0 alone writes an ordinary
//!   [`TrainingCheckpoint`] (all-or-nothing, checksummed) and records in it the world size, the
//!   global batch and how far into the epoch the run was. Any world size can resume it, as long
//!   as the global batch is the same: the sampler shares the rest of the epoch out among the
//!   new ranks. A different global batch would silently change the optimisation, so it is an
//!   error that names both.
//! - Pipeline parallel: each rank holds a different stage, so each writes its own file, named
//!   by its stage and the number of stages. A run with a different number of ranks cannot
//!   use them, and says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ddp::DistributedDataParallel;
use super::error::{DistError, DistResult};
use super::group::ProcessGroup;
use super::sampler::DistributedSampler;
use crate::checkpoint::{DataParallelState, TrainingCheckpoint, TrainingState};
use crate::optim::OptimizerState;
use crate::tensor::Tensor;

impl DistributedDataParallel {
    /// Saves a training checkpoint on rank 0 into `dir` (see [`TrainingCheckpoint::save`]),
    /// recording this world size, `global_batch` and `epoch_position` (samples of the current
    /// epoch trained on, over all ranks), then waits at a barrier so that no rank reads a
    /// half-written checkpoint. Returns the checkpoint's directory on rank 0, `None` elsewhere.
    pub fn save_checkpoint(
        &self,
        dir: &Path,
        model: &[(String, Tensor)],
        optimizer: &OptimizerState,
        state: &TrainingState,
        epoch_position: usize,
        global_batch: usize,
    ) -> DistResult<Option<PathBuf>> {
        let saved = if self.rank() == 0 {
            let mut state = state.clone();
            state.data_parallel = Some(DataParallelState { world_size: self.world_size(), epoch_position, global_batch });
            TrainingCheckpoint::save(dir, model, optimizer, &state).map(Some)
        } else {
            Ok(None)
        };
        // Barrier even if saving failed, so the other ranks are not left waiting; then report.
        let barrier = self.with_group(|g| g.barrier())?;
        let saved = saved?;
        barrier?;
        Ok(saved)
    }
}

/// Positions `sampler` where `state` stopped (its epoch, and the position within it), checking
/// that this run's global batch is the one the checkpoint was trained with. A checkpoint from a
/// single-process run resumes at the start of its epoch.
pub fn resume_sampler(sampler: &mut DistributedSampler, state: &TrainingState, world_size: usize, global_batch: usize) -> DistResult<()> {
    sampler.set_epoch(state.epoch as u64);
    let Some(dp) = &state.data_parallel else {
        return Ok(());
    };
    if dp.global_batch != global_batch {
        return Err(DistError::Invalid {
            rank: sampler.rank(),
            op: "resume",
            msg: format!(
                "the checkpoint was trained with a global batch of {} ({} ranks × {}), this run has {global_batch} ({world_size} ranks × {}); \
                 resume with the same global batch, whatever the world size ({} per rank on {world_size} ranks): another one changes the step size and the data order",
                dp.global_batch,
                dp.world_size,
                dp.global_batch / dp.world_size.max(1),
                global_batch / world_size.max(1),
                if dp.global_batch % world_size == 0 { (dp.global_batch / world_size).to_string() } else { format!("{}/{world_size}, which does not divide", dp.global_batch) },
            ),
        });
    }
    sampler.set_position(dp.epoch_position)
}

const STAGES_KEY: &str = "tensorbrain.pipeline_stages";
const STAGE_KEY: &str = "tensorbrain.pipeline_stage";

fn stage_file(dir: &Path, stage: usize, stages: usize) -> PathBuf {
    dir.join(format!("stage-{stage}-of-{stages}.safetensors"))
}

/// Writes this rank's pipeline stage (its `state_dict`) to `dir/stage-<rank>-of-<world>.safetensors`
/// atomically, then waits at a barrier so the checkpoint is complete on return.
pub fn save_pipeline_stage(group: &dyn ProcessGroup, dir: &Path, stage: &[(String, Tensor)]) -> DistResult<PathBuf> {
    let (rank, world) = (group.rank(), group.world_size());
    let path = stage_file(dir, rank, world);
    let saved = (|| {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::Io { context: format!("cannot create {}", dir.display()), source: e })?;
        let meta = HashMap::from([(STAGES_KEY.to_string(), world.to_string()), (STAGE_KEY.to_string(), rank.to_string())]);
        let bytes = crate::checkpoint::to_safetensors_bytes(stage, Some(meta))?;
        crate::checkpoint::write_atomically(&path, &bytes)
    })();
    let barrier = group.barrier();
    saved?;
    barrier?;
    Ok(path)
}

/// Reads this rank's stage from a checkpoint written by [`save_pipeline_stage`]. A checkpoint
/// of a pipeline with another number of stages is an error naming both numbers.
pub fn load_pipeline_stage(group: &dyn ProcessGroup, dir: &Path) -> DistResult<HashMap<String, Tensor>> {
    let (rank, world) = (group.rank(), group.world_size());
    let path = stage_file(dir, rank, world);
    let invalid = |msg: String| DistError::Invalid { rank, op: "load_pipeline_stage", msg };
    if !path.is_file() {
        let found = saved_stage_count(dir);
        return Err(invalid(match found {
            Some(n) if n != world => format!(
                "{} holds a pipeline of {n} stages, but this run has {world} ranks (one stage per rank): launch {n} ranks, or split the model into {world} stages and train afresh",
                dir.display()
            ),
            _ => format!("{} is missing: expected stage {rank} of {world} there (written by save_pipeline_stage)", path.display()),
        }));
    }
    let (tensors, meta) = crate::checkpoint::load_safetensors_with_metadata(&path)?;
    let recorded = (meta.get(STAGES_KEY).and_then(|v| v.parse::<usize>().ok()), meta.get(STAGE_KEY).and_then(|v| v.parse::<usize>().ok()));
    if recorded != (Some(world), Some(rank)) {
        return Err(invalid(format!(
            "{} records stage {:?} of {:?}, expected stage {rank} of {world}: the file was renamed or is not a pipeline stage",
            path.display(),
            recorded.1,
            recorded.0
        )));
    }
    Ok(tensors)
}

/// The number of stages of the pipeline checkpoint in `dir`, from its file names.
fn saved_stage_count(dir: &Path) -> Option<usize> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).find_map(|name| {
        let rest = name.strip_prefix("stage-")?.strip_suffix(".safetensors")?;
        rest.split_once("-of-")?.1.parse().ok()
    })
}
