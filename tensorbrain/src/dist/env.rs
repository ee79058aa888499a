//! Reading the launcher's environment: `mpirun` (Open MPI's `OMPI_COMM_WORLD_*`, MPICH/PMI's
//! `PMI_*`) or torchrun-style `RANK`/`WORLD_SIZE`.

use super::error::{DistError, DistResult};
use super::group::ProcessGroup;

/// Who launched this process and where it sits in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchEnv {
    pub rank: usize,
    pub world_size: usize,
    /// Which variables said so: "mpirun (OMPI_COMM_WORLD_RANK/SIZE)", ...
    pub launcher: &'static str,
}

const SOURCES: [(&str, &str, &str); 3] = [
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "mpirun (Open MPI: OMPI_COMM_WORLD_RANK/SIZE)"),
    ("PMI_RANK", "PMI_SIZE", "mpirun (MPICH/PMI: PMI_RANK/PMI_SIZE)"),
    ("RANK", "WORLD_SIZE", "torchrun-style RANK/WORLD_SIZE"),
];

impl LaunchEnv {
    /// From this process's environment.
    pub fn from_env() -> DistResult<LaunchEnv> {
        Self::parse(|k| std::env::var(k).ok())
    }

    /// From any variable lookup (tests pass a map).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> DistResult<LaunchEnv> {
        for (rank_var, size_var, launcher) in SOURCES {
            match (get(rank_var), get(size_var)) {
                (None, None) => continue,
                (Some(_), None) => return Err(DistError::Env(format!("{rank_var} is set but {size_var} is missing; the launcher must set both"))),
                (None, Some(_)) => return Err(DistError::Env(format!("{size_var} is set but {rank_var} is missing; the launcher must set both"))),
                (Some(r), Some(s)) => {
                    let num = |var: &str, v: &str| v.trim().parse::<usize>().map_err(|_| DistError::Env(format!("{var}={v:?} is not a non-negative integer")));
                    let (rank, world_size) = (num(rank_var, &r)?, num(size_var, &s)?);
                    if world_size == 0 || rank >= world_size {
                        return Err(DistError::Env(format!("{rank_var}={rank} with {size_var}={world_size}: expected 0 <= rank < world size")));
                    }
                    return Ok(LaunchEnv { rank, world_size, launcher });
                }
            }
        }
        Err(DistError::Env(
            "no launcher environment found: expected OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE (mpirun -np N), PMI_RANK and PMI_SIZE (MPICH), or RANK and WORLD_SIZE (torchrun-style); for ranks as threads in one process use ThreadGroup::new".into(),
        ))
    }
}

/// The process group this process was launched into.
///
/// One rank (`WORLD_SIZE=1`, or no launcher at all is an error — say which you meant) gets a
/// single-rank in-process group; several ranks need the `mpi` feature and an MPI launcher,
/// because processes need a real transport between them.
pub fn init() -> DistResult<Box<dyn ProcessGroup>> {
    let env = LaunchEnv::from_env()?;
    if env.world_size == 1 {
        let g = super::thread::ThreadGroup::new(1).pop().expect("one rank");
        return Ok(Box::new(g));
    }
    init_multi(env)
}

#[cfg(feature = "mpi")]
fn init_multi(env: LaunchEnv) -> DistResult<Box<dyn ProcessGroup>> {
    let g = super::mpi::MpiGroup::init()?;
    if g.rank() != env.rank || g.world_size() != env.world_size {
        return Err(DistError::Env(format!(
            "{} says rank {} of {}, but MPI says rank {} of {}; launch with mpirun so both agree",
            env.launcher,
            env.rank,
            env.world_size,
            g.rank(),
            g.world_size()
        )));
    }
    Ok(Box::new(g))
}

#[cfg(not(feature = "mpi"))]
fn init_multi(env: LaunchEnv) -> DistResult<Box<dyn ProcessGroup>> {
    Err(DistError::Env(format!(
        "{} describes {} ranks, but this build has no multi-process transport: rebuild with `--features mpi` (needs an MPI library, e.g. apt-get install openmpi-bin libopenmpi-dev) and launch with mpirun -np {}",
        env.launcher, env.world_size, env.world_size
    )))
}
