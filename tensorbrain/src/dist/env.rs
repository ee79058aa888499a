//! Reading the launcher's environment: `mpirun` (Open MPI's `OMPI_COMM_WORLD_*`, MPICH/PMI's
//! `PMI_*`) or torchrun-style `RANK`/`WORLD_SIZE` (with `MASTER_ADDR`/`MASTER_PORT`/`LOCAL_RANK`
//! for the NCCL backend).

use super::error::{DistError, DistResult};

/// Who launched this process and where it sits in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchEnv {
    pub rank: usize,
    pub world_size: usize,
    /// Which variables said so: "mpirun (OMPI_COMM_WORLD_RANK/SIZE)", ...
    pub launcher: &'static str,
}

/// [`LaunchEnv::launcher`] for torchrun-style variables.
pub const TORCHRUN: &str = "torchrun-style RANK/WORLD_SIZE";

const SOURCES: [(&str, &str, &str); 3] = [
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "mpirun (Open MPI: OMPI_COMM_WORLD_RANK/SIZE)"),
    ("PMI_RANK", "PMI_SIZE", "mpirun (MPICH/PMI: PMI_RANK/PMI_SIZE)"),
    ("RANK", "WORLD_SIZE", TORCHRUN),
];

fn number(var: &str, v: &str) -> DistResult<usize> {
    v.trim().parse::<usize>().map_err(|_| DistError::Env(format!("{var}={v:?} is not a non-negative integer")))
}

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
                    let (rank, world_size) = (number(rank_var, &r)?, number(size_var, &s)?);
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

/// What a torchrun-style launcher tells each process, as the NCCL backend needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorchrunEnv {
    pub rank: usize,
    pub world_size: usize,
    /// This process's CUDA device (`LOCAL_RANK`; `RANK` when unset, as on one host).
    pub local_rank: usize,
    /// Rank 0's host, where the other ranks fetch the NCCL id.
    pub master_addr: String,
    pub master_port: u16,
    /// The port rank 0 hands the NCCL id out on: `TENSORBRAIN_RDZV_PORT`, else `MASTER_PORT`.
    /// torchrun's agent (PyTorch 2.4 and later) already listens on `MASTER_PORT` itself.
    pub rendezvous_port: u16,
}

/// Overrides the rendezvous port (see [`TorchrunEnv::rendezvous_port`]).
pub const RDZV_PORT_ENV: &str = "TENSORBRAIN_RDZV_PORT";

fn port(var: &str, v: &str) -> DistResult<u16> {
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(DistError::Env(format!("{var}={v:?} is not a TCP port (expected 1 to 65535)"))),
    }
}

impl TorchrunEnv {
    /// From this process's environment.
    pub fn from_env() -> DistResult<TorchrunEnv> {
        Self::parse(|k| std::env::var(k).ok())
    }

    /// From any variable lookup (tests pass a map).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> DistResult<TorchrunEnv> {
        const WHAT: &str = "the NCCL backend is launched torchrun-style: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT and optionally LOCAL_RANK, e.g. RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 LOCAL_RANK=0";
        let need = |var: &str| get(var).filter(|v| !v.trim().is_empty()).ok_or_else(|| DistError::Env(format!("{var} is not set; {WHAT}")));
        let (rank, world_size) = (number("RANK", &need("RANK")?)?, number("WORLD_SIZE", &need("WORLD_SIZE")?)?);
        if world_size == 0 || rank >= world_size {
            return Err(DistError::Env(format!("RANK={rank} with WORLD_SIZE={world_size}: expected 0 <= rank < world size")));
        }
        let master_addr = need("MASTER_ADDR")?.trim().to_string();
        let master_port = port("MASTER_PORT", &need("MASTER_PORT")?)?;
        let set = |var: &str| get(var).filter(|v| !v.trim().is_empty());
        let local_rank = set("LOCAL_RANK").map(|v| number("LOCAL_RANK", &v)).transpose()?.unwrap_or(rank);
        let rendezvous_port = set(RDZV_PORT_ENV).map(|v| port(RDZV_PORT_ENV, &v)).transpose()?.unwrap_or(master_port);
        Ok(TorchrunEnv { rank, world_size, local_rank, master_addr, master_port, rendezvous_port })
    }

    /// `MASTER_ADDR:port` where the ranks meet, with an IPv6 address in brackets.
    pub fn rendezvous_addr(&self) -> String {
        if self.master_addr.contains(':') && !self.master_addr.starts_with('[') {
            format!("[{}]:{}", self.master_addr, self.rendezvous_port)
        } else {
            format!("{}:{}", self.master_addr, self.rendezvous_port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| vars.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone())
    }

    const FULL: [(&str, &str); 5] = [("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500"), ("LOCAL_RANK", "0")];

    #[test]
    fn torchrun_env_reads_all_five_variables() {
        let e = TorchrunEnv::parse(env(&FULL)).unwrap();
        assert_eq!(e, TorchrunEnv { rank: 1, world_size: 2, local_rank: 0, master_addr: "10.0.0.1".into(), master_port: 29500, rendezvous_port: 29500 });
        assert_eq!(e.rendezvous_addr(), "10.0.0.1:29500");
        let moved = TorchrunEnv::parse(env(&[FULL.as_slice(), &[(RDZV_PORT_ENV, "29501")]].concat())).unwrap();
        assert_eq!((moved.master_port, moved.rendezvous_addr()), (29500, "10.0.0.1:29501".to_string()));
    }

    #[test]
    fn local_rank_defaults_to_rank_and_ipv6_is_bracketed() {
        let e = TorchrunEnv::parse(env(&[("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "::1"), ("MASTER_PORT", "29500")])).unwrap();
        assert_eq!(e.local_rank, 1);
        assert_eq!(e.rendezvous_addr(), "[::1]:29500");
    }

    #[test]
    fn torchrun_env_names_what_is_missing_or_wrong() {
        let without = |var: &str| TorchrunEnv::parse(env(&FULL.iter().copied().filter(|(k, _)| *k != var).collect::<Vec<_>>())).unwrap_err().to_string();
        for var in ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"] {
            let msg = without(var);
            assert!(msg.contains(&format!("{var} is not set")) && msg.contains("MASTER_PORT=29500"), "{msg}");
        }
        let with = |var: &str, v: &str| {
            let vars: Vec<_> = FULL.iter().map(|&(k, old)| (k, if k == var { v } else { old })).collect();
            TorchrunEnv::parse(env(&vars)).unwrap_err().to_string()
        };
        assert!(with("MASTER_PORT", "0").contains("not a TCP port"));
        assert!(with("MASTER_PORT", "70000").contains("not a TCP port"));
        assert!(with("RANK", "2").contains("expected 0 <= rank < world size"));
        assert!(with("LOCAL_RANK", "gpu0").contains("LOCAL_RANK=\"gpu0\" is not a non-negative integer"));
    }
}
