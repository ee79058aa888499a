//! The NCCL backend (feature `cuda`).
//!
//!     cargo test -p tensorbrain --features cuda --test dist_nccl                # any machine
//!     cargo test -p tensorbrain --features cuda --test dist_nccl -- --ignored   # needs a GPU
//!
//! Without a GPU, starting the backend must be an error that says what is missing, never a
//! panic. The ignored test starts this binary again as two ranks, torchrun-style, and checks
//! the collectives across the process boundary. It has never run (no GPU where it was written).
#![cfg(feature = "cuda")]

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tensorbrain::dist::{DistError, NcclGroup, ProcessGroup, ReduceOp, TorchrunEnv};
use tensorbrain::Tensor;
use tensorbrain_kernels::cuda::driver::device_count;
use tensorbrain_kernels::cuda::nccl::load_nccl;

/// Set in the processes these tests start, to the test they should run as a rank.
const CHILD: &str = "TB_NCCL_TEST_CHILD";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs this test binary's test `name` with `vars` set.
fn spawn(name: &str, vars: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args(["--exact", name, "--nocapture", "--test-threads", "1", "--include-ignored"]).env(CHILD, name);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start a rank")
}

/// Waits up to `limit` for `child`, killing it past that.
fn wait(mut child: Child, limit: Duration, what: &str) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} failed: {status}");
            return;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn without_cuda_or_nccl_init_is_an_error_that_says_what_is_missing() {
    let port = free_port();
    let env = TorchrunEnv { rank: 0, world_size: 1, local_rank: 0, master_addr: "127.0.0.1".into(), master_port: port, rendezvous_port: port };
    let got = std::panic::catch_unwind(|| NcclGroup::init_with(&env, Duration::from_secs(20)).map(|g| g.world_size()));
    let got = got.expect("NcclGroup::init_with panicked; it must return an error instead");
    // What must be missing depends on the machine: the driver, a device, NCCL, or nothing.
    let expected = match device_count() {
        Err(no_driver) => format!("opening CUDA device 0 (LOCAL_RANK): {no_driver}"),
        Ok(0) => "opening CUDA device 0 (LOCAL_RANK): CUDA device 0 does not exist".to_string(),
        Ok(_) => match load_nccl() {
            Err(no_nccl) => format!("loading NCCL: {no_nccl}"),
            Ok(_) => {
                assert_eq!(got.expect("one rank on a GPU machine with NCCL"), 1);
                return;
            }
        },
    };
    let err = got.expect_err("no GPU or no NCCL");
    assert!(matches!(err, DistError::Env(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("dist::init: NCCL backend, rank 0: ") && msg.ends_with(&expected), "{msg}\nexpected it to end with: {expected}");
}

/// `dist::init()` under a torchrun-style environment with the NCCL backend forced, in a
/// process of its own (the environment is per process).
#[test]
fn dist_init_with_nccl_forced_reports_the_missing_gpu() {
    const NAME: &str = "dist_init_with_nccl_forced_reports_the_missing_gpu";
    if device_count().is_ok_and(|n| n > 0) {
        eprintln!("skipped: this machine has a GPU, so a forced NCCL launch of 2 ranks would wait for a second rank");
        return;
    }
    if std::env::var(CHILD).as_deref() == Ok(NAME) {
        let err = tensorbrain::dist::init().err().expect("no GPU here");
        let msg = err.to_string();
        assert!(msg.starts_with("dist::init: NCCL backend, rank 0: opening CUDA device 0 (LOCAL_RANK): "), "{msg}");
        return;
    }
    let vars = [
        ("RANK", "0".to_string()),
        ("WORLD_SIZE", "2".to_string()),
        ("MASTER_ADDR", "127.0.0.1".to_string()),
        ("MASTER_PORT", free_port().to_string()),
        ("TENSORBRAIN_DIST_BACKEND", "nccl".to_string()),
    ];
    wait(spawn(NAME, &vars), Duration::from_secs(60), "the forced-NCCL process");
}

// ---- Needs a GPU. Never run yet. ----

const TWO_RANKS: &str = "two_ranks_on_nccl";

#[test]
#[ignore = "needs a CUDA device"]
fn two_ranks_on_nccl() {
    if std::env::var(CHILD).as_deref() == Ok(TWO_RANKS) {
        return on_a_rank();
    }
    let gpus = device_count().expect("a CUDA driver");
    assert!(gpus > 0, "no CUDA device");
    let port = free_port().to_string();
    let ranks: Vec<Child> = (0..2)
        .map(|rank| {
            let mut vars = vec![
                ("RANK", rank.to_string()),
                ("WORLD_SIZE", "2".to_string()),
                ("MASTER_ADDR", "127.0.0.1".to_string()),
                ("MASTER_PORT", port.clone()),
                ("LOCAL_RANK", if gpus >= 2 { rank } else { 0 }.to_string()),
            ];
            if gpus == 1 {
                // NCCL refuses two ranks on one GPU of one host ("Duplicate GPU detected").
                // Distinct host ids make the ranks look like two hosts, talking over sockets.
                vars.push(("NCCL_HOSTID", format!("tensorbrain-test-rank-{rank}")));
                vars.push(("NCCL_IB_DISABLE", "1".to_string()));
                vars.push(("NCCL_SOCKET_IFNAME", "lo".to_string()));
            }
            spawn(TWO_RANKS, &vars)
        })
        .collect();
    for (rank, child) in ranks.into_iter().enumerate() {
        wait(child, Duration::from_secs(300), &format!("rank {rank}"));
    }
}

fn on_a_rank() {
    // The automatic choice: torchrun-style variables, MASTER_ADDR and a GPU mean NCCL.
    let mut group = tensorbrain::dist::init().expect("NCCL process group");
    let (rank, world) = (group.rank(), group.world_size());
    assert_eq!(world, 2);
    let r = rank as f32;
    // 7 elements and 600,000 (2.4 MB: several NCCL chunks).
    for n in [7usize, 600_000] {
        let t = Tensor::from_vec((0..n).map(|i| r * 10.0 + (i % 97) as f32).collect::<Vec<f32>>(), &[n]);
        group.all_reduce(&t, ReduceOp::Sum).unwrap();
        assert!(t.to_vec::<f32>().iter().enumerate().all(|(i, &v)| v == 10.0 + 2.0 * (i % 97) as f32), "all_reduce of {n}");
    }
    let avg = Tensor::from_vec(vec![rank as f64; 5], &[5]);
    group.all_reduce(&avg, ReduceOp::Avg).unwrap();
    assert_eq!(avg.to_vec::<f64>(), vec![0.5; 5]);
    let b = Tensor::from_vec(vec![r + 1.0; 4], &[2, 2]);
    group.broadcast(&b, 1).unwrap();
    assert_eq!(b.to_vec::<f32>(), vec![2.0; 4]);
    let gathered: Vec<Vec<f32>> = group.all_gather(&Tensor::from_vec(vec![r; 3], &[3])).unwrap().iter().map(|t| t.to_vec()).collect();
    assert_eq!(gathered, vec![vec![0.0; 3], vec![1.0; 3]]);
    let rs = group.reduce_scatter(&Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[4, 1]), ReduceOp::Sum).unwrap();
    assert_eq!((rs.shape().to_vec(), rs.to_vec::<f32>()), (vec![2, 1], if rank == 0 { vec![2.0, 4.0] } else { vec![6.0, 8.0] }));
    if rank == 0 {
        group.send(&Tensor::from_vec(vec![1.5f32, 2.5, 3.5], &[3, 1]), 1).unwrap();
    } else {
        let t = group.recv(0).unwrap();
        assert_eq!((t.shape().to_vec(), t.to_vec::<f32>()), (vec![3, 1], vec![1.5, 2.5, 3.5]));
    }
    group.barrier().unwrap();

    // Ranks in different collectives are told so, naming each other, and the group survives.
    let t = Tensor::from_vec(vec![1.0f32; 3], &[3]);
    let err = if rank == 0 { group.all_reduce(&t, ReduceOp::Sum) } else { group.broadcast(&t, 0) }.unwrap_err();
    assert!(matches!(err, DistError::OpMismatch { peer, .. } if peer == 1 - rank), "{err}");
    group.barrier().unwrap();

    // A rank that stays away: the other one times out, and its group is then unusable.
    group.set_timeout(Duration::from_secs(2));
    if rank == 0 {
        let start = Instant::now();
        let err = group.barrier().unwrap_err();
        assert!(matches!(err, DistError::CollectiveTimeout { op: "barrier", .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
        let after = group.barrier().unwrap_err().to_string();
        assert!(after.contains("aborted after an earlier failure"), "{after}");
    } else {
        std::thread::sleep(Duration::from_secs(6));
    }
}
