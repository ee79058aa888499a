//! The NCCL backend (feature `cuda`): one process per GPU, launched torchrun-style.
//!
//! **It has never run on a GPU**: it is compiled, and its CPU-side parts (the rendezvous, the
//! environment, the errors on a machine without CUDA) are tested, on machines without one.
//!
//! * Launch: `RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` and `LOCAL_RANK` (the device
//!   ordinal; `RANK` when unset). Rank 0 creates NCCL's unique id and hands it to the other
//!   ranks over TCP at `MASTER_ADDR:MASTER_PORT`, or at `TENSORBRAIN_RDZV_PORT` when set
//!   (`rendezvous.rs`).
//! * Data: tensors cannot live on a GPU yet, so every op copies its host payload to a device
//!   buffer, runs the NCCL op there and copies the result back. Making CUDA tensors the
//!   payload (no copies) is the CUDA runtime's job, not this file's.
//! * Timeouts: the communicator is nonblocking (`ncclCommInitRankConfig` with `blocking = 0`).
//!   Every op is queued on this group's stream and then polled (an event on the stream, and
//!   `ncclCommGetAsyncError` for errors such as a peer's connection dropping) until it
//!   completes or the group's timeout passes. Then the communicator is aborted
//!   (`ncclCommAbort`, which makes NCCL's kernels exit) and the op returns a timeout; every
//!   later op on the group fails, naming the first failure.
//! * Agreement: NCCL matches collectives by their order alone, so ranks that call different
//!   ops or pass different sizes would hang or mix unrelated data. Each collective therefore
//!   first all-gathers every rank's (op, dtype, length, root), 32 bytes each, and fails with
//!   `OpMismatch` or `Invalid` naming the first rank that disagrees. This costs one small
//!   all-gather per op; `barrier` is that all-gather alone.
//! * Point to point: a payload is a 32-byte header (op, dtype, length) and then the data,
//!   each an `ncclSend`/`ncclRecv` that returns once the peer has received it. NCCL has no
//!   buffered sends, so two ranks that both send to each other before receiving time out;
//!   the pipeline schedules never do that.
//! * Sums are NCCL's; averages divide the sum on the host, as the other backends do.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tensorbrain_kernels::cuda::cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, ValidAsZeroBits};
use tensorbrain_kernels::cuda::driver::{guarded, Device};
use tensorbrain_kernels::cuda::nccl::{load_nccl, Comm, CommState, DataType, RedOp, UniqueId};
use tensorbrain_kernels::cuda::CudaError;

use super::env::TorchrunEnv;
use super::error::{DistError, DistResult};
use super::group::{check_rank, op_index, op_name, ProcessGroup, ReduceOp};
use super::payload::{Elem, Payload};
use super::rendezvous;
use crate::tensor::Tensor;

/// Element types that travel through device buffers.
trait Staged: DeviceRepr + ValidAsZeroBits + Copy + Unpin + 'static {
    const DTYPE: DataType;
}

impl Staged for f32 {
    const DTYPE: DataType = DataType::F32;
}

impl Staged for f64 {
    const DTYPE: DataType = DataType::F64;
}

impl Staged for u64 {
    const DTYPE: DataType = DataType::U64;
}

/// Header and agreement records: op index, dtype, element count, root (or [`NONE`]).
const RECORD: usize = 4;
const NONE: u64 = u64::MAX;

/// The communicator, or why it is gone.
enum Slot {
    Live(Comm),
    /// Aborted after this failure; the group cannot be used again.
    Aborted(String),
}

/// Why an op stopped short of completing.
enum Failure {
    Cuda(CudaError),
    TimedOut(Duration),
}

impl From<CudaError> for Failure {
    fn from(e: CudaError) -> Failure {
        Failure::Cuda(e)
    }
}

/// A process group over NCCL; see the module docs.
pub struct NcclGroup {
    // Dropped first: the communicator is aborted while its device and stream still exist.
    comm: RefCell<Slot>,
    stream: Arc<CudaStream>,
    device: Device,
    rank: usize,
    world: usize,
    timeout: Duration,
}

impl NcclGroup {
    /// Joins the group described by this process's torchrun-style environment, waiting up to
    /// [`DEFAULT_TIMEOUT`](super::DEFAULT_TIMEOUT) for the other ranks.
    pub fn init() -> DistResult<NcclGroup> {
        Self::init_with(&TorchrunEnv::from_env()?, super::group::DEFAULT_TIMEOUT)
    }

    /// Joins the group `env` describes; `timeout` bounds the rendezvous, NCCL's own join, and
    /// (until [`set_timeout`](ProcessGroup::set_timeout)) every op.
    pub fn init_with(env: &TorchrunEnv, timeout: Duration) -> DistResult<NcclGroup> {
        let (rank, world) = (env.rank, env.world_size);
        let setup = |what: String, e: CudaError| DistError::Env(format!("NCCL backend, rank {rank}: {what}: {e}"));
        // The device first: on a machine without CUDA this is the error a user needs to see.
        let device = Device::new(env.local_rank).map_err(|e| setup(format!("opening CUDA device {} (LOCAL_RANK)", env.local_rank), e))?;
        let nccl = load_nccl().map_err(|e| setup("loading NCCL".into(), e))?;
        let stream = device.new_stream().map_err(|e| setup("creating a CUDA stream".into(), e))?.cuda().clone();
        let master = env.rendezvous_addr();
        let id = if rank == 0 {
            // Listen before creating the id, so a port in use fails before NCCL does any work.
            let server = rendezvous::Server::bind(&master)?;
            let id = nccl.unique_id().map_err(|e| setup("creating the NCCL unique id".into(), e))?;
            server.serve(world, &id.bytes, timeout)?;
            id
        } else {
            let bytes = rendezvous::fetch(&master, rank, world, timeout)?;
            UniqueId::from_bytes(&bytes).ok_or_else(|| DistError::Rendezvous {
                rank,
                addr: master.clone(),
                msg: format!("rank 0 sent {} bytes, but an NCCL unique id has {}; are both ends the same TensorBrain version?", bytes.len(), UniqueId::LEN),
            })?
        };
        // NCCL joins on the device current on this thread.
        guarded("binding the CUDA context", || device.context().bind_to_thread()).map_err(|e| setup("binding the CUDA context".into(), e))?;
        let comm = nccl.init_rank(world, &id, rank).map_err(|e| setup("joining the communicator".into(), e))?;
        let group = NcclGroup { comm: RefCell::new(Slot::Live(comm)), stream, device, rank, world, timeout };
        // The join completes once every rank has called it; wait for that like for any op.
        group.run("init", None, |_, _| Ok(()))?;
        Ok(group)
    }

    /// Queues one NCCL op with `queue` and waits for it; see the module docs on timeouts.
    fn run(&self, op: &'static str, peer: Option<usize>, queue: impl FnOnce(&Comm, &Arc<CudaStream>) -> Result<(), CudaError>) -> DistResult<()> {
        let mut slot = self.comm.borrow_mut();
        let comm = match &*slot {
            Slot::Live(comm) => comm,
            Slot::Aborted(why) => {
                return Err(self.nccl_error(op, format!("the communicator was aborted after an earlier failure and cannot be used again; create a new group (the failure: {why})")));
            }
        };
        let err = match self.queue_and_wait(comm, queue) {
            Ok(()) => return Ok(()),
            Err(Failure::Cuda(e)) => self.nccl_error(op, e.to_string()),
            Err(Failure::TimedOut(after)) => match peer {
                Some(peer) => DistError::Timeout { rank: self.rank, op, peer, after },
                None => DistError::CollectiveTimeout { rank: self.rank, op, after },
            },
        };
        // Dropping the communicator aborts it.
        *slot = Slot::Aborted(err.to_string());
        Err(err)
    }

    fn queue_and_wait(&self, comm: &Comm, queue: impl FnOnce(&Comm, &Arc<CudaStream>) -> Result<(), CudaError>) -> Result<(), Failure> {
        let start = Instant::now();
        // The error names the rank and op already (run() wraps it).
        let during = "waiting for it to complete";
        // NCCL calls act on the context current on this thread, and DDP calls from its own.
        guarded("binding the CUDA context", || self.device.context().bind_to_thread())?;
        queue(comm, &self.stream)?;
        // Nonblocking: NCCL may still be handing the op to the stream (joining, or connecting
        // to a peer on first use), and must finish before anything else is queued.
        while comm.state(during)? == CommState::InProgress {
            self.pause(start)?;
        }
        let done = guarded("recording a CUDA event", || self.stream.record_event(None))?;
        while !guarded("querying a CUDA event", || done.try_is_complete())? {
            // A peer that fails while our kernel waits for it shows up here, not on the stream.
            comm.state(during)?;
            self.pause(start)?;
        }
        Ok(())
    }

    /// Between polls: the GPU makes progress without us, so spinning only buys latency; yield
    /// for the first millisecond (short ops), then sleep briefly.
    fn pause(&self, start: Instant) -> Result<(), Failure> {
        let waited = start.elapsed();
        if waited > self.timeout {
            return Err(Failure::TimedOut(waited));
        }
        if waited < Duration::from_millis(1) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }

    fn nccl_error(&self, op: &'static str, msg: String) -> DistError {
        DistError::Nccl { rank: self.rank, op, msg }
    }

    fn upload<T: Staged>(&self, op: &'static str, host: &[T]) -> DistResult<CudaSlice<T>> {
        guarded("copying to the device", || self.stream.clone_htod(host)).map_err(|e| self.nccl_error(op, e.to_string()))
    }

    fn zeros<T: Staged>(&self, op: &'static str, len: usize) -> DistResult<CudaSlice<T>> {
        guarded("allocating a device buffer", || self.stream.alloc_zeros(len)).map_err(|e| self.nccl_error(op, e.to_string()))
    }

    fn download<T: Staged>(&self, op: &'static str, dev: &CudaSlice<T>) -> DistResult<Vec<T>> {
        guarded("copying from the device", || self.stream.clone_dtoh(dev)).map_err(|e| self.nccl_error(op, e.to_string()))
    }

    /// Checks that every rank is in the same collective with the same dtype, length and root
    /// (see the module docs).
    fn agree(&self, op: &'static str, dtype: Option<DataType>, len: usize, root: Option<usize>) -> DistResult<()> {
        let mine = [op_index(op) as u64, dtype.map_or(NONE, |d| d as u64), len as u64, root.map_or(NONE, |r| r as u64)];
        let send = self.upload(op, &mine)?;
        let mut all = self.zeros::<u64>(op, RECORD * self.world)?;
        self.run(op, None, |comm, s| {
            let (src, _read) = send.device_ptr(s);
            let (dst, _write) = all.device_ptr_mut(s);
            // SAFETY: both buffers live until run() has seen the op complete (or aborted it).
            unsafe { comm.all_gather(src, dst, RECORD, DataType::U64, s) }
        })?;
        let all = self.download(op, &all)?;
        let Some((peer, theirs)) = all.chunks(RECORD).enumerate().find(|(_, r)| *r != mine) else {
            return Ok(());
        };
        if theirs[0] != mine[0] {
            return Err(DistError::OpMismatch { rank: self.rank, op, peer, got: op_name(theirs[0] as usize) });
        }
        let show = |r: &[u64]| {
            let dtype = match r[1] {
                x if x == DataType::F32 as u64 => "f32",
                x if x == DataType::F64 as u64 => "f64",
                _ => "untyped",
            };
            let root = if r[3] == NONE { String::new() } else { format!(" from root {}", r[3]) };
            format!("{} {dtype} elements{root}", r[2])
        };
        Err(DistError::Invalid {
            rank: self.rank,
            op,
            msg: format!("rank {peer} passed {}, this rank {}; every rank must pass the same shape, dtype and root", show(theirs), show(&mine)),
        })
    }

    /// Runs an in-place collective on `v` (after the ranks agree on it): upload, queue
    /// `launch(comm, device pointer, count, stream)`, download into `v`.
    fn in_place<T: Staged + Elem>(
        &self,
        op: &'static str,
        v: &mut Vec<T>,
        root: Option<usize>,
        launch: impl FnOnce(&Comm, u64, usize, &Arc<CudaStream>) -> Result<(), CudaError>,
    ) -> DistResult<()> {
        self.agree(op, Some(T::DTYPE), v.len(), root)?;
        if v.is_empty() {
            return Ok(());
        }
        let mut buf = self.upload(op, v)?;
        let n = v.len();
        self.run(op, None, |comm, s| {
            let (p, _write) = buf.device_ptr_mut(s);
            launch(comm, p, n, s)
        })?;
        *v = self.download(op, &buf)?;
        Ok(())
    }

    fn all_reduce_vec<T: Staged + Elem>(&self, v: &mut Vec<T>, op: ReduceOp) -> DistResult<()> {
        // SAFETY: the pointer is to `n` elements of a buffer that outlives the op (see run()).
        self.in_place("all_reduce", v, None, |comm, p, n, s| unsafe { comm.all_reduce(p, p, n, T::DTYPE, RedOp::Sum, s) })?;
        if op == ReduceOp::Avg {
            v.iter_mut().for_each(|x| *x = x.div_by(self.world as f64));
        }
        Ok(())
    }

    fn broadcast_vec<T: Staged + Elem>(&self, v: &mut Vec<T>, root: usize) -> DistResult<()> {
        // SAFETY: as in all_reduce_vec.
        self.in_place("broadcast", v, Some(root), |comm, p, n, s| unsafe { comm.broadcast(p, n, T::DTYPE, root, s) })
    }

    /// Every rank's `v`, concatenated in rank order.
    fn all_gather_vec<T: Staged + Elem>(&self, v: &[T]) -> DistResult<Vec<T>> {
        const OP: &str = "all_gather";
        self.agree(OP, Some(T::DTYPE), v.len(), None)?;
        if v.is_empty() {
            return Ok(Vec::new());
        }
        let send = self.upload(OP, v)?;
        let mut recv = self.zeros::<T>(OP, v.len() * self.world)?;
        let n = v.len();
        self.run(OP, None, |comm, s| {
            let (src, _read) = send.device_ptr(s);
            let (dst, _write) = recv.device_ptr_mut(s);
            // SAFETY: `send` holds n elements, `recv` n * world; both outlive the op.
            unsafe { comm.all_gather(src, dst, n, T::DTYPE, s) }
        })?;
        self.download(OP, &recv)
    }

    /// This rank's block (`v.len() / world` elements) of the elementwise reduction of `v`.
    fn reduce_scatter_vec<T: Staged + Elem>(&self, v: &[T], op: ReduceOp) -> DistResult<Vec<T>> {
        const OP: &str = "reduce_scatter";
        self.agree(OP, Some(T::DTYPE), v.len(), None)?;
        let block = v.len() / self.world;
        if block == 0 {
            return Ok(Vec::new());
        }
        let send = self.upload(OP, v)?;
        let mut recv = self.zeros::<T>(OP, block)?;
        self.run(OP, None, |comm, s| {
            let (src, _read) = send.device_ptr(s);
            let (dst, _write) = recv.device_ptr_mut(s);
            // SAFETY: `send` holds block * world elements, `recv` block; both outlive the op.
            unsafe { comm.reduce_scatter(src, dst, block, T::DTYPE, RedOp::Sum, s) }
        })?;
        let mut out = self.download(OP, &recv)?;
        if op == ReduceOp::Avg {
            out.iter_mut().for_each(|x| *x = x.div_by(self.world as f64));
        }
        Ok(out)
    }

    fn send_vec<T: Staged>(&self, op: &'static str, dst: usize, v: &[T]) -> DistResult<()> {
        let buf = self.upload(op, v)?;
        let n = v.len();
        self.run(op, Some(dst), |comm, s| {
            let (p, _read) = buf.device_ptr(s);
            // SAFETY: `buf` holds n elements and outlives the op.
            unsafe { comm.send(p, n, T::DTYPE, dst, s) }
        })
    }

    fn recv_vec<T: Staged>(&self, op: &'static str, src: usize, n: usize) -> DistResult<Vec<T>> {
        let mut buf = self.zeros::<T>(op, n)?;
        self.run(op, Some(src), |comm, s| {
            let (p, _write) = buf.device_ptr_mut(s);
            // SAFETY: `buf` holds n elements and outlives the op.
            unsafe { comm.recv(p, n, T::DTYPE, src, s) }
        })?;
        self.download(op, &buf)
    }

    fn check_peer(&self, op: &'static str, peer: usize) -> DistResult<()> {
        check_rank(self, op, peer)?;
        if peer == self.rank {
            return Err(DistError::Invalid { rank: self.rank, op, msg: "NCCL cannot send a message to its own rank".into() });
        }
        Ok(())
    }
}

// SAFETY: the communicator and the stream may be used from any thread, one call at a time, as
// long as the CUDA context is bound first (run() does). NcclGroup is not Sync, so one thread at
// a time uses it (DDP moves it into its communication thread).
unsafe impl Send for NcclGroup {}

impl ProcessGroup for NcclGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    /// A send here returns only once the peer has received it.
    fn sends_are_buffered(&self) -> bool {
        false
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
        self.check_peer(op, dst)?;
        let dtype = match &data {
            Payload::F32(_) => DataType::F32,
            Payload::F64(_) => DataType::F64,
        };
        let header = [op_index(op) as u64, dtype as u64, data.len() as u64, NONE];
        self.send_vec(op, dst, &header)?;
        match &data {
            _ if data.is_empty() => Ok(()),
            Payload::F32(v) => self.send_vec(op, dst, v),
            Payload::F64(v) => self.send_vec(op, dst, v),
        }
    }

    fn recv_payload(&self, op: &'static str, src: usize) -> DistResult<Payload> {
        self.check_peer(op, src)?;
        let header = self.recv_vec::<u64>(op, src, RECORD)?;
        if header[0] != op_index(op) as u64 {
            return Err(DistError::OpMismatch { rank: self.rank, op, peer: src, got: op_name(header[0] as usize) });
        }
        let n = header[2] as usize;
        match header[1] {
            d if d == DataType::F32 as u64 => Ok(Payload::F32(if n == 0 { Vec::new() } else { self.recv_vec(op, src, n)? })),
            d if d == DataType::F64 as u64 => Ok(Payload::F64(if n == 0 { Vec::new() } else { self.recv_vec(op, src, n)? })),
            other => Err(self.nccl_error(op, format!("rank {src} sent a header with dtype code {other}; expected f32 (7) or f64 (8)"))),
        }
    }

    fn all_reduce(&self, tensor: &Tensor, op: ReduceOp) -> DistResult<()> {
        let mut data = Payload::from_tensor(self.rank, "all_reduce", tensor)?;
        self.all_reduce_payload(&mut data, op)?;
        data.write_into(self.rank, "all_reduce", tensor)
    }

    fn all_reduce_payload(&self, data: &mut Payload, op: ReduceOp) -> DistResult<()> {
        match data {
            Payload::F32(v) => self.all_reduce_vec(v, op),
            Payload::F64(v) => self.all_reduce_vec(v, op),
        }
    }

    fn broadcast(&self, tensor: &Tensor, root: usize) -> DistResult<()> {
        const OP: &str = "broadcast";
        check_rank(self, OP, root)?;
        let mut data = Payload::from_tensor(self.rank, OP, tensor)?;
        match &mut data {
            Payload::F32(v) => self.broadcast_vec(v, root)?,
            Payload::F64(v) => self.broadcast_vec(v, root)?,
        }
        if self.rank == root {
            return Ok(());
        }
        data.write_into(self.rank, OP, tensor)
    }

    fn all_gather(&self, tensor: &Tensor) -> DistResult<Vec<Tensor>> {
        const OP: &str = "all_gather";
        let mine = Payload::from_tensor(self.rank, OP, tensor)?;
        let n = mine.len();
        let all = match &mine {
            Payload::F32(v) => Payload::F32(self.all_gather_vec(v)?),
            Payload::F64(v) => Payload::F64(self.all_gather_vec(v)?),
        };
        let chunk = |r: usize| match &all {
            Payload::F32(v) => Payload::F32(v[r * n..(r + 1) * n].to_vec()),
            Payload::F64(v) => Payload::F64(v[r * n..(r + 1) * n].to_vec()),
        };
        (0..self.world).map(|r| chunk(r).into_tensor(self.rank, OP, tensor.shape())).collect()
    }

    fn reduce_scatter(&self, tensor: &Tensor, op: ReduceOp) -> DistResult<Tensor> {
        const OP: &str = "reduce_scatter";
        let rows = tensor.shape().first().copied().unwrap_or(0);
        if rows % self.world != 0 {
            return Err(DistError::Invalid {
                rank: self.rank,
                op: OP,
                msg: format!("the leading dimension ({rows}) of shape {:?} must be divisible by the world size {}", tensor.shape(), self.world),
            });
        }
        let data = Payload::from_tensor(self.rank, OP, tensor)?;
        let mine = match &data {
            Payload::F32(v) => Payload::F32(self.reduce_scatter_vec(v, op)?),
            Payload::F64(v) => Payload::F64(self.reduce_scatter_vec(v, op)?),
        };
        let mut shape = tensor.shape().to_vec();
        shape[0] = rows / self.world;
        mine.into_tensor(self.rank, OP, &shape)
    }

    fn barrier(&self) -> DistResult<()> {
        // The agreement all-gather returns only once every rank has joined it.
        self.agree("barrier", None, 0, None)
    }
}
