//! [`init`]: the process group a launched process belongs to, and which backend carries it.
//!
//! The choice, in order:
//!
//! 1. `TENSORBRAIN_DIST_BACKEND=mpi|nccl|threads` forces a backend (an error if this build
//!    lacks it, or if `threads` is asked to span several processes).
//! 2. One rank: a single-rank in-process group; there is nobody to talk to.
//! 3. NCCL, when all of these hold: the build has the `cuda` feature, the launcher is
//!    torchrun-style (`RANK`/`WORLD_SIZE`) with `MASTER_ADDR` set, and the CUDA driver sees a
//!    device. This is what `torchrun` gives a GPU job.
//! 4. Otherwise MPI (the `mpi` feature, under `mpirun`), or an error saying what to rebuild
//!    or launch with and why NCCL was not used.

use super::env::{LaunchEnv, TORCHRUN};
use super::error::{DistError, DistResult};
use super::group::ProcessGroup;

/// Forces a backend: `mpi`, `nccl` or `threads`.
pub const BACKEND_ENV: &str = "TENSORBRAIN_DIST_BACKEND";

/// The transports [`init`] can choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A single-rank group in this process.
    Threads,
    Mpi,
    Nccl,
}

/// What the choice depends on. [`init`] reads it from the process; tests make their own.
pub(crate) struct Facts<'a> {
    pub forced: Option<&'a str>,
    pub launch: &'a LaunchEnv,
    pub master_addr_set: bool,
    pub cuda_built: bool,
    pub mpi_built: bool,
    /// The number of CUDA devices, or why there are none; asked only when NCCL is otherwise
    /// possible, so an MPI job never loads the CUDA driver.
    pub cuda_devices: &'a dyn Fn() -> Result<usize, String>,
}

pub(crate) fn choose(f: &Facts) -> DistResult<Backend> {
    if let Some(forced) = f.forced.map(str::trim).filter(|v| !v.is_empty()) {
        return forced_backend(forced, f);
    }
    if f.launch.world_size == 1 {
        return Ok(Backend::Threads);
    }
    let why_not_nccl = match nccl_unavailable(f) {
        None => return Ok(Backend::Nccl),
        Some(why) => why,
    };
    if f.mpi_built {
        return Ok(Backend::Mpi);
    }
    Err(DistError::Env(format!(
        "{} describes {} ranks, but this build has no transport for them: NCCL is not used because {why_not_nccl}, and MPI needs `--features mpi` (an MPI library, e.g. apt-get install openmpi-bin libopenmpi-dev) and launching with mpirun -np {}",
        f.launch.launcher, f.launch.world_size, f.launch.world_size
    )))
}

fn forced_backend(forced: &str, f: &Facts) -> DistResult<Backend> {
    let lacks = |feature: &str| DistError::Env(format!("{BACKEND_ENV}={forced}, but this build lacks the `{feature}` feature; rebuild with `--features {feature}`"));
    match forced.to_ascii_lowercase().as_str() {
        "threads" if f.launch.world_size == 1 => Ok(Backend::Threads),
        "threads" => Err(DistError::Env(format!(
            "{BACKEND_ENV}=threads makes ranks threads of one process, but {} describes {} processes; for ranks as threads use dist::run_threads or ThreadGroup::new",
            f.launch.launcher, f.launch.world_size
        ))),
        "mpi" if f.mpi_built => Ok(Backend::Mpi),
        "mpi" => Err(lacks("mpi")),
        "nccl" if f.cuda_built => Ok(Backend::Nccl),
        "nccl" => Err(lacks("cuda")),
        _ => Err(DistError::Env(format!(
            "{BACKEND_ENV}={forced:?} is not a backend: expected mpi, nccl or threads, or leave it unset to choose from the launcher's environment"
        ))),
    }
}

/// Why NCCL is not the automatic choice, or `None` when it is.
fn nccl_unavailable(f: &Facts) -> Option<String> {
    if !f.cuda_built {
        return Some("this build lacks the `cuda` feature".into());
    }
    if f.launch.launcher != TORCHRUN {
        return Some(format!("the launcher is {} (NCCL is used under torchrun-style RANK/WORLD_SIZE with MASTER_ADDR)", f.launch.launcher));
    }
    if !f.master_addr_set {
        return Some("MASTER_ADDR is not set (rank 0's host, where the ranks meet)".into());
    }
    match (f.cuda_devices)() {
        Ok(0) => Some("the CUDA driver sees no device".into()),
        Ok(_) => None,
        Err(why) => Some(format!("there is no CUDA device: {why}")),
    }
}

/// The process group this process was launched into, on the backend chosen as described in
/// the module docs.
///
/// No launcher at all is an error (say which you meant); one rank gets a single-rank
/// in-process group; several ranks need NCCL (`cuda` feature, torchrun-style launch, a GPU)
/// or MPI (`mpi` feature, `mpirun`), because processes need a real transport between them.
pub fn init() -> DistResult<Box<dyn ProcessGroup>> {
    let launch = LaunchEnv::from_env()?;
    let forced = std::env::var(BACKEND_ENV).ok();
    let facts = Facts {
        forced: forced.as_deref(),
        launch: &launch,
        master_addr_set: std::env::var_os("MASTER_ADDR").is_some_and(|v| !v.is_empty()),
        cuda_built: cfg!(feature = "cuda"),
        mpi_built: cfg!(feature = "mpi"),
        cuda_devices: &cuda_devices,
    };
    match choose(&facts)? {
        // choose() picks threads for a world of one only.
        Backend::Threads => Ok(Box::new(super::thread::ThreadGroup::new(1).pop().expect("ThreadGroup::new(1) has one rank"))),
        Backend::Mpi => init_mpi(launch),
        Backend::Nccl => init_nccl(),
    }
}

#[cfg(feature = "cuda")]
fn cuda_devices() -> Result<usize, String> {
    tensorbrain_kernels::cuda::driver::device_count().map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn cuda_devices() -> Result<usize, String> {
    Err("built without the `cuda` feature".into())
}

#[cfg(feature = "cuda")]
fn init_nccl() -> DistResult<Box<dyn ProcessGroup>> {
    let env = super::env::TorchrunEnv::from_env()?;
    Ok(Box::new(super::nccl::NcclGroup::init_with(&env, super::group::DEFAULT_TIMEOUT)?))
}

#[cfg(not(feature = "cuda"))]
fn init_nccl() -> DistResult<Box<dyn ProcessGroup>> {
    Err(DistError::Env("the NCCL backend needs the `cuda` feature; rebuild with `--features cuda`".into()))
}

#[cfg(feature = "mpi")]
fn init_mpi(env: LaunchEnv) -> DistResult<Box<dyn ProcessGroup>> {
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
fn init_mpi(env: LaunchEnv) -> DistResult<Box<dyn ProcessGroup>> {
    Err(DistError::Env(format!(
        "{} describes {} ranks, and MPI was asked for, but this build lacks the `mpi` feature; rebuild with `--features mpi` and launch with mpirun -np {}",
        env.launcher, env.world_size, env.world_size
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(world_size: usize, launcher: &'static str) -> LaunchEnv {
        LaunchEnv { rank: 0, world_size, launcher }
    }

    const MPIRUN: &str = "mpirun (Open MPI: OMPI_COMM_WORLD_RANK/SIZE)";

    /// A build with both features, a torchrun-style launch of 2 ranks and one GPU: NCCL.
    fn gpu_job<'a>(l: &'a LaunchEnv, gpus: &'a dyn Fn() -> Result<usize, String>) -> Facts<'a> {
        Facts { forced: None, launch: l, master_addr_set: true, cuda_built: true, mpi_built: true, cuda_devices: gpus }
    }

    #[test]
    fn torchrun_with_master_addr_and_a_gpu_gets_nccl() {
        let l = launch(2, TORCHRUN);
        assert_eq!(choose(&gpu_job(&l, &|| Ok(1))).unwrap(), Backend::Nccl);
    }

    #[test]
    fn without_any_nccl_condition_mpi_is_kept() {
        let (torchrun, mpirun) = (launch(2, TORCHRUN), launch(2, MPIRUN));
        assert_eq!(choose(&Facts { cuda_built: false, ..gpu_job(&torchrun, &|| Ok(1)) }).unwrap(), Backend::Mpi);
        assert_eq!(choose(&gpu_job(&mpirun, &|| panic!("an MPI launch must not probe CUDA"))).unwrap(), Backend::Mpi);
        assert_eq!(choose(&Facts { master_addr_set: false, ..gpu_job(&torchrun, &|| Ok(1)) }).unwrap(), Backend::Mpi);
        assert_eq!(choose(&gpu_job(&torchrun, &|| Ok(0))).unwrap(), Backend::Mpi);
        assert_eq!(choose(&gpu_job(&torchrun, &|| Err("no CUDA driver found (libcuda.so.1)".into()))).unwrap(), Backend::Mpi);
    }

    #[test]
    fn no_transport_says_why_nccl_was_not_used() {
        let l = launch(2, TORCHRUN);
        let f = Facts { mpi_built: false, ..gpu_job(&l, &|| Err("no CUDA driver found (libcuda.so.1): dlopen failed".into())) };
        let msg = choose(&f).unwrap_err().to_string();
        assert!(msg.contains("NCCL is not used because there is no CUDA device: no CUDA driver found (libcuda.so.1)"), "{msg}");
        assert!(msg.contains("--features mpi") && msg.contains("mpirun -np 2"), "{msg}");
    }

    #[test]
    fn one_rank_needs_no_transport() {
        let l = launch(1, TORCHRUN);
        assert_eq!(choose(&gpu_job(&l, &|| panic!("one rank must not probe CUDA"))).unwrap(), Backend::Threads);
    }

    #[test]
    fn the_backend_can_be_forced_and_a_bad_value_is_named() {
        let (one, two) = (launch(1, TORCHRUN), launch(2, MPIRUN));
        let forced = |l: &LaunchEnv, v: &str, cuda_built: bool, mpi_built: bool| choose(&Facts { forced: Some(v), cuda_built, mpi_built, ..gpu_job(l, &|| Ok(1)) });
        assert_eq!(forced(&two, "nccl", true, true).unwrap(), Backend::Nccl);
        assert_eq!(forced(&one, " MPI ", true, true).unwrap(), Backend::Mpi);
        assert_eq!(forced(&one, "threads", true, true).unwrap(), Backend::Threads);
        assert!(forced(&two, "threads", true, true).unwrap_err().to_string().contains("dist::run_threads"));
        assert!(forced(&two, "nccl", false, true).unwrap_err().to_string().contains("--features cuda"));
        assert!(forced(&two, "mpi", true, false).unwrap_err().to_string().contains("--features mpi"));
        let bad = forced(&two, "gloo", true, true).unwrap_err().to_string();
        assert!(bad.contains("TENSORBRAIN_DIST_BACKEND=\"gloo\" is not a backend: expected mpi, nccl or threads"), "{bad}");
        // Empty counts as unset: the mpirun launch keeps MPI.
        assert_eq!(forced(&two, "", true, true).unwrap(), Backend::Mpi);
    }
}
