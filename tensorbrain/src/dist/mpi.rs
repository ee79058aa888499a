//! The MPI backend (feature `mpi`): one process per rank, launched by `mpirun -np N`.
//!
//! Point-to-point messages are MPI messages; the collectives are the ring algorithms in
//! `ring.rs` run over them, so every op keeps the per-peer timeout and error naming that
//! blocking MPI collectives cannot give (MPI_Allreduce cannot say which rank it waits for).
//! Sends are non-blocking (`MPI_Isend`) so a ring step's send-then-receive cannot deadlock
//! on large messages; receives poll `MPI_Improbe` until the deadline.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::{Request, StaticScope};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;

use super::error::{DistError, DistResult};
use super::group::{check_rank, op_index, op_name, ProcessGroup, DEFAULT_TIMEOUT};
use super::payload::Payload;

/// Op names travel in the message tag (with the dtype) so a rank calling a different op than
/// its peer gets `OpMismatch` instead of misreading the data.
fn tag_of(op: &str, p: &Payload) -> i32 {
    op_index(op) as i32 * 2 + matches!(p, Payload::F64(_)) as i32
}

/// How a wait polls. MPI makes progress only inside MPI calls, and every receive used to sleep
/// 20 µs (about 0.1 ms as Linux wakes it) between polls: a ring step cost at least that, and
/// the fitted per-step latency of `all_reduce` on two ranks of this machine was 150–200 µs.
/// Polling back to back (giving the core away between polls) brought it to 2–6 µs, and
/// DDP on the MNIST MLP from 25–28k to 81k samples/s. A wait sleeps between polls only once
/// it has lasted [`BUSY_POLL`]: by then the peer is computing, not sending.
struct Backoff {
    start: Instant,
}

const BUSY_POLL: Duration = Duration::from_millis(5);

impl Backoff {
    fn new() -> Backoff {
        Backoff { start: Instant::now() }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn pause(&self) {
        if self.start.elapsed() < BUSY_POLL {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// A send in flight: the request and the buffer it reads, freed once MPI is done with it.
struct PendingSend {
    request: Request<'static, [u8], StaticScope>,
    buffer: *mut [u8],
    dst: usize,
}

pub struct MpiGroup {
    // Field order matters: the communicator must go before the universe (MPI_Finalize).
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    timeout: Duration,
    pending: RefCell<Vec<PendingSend>>,
    _universe: mpi::environment::Universe,
}

// SAFETY: MPI is initialised with MPI_THREAD_SERIALIZED, which allows MPI calls from any thread
// as long as no two run at once. An MpiGroup is not Sync, so it is used by one thread at a time
// (DDP moves it into its communication thread); the raw buffer pointers it holds are owned
// allocations, freed only by this group.
unsafe impl Send for MpiGroup {}

impl MpiGroup {
    /// Initialises MPI (once per process) and wraps MPI_COMM_WORLD.
    pub fn init() -> DistResult<MpiGroup> {
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| DistError::Env("MPI is already initialised in this process; call dist::init() once".into()))?;
        if level < Threading::Serialized {
            return Err(DistError::Env(format!(
                "the MPI library grants thread level {level:?}, but DDP's communication thread needs at least Serialized"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(MpiGroup { world, rank, size, timeout: DEFAULT_TIMEOUT, pending: RefCell::new(Vec::new()), _universe: universe })
    }

    /// Frees the buffers of completed sends; with `wait_all`, waits (up to the timeout) for all.
    fn reap(&self, op: &'static str, wait_all: bool) -> DistResult<()> {
        let wait = Backoff::new();
        let mut pending = self.pending.borrow_mut();
        loop {
            let mut still = Vec::with_capacity(pending.len());
            for p in pending.drain(..) {
                match p.request.test() {
                    Ok(_) => {
                        // SAFETY: the send completed, so MPI no longer reads the buffer, which
                        // came from Box::leak in send_payload.
                        drop(unsafe { Box::from_raw(p.buffer) });
                    }
                    Err(request) => still.push(PendingSend { request, ..p }),
                }
            }
            *pending = still;
            if !wait_all || pending.is_empty() {
                return Ok(());
            }
            if wait.elapsed() > self.timeout {
                let peer = pending[0].dst;
                return Err(DistError::Timeout { rank: self.rank, op, peer, after: wait.elapsed() });
            }
            wait.pause();
        }
    }
}

impl Drop for MpiGroup {
    fn drop(&mut self) {
        // A send still in flight at exit is a peer that never received: leak its buffer rather
        // than free memory MPI may still read.
        if self.reap("shutdown", true).is_err() {
            for p in self.pending.get_mut().drain(..) {
                std::mem::forget(p.request);
            }
        }
    }
}

impl ProcessGroup for MpiGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn send_payload(&self, op: &'static str, dst: usize, data: Payload) -> DistResult<()> {
        check_rank(self, op, dst)?;
        self.reap(op, false)?;
        let tag = tag_of(op, &data);
        let bytes: Vec<u8> = match &data {
            Payload::F32(v) => bytemuck::cast_slice(v).to_vec(),
            Payload::F64(v) => bytemuck::cast_slice(v).to_vec(),
        };
        let buffer: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
        let raw: *mut [u8] = buffer;
        // SAFETY: `raw` stays valid until reap() sees the request complete and frees it.
        let request = self.world.process_at_rank(dst as i32).immediate_send_with_tag(StaticScope, unsafe { &*raw }, tag);
        self.pending.borrow_mut().push(PendingSend { request, buffer: raw, dst });
        Ok(())
    }

    fn flush_sends(&self, op: &'static str) -> DistResult<()> {
        self.reap(op, true)
    }

    fn recv_payload(&self, op: &'static str, src: usize) -> DistResult<Payload> {
        check_rank(self, op, src)?;
        let wait = Backoff::new();
        let process = self.world.process_at_rank(src as i32);
        loop {
            if let Some((message, status)) = process.immediate_matched_probe() {
                let tag = status.tag();
                let (bytes, _) = (message, status).matched_receive_vec::<u8>();
                if tag / 2 != op_index(op) as i32 {
                    let got = op_name((tag / 2) as usize);
                    return Err(DistError::OpMismatch { rank: self.rank, op, peer: src, got });
                }
                return Ok(if tag % 2 == 1 {
                    Payload::F64(bytemuck::pod_collect_to_vec(&bytes))
                } else {
                    Payload::F32(bytemuck::pod_collect_to_vec(&bytes))
                });
            }
            // Let our own sends progress while we wait (a peer may be waiting on them).
            self.reap(op, false)?;
            if wait.elapsed() > self.timeout {
                return Err(DistError::Timeout { rank: self.rank, op, peer: src, after: wait.elapsed() });
            }
            wait.pause();
        }
    }
}
