//! The in-process backend: ranks are threads, messages go over channels.
//!
//! Cheap enough for tests and examples, and a faithful model of the failure modes a real
//! backend has: a peer that never sends times out, and a peer whose [`ThreadGroup`] was dropped
//! (its thread returned or panicked) disconnects its channels, which the others see at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{DistError, DistResult};
use super::group::{check_rank, ProcessGroup, DEFAULT_TIMEOUT};
use super::payload::Payload;

struct Message {
    op: &'static str,
    data: Payload,
}

/// One rank of an in-process group; move each into its own thread.
pub struct ThreadGroup {
    rank: usize,
    world: usize,
    timeout: Duration,
    /// `to[dst]`: this rank's sending end of the channel `self -> dst` (None for self).
    to: Vec<Option<Sender<Message>>>,
    /// `from[src]`: the receiving end of `src -> self`. One channel per pair keeps each
    /// sender's messages in order and lets `recv` wait on exactly the peer it needs.
    from: Vec<Option<Receiver<Message>>>,
    /// Shared by the group: `blame[r]` is the rank whose exit made rank `r` fail (or
    /// [`NO_BLAME`]). A survivor that fails on a dead peer exits too, and a third rank would
    /// then see *it* gone; following `blame` names the rank that died first instead.
    blame: Arc<Vec<AtomicUsize>>,
}

const NO_BLAME: usize = usize::MAX;

impl ThreadGroup {
    /// `world` connected ranks, index = rank.
    pub fn new(world: usize) -> Vec<ThreadGroup> {
        assert!(world > 0, "ThreadGroup::new: a group needs at least one rank, got 0");
        let blame: Arc<Vec<AtomicUsize>> = Arc::new((0..world).map(|_| AtomicUsize::new(NO_BLAME)).collect());
        let mut groups: Vec<ThreadGroup> = (0..world)
            .map(|rank| ThreadGroup {
                rank,
                world,
                timeout: DEFAULT_TIMEOUT,
                to: (0..world).map(|_| None).collect(),
                from: (0..world).map(|_| None).collect(),
                blame: blame.clone(),
            })
            .collect();
        for src in 0..world {
            for dst in (0..world).filter(|&d| d != src) {
                let (tx, rx) = channel();
                groups[src].to[dst] = Some(tx);
                groups[dst].from[src] = Some(rx);
            }
        }
        groups
    }

    /// The error for a peer found gone: names the rank whose exit started the failure (`peer`
    /// itself, or the rank `peer` failed on), and records it as this rank's cause before this
    /// rank's channels close.
    fn peer_gone(&self, op: &'static str, peer: usize) -> DistError {
        let root = match self.blame[peer].load(Ordering::SeqCst) {
            NO_BLAME => peer,
            r => r,
        };
        let _ = self.blame[self.rank].compare_exchange(NO_BLAME, root, Ordering::SeqCst, Ordering::SeqCst);
        DistError::PeerGone { rank: self.rank, op, peer: root }
    }

    /// Builder form of [`ProcessGroup::set_timeout`].
    pub fn with_timeout(mut self, timeout: Duration) -> ThreadGroup {
        self.timeout = timeout;
        self
    }
}

impl ProcessGroup for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn send_payload(&self, op: &'static str, dst: usize, data: Payload) -> DistResult<()> {
        check_rank(self, op, dst)?;
        let tx = self.to[dst].as_ref().ok_or_else(|| DistError::Invalid { rank: self.rank, op, msg: format!("rank {dst} is this rank") })?;
        // Unbounded channel: a send never blocks, so ring steps (send, then receive) cannot
        // deadlock; it fails only when the receiver is gone.
        tx.send(Message { op, data }).map_err(|_| self.peer_gone(op, dst))
    }

    fn recv_payload(&self, op: &'static str, src: usize) -> DistResult<Payload> {
        check_rank(self, op, src)?;
        let rx = self.from[src].as_ref().ok_or_else(|| DistError::Invalid { rank: self.rank, op, msg: format!("rank {src} is this rank") })?;
        let start = Instant::now();
        match rx.recv_timeout(self.timeout) {
            Ok(m) if m.op == op => Ok(m.data),
            Ok(m) => Err(DistError::OpMismatch { rank: self.rank, op, peer: src, got: m.op }),
            Err(RecvTimeoutError::Timeout) => Err(DistError::Timeout { rank: self.rank, op, peer: src, after: start.elapsed() }),
            Err(RecvTimeoutError::Disconnected) => Err(self.peer_gone(op, src)),
        }
    }
}

/// Runs `f(group)` on `world` threads (one per rank) and returns their results in rank order.
/// A panicking rank becomes an `Err` naming it; the others see it as a dead peer.
pub fn run_threads<R: Send + 'static>(
    world: usize,
    timeout: Duration,
    f: impl Fn(ThreadGroup) -> R + Send + Sync + 'static,
) -> Vec<std::result::Result<R, String>> {
    let f = std::sync::Arc::new(f);
    let handles: Vec<_> = ThreadGroup::new(world)
        .into_iter()
        .map(|g| {
            let f = f.clone();
            let rank = g.rank;
            std::thread::Builder::new()
                .name(format!("rank-{rank}"))
                .spawn(move || f(g.with_timeout(timeout)))
                .unwrap_or_else(|e| panic!("run_threads: cannot spawn the thread for rank {rank}: {e}"))
        })
        .collect();
    handles
        .into_iter()
        .enumerate()
        .map(|(rank, h)| {
            h.join().map_err(|p| {
                let why = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                format!("rank {rank} panicked: {why}")
            })
        })
        .collect()
}
