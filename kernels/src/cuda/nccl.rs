//! NCCL, loaded at run time: the library, its unique id, and a communicator handle.
//!
//! We bind the few NCCL entry points we call ourselves instead of using cudarc's `nccl` module,
//! for two reasons found in cudarc 0.19.10's source:
//!
//! * its loader tries `libnccl.so`, `libnccl.so.1` and `libnccl.so.9` to `.12`, but never
//!   `libnccl.so.2`, the only name the NCCL runtime package and the `nvidia-nccl-cu12` wheel
//!   install (the unversioned name comes only with the development package); and it panics when
//!   none loads;
//! * its `Comm` creates blocking communicators and panics in `Drop` when `ncclCommAbort` fails,
//!   while a timeout needs a nonblocking communicator whose state can be polled
//!   (`ncclCommGetAsyncError`) and aborted.
//!
//! [`load_nccl`] opens `$TENSORBRAIN_NCCL_LIB`, else `libnccl.so.2`, else `libnccl.so`, resolves
//! every symbol up front (a missing one is an error then, not a crash mid-training), and checks
//! the version. Everything is `extern "C"` with `int` results, so an NCCL newer than the codes
//! we know cannot produce an invalid Rust enum.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::OnceLock;

use cudarc::driver::CudaStream;

use super::CudaError;

/// Environment variable naming the NCCL library to load (e.g. the wheel's `libnccl.so.2`).
pub const NCCL_ENV: &str = "TENSORBRAIN_NCCL_LIB";

/// Names tried when `$TENSORBRAIN_NCCL_LIB` is not set: the runtime's SONAME first.
const NCCL_NAMES: &[&str] = &["libnccl.so.2", "libnccl.so"];

/// The oldest NCCL with nonblocking communicators (`ncclCommInitRankConfig`, `ncclInProgress`),
/// which the timeouts rely on. NCCL encodes version x.y.z as `x * 10000 + y * 100 + z`.
pub const MIN_VERSION: i32 = 21400;

/// `ncclResult_t` codes we act on.
const SUCCESS: c_int = 0;
const IN_PROGRESS: c_int = 7;

/// NCCL's `ncclUniqueId`: 128 opaque bytes that rank 0 creates and every rank passes to
/// [`Nccl::init_rank`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniqueId {
    pub bytes: [u8; 128],
}

impl UniqueId {
    pub const LEN: usize = 128;

    /// From bytes received over the wire; `None` unless exactly [`UniqueId::LEN`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<UniqueId> {
        Some(UniqueId { bytes: bytes.try_into().ok()? })
    }
}

/// Element types (`ncclDataType_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum DataType {
    U64 = 5,
    F32 = 7,
    F64 = 8,
}

/// Reductions (`ncclRedOp_t`). Only the sum: averaging divides on the host, as the other
/// backends do, because NCCL's `ncclAvg` on floats pre-multiplies by `1/n` and rounds
/// differently from `sum / n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum RedOp {
    Sum = 0,
}

/// `ncclConfig_t` as of NCCL 2.17. NCCL copies `min(size, its own size)` bytes and fills the
/// fields a newer version added with defaults, so this prefix works with every later NCCL.
#[repr(C)]
struct Config {
    size: usize,
    magic: c_uint,
    version: c_uint,
    blocking: c_int,
    cga_cluster_size: c_int,
    min_ctas: c_int,
    max_ctas: c_int,
    net_name: *const c_char,
    split_share: c_int,
}

/// `NCCL_CONFIG_UNDEF_INT`: "let NCCL choose".
const UNDEF: c_int = c_int::MIN;

impl Config {
    fn nonblocking() -> Config {
        Config {
            size: std::mem::size_of::<Config>(),
            magic: 0xcafe_beef,
            version: 21700,
            blocking: 0,
            cga_cluster_size: UNDEF,
            min_ctas: UNDEF,
            max_ctas: UNDEF,
            net_name: std::ptr::null(),
            split_share: UNDEF,
        }
    }
}

type RawComm = *mut c_void;
type RawStream = *mut c_void;

/// The entry points, resolved once.
struct Api {
    get_version: unsafe extern "C" fn(*mut c_int) -> c_int,
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> c_int,
    get_error_string: unsafe extern "C" fn(c_int) -> *const c_char,
    get_last_error: unsafe extern "C" fn(RawComm) -> *const c_char,
    comm_init_rank_config: unsafe extern "C" fn(*mut RawComm, c_int, UniqueId, c_int, *mut Config) -> c_int,
    comm_get_async_error: unsafe extern "C" fn(RawComm, *mut c_int) -> c_int,
    comm_abort: unsafe extern "C" fn(RawComm) -> c_int,
    all_reduce: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, RawComm, RawStream) -> c_int,
    broadcast: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, RawComm, RawStream) -> c_int,
    all_gather: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, RawComm, RawStream) -> c_int,
    reduce_scatter: unsafe extern "C" fn(*const c_void, *mut c_void, usize, c_int, c_int, RawComm, RawStream) -> c_int,
    send: unsafe extern "C" fn(*const c_void, usize, c_int, c_int, RawComm, RawStream) -> c_int,
    recv: unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, RawComm, RawStream) -> c_int,
}

/// The loaded library.
pub struct Nccl {
    api: Api,
    /// `x * 10000 + y * 100 + z` for NCCL x.y.z.
    pub version: i32,
    /// The file or name it was loaded from.
    pub loaded_from: String,
}

/// Loads NCCL once per process; every later call returns the first outcome.
pub fn load_nccl() -> Result<&'static Nccl, CudaError> {
    static LOADED: OnceLock<Result<Nccl, CudaError>> = OnceLock::new();
    LOADED.get_or_init(load_uncached).as_ref().map_err(Clone::clone)
}

fn load_uncached() -> Result<Nccl, CudaError> {
    let candidates: Vec<String> = match std::env::var(NCCL_ENV) {
        Ok(p) if !p.is_empty() => vec![p],
        _ => NCCL_NAMES.iter().map(|s| s.to_string()).collect(),
    };
    load_from(&candidates)
}

/// Loads the first of `candidates` that opens (a file path or a name for the loader path).
fn load_from(candidates: &[String]) -> Result<Nccl, CudaError> {
    let mut whys = Vec::new();
    let mut found = None;
    for c in candidates {
        // SAFETY: loading NCCL runs its initialisers, as any NCCL user does.
        match unsafe { libloading::Library::new(c) } {
            Ok(l) => {
                found = Some((l, c.clone()));
                break;
            }
            Err(e) => whys.push(super::driver::loader_error(&e)),
        }
    }
    let Some((lib, loaded_from)) = found else {
        return Err(CudaError::NoNccl { tried: candidates.to_vec(), why: whys.join("; ") });
    };
    // The library stays loaded for the life of the process: the function pointers point into it.
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    let no_symbol = |e: libloading::Error| CudaError::NoNccl {
        tried: vec![loaded_from.clone()],
        why: format!("{} (NCCL 2.14 or newer is needed)", super::driver::loader_error(&e)),
    };
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the type is the one NCCL's nccl.h declares for this symbol.
            *unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(&no_symbol)?
        };
    }
    let api = Api {
        get_version: sym!("ncclGetVersion"),
        get_unique_id: sym!("ncclGetUniqueId"),
        get_error_string: sym!("ncclGetErrorString"),
        get_last_error: sym!("ncclGetLastError"),
        comm_init_rank_config: sym!("ncclCommInitRankConfig"),
        comm_get_async_error: sym!("ncclCommGetAsyncError"),
        comm_abort: sym!("ncclCommAbort"),
        all_reduce: sym!("ncclAllReduce"),
        broadcast: sym!("ncclBroadcast"),
        all_gather: sym!("ncclAllGather"),
        reduce_scatter: sym!("ncclReduceScatter"),
        send: sym!("ncclSend"),
        recv: sym!("ncclRecv"),
    };
    let mut version = 0;
    // SAFETY: a valid out-pointer.
    let code = unsafe { (api.get_version)(&mut version) };
    let nccl = Nccl { api, version, loaded_from };
    nccl.check(code, "reading the NCCL version", None)?;
    if version < MIN_VERSION {
        return Err(CudaError::NoNccl {
            tried: vec![nccl.loaded_from],
            why: format!("found NCCL {}, but nonblocking communicators (for timeouts) need NCCL 2.14 or newer", version_string(version)),
        });
    }
    Ok(nccl)
}

/// `21903` as `2.19.3`.
pub fn version_string(v: i32) -> String {
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

impl Nccl {
    /// Turns an NCCL result code into an error naming what we were doing and NCCL's own text.
    fn check(&self, code: c_int, during: &str, comm: Option<RawComm>) -> Result<(), CudaError> {
        if code == SUCCESS || code == IN_PROGRESS {
            return Ok(());
        }
        Err(CudaError::Nccl { during: during.to_string(), error: self.describe(code, comm) })
    }

    fn describe(&self, code: c_int, comm: Option<RawComm>) -> String {
        // SAFETY: both return static (or per-comm, still live) NUL-terminated strings or null.
        let text = |p: *const c_char| if p.is_null() { String::new() } else { unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned() };
        let mut msg = format!("{} (ncclResult_t {code})", text(unsafe { (self.api.get_error_string)(code) }));
        let last = text(unsafe { (self.api.get_last_error)(comm.unwrap_or(std::ptr::null_mut())) });
        if !last.is_empty() {
            msg = format!("{msg}: {last}");
        }
        msg
    }

    /// A new unique id (rank 0 calls this and hands the bytes to the other ranks).
    pub fn unique_id(&self) -> Result<UniqueId, CudaError> {
        let mut id = UniqueId { bytes: [0; 128] };
        // SAFETY: a valid out-pointer to a struct of NCCL's layout.
        let code = unsafe { (self.api.get_unique_id)(&mut id) };
        self.check(code, "creating the NCCL unique id", None)?;
        Ok(id)
    }

    /// Starts joining communicator `id` as `rank` of `world`, on the CUDA device current on this
    /// thread. The communicator is nonblocking: poll [`Comm::state`] until it is
    /// [`CommState::Ready`] before using it.
    pub fn init_rank(&'static self, world: usize, id: &UniqueId, rank: usize) -> Result<Comm, CudaError> {
        let during = format!("joining the NCCL communicator as rank {rank} of {world}");
        let (Ok(n), Ok(r)) = (c_int::try_from(world), c_int::try_from(rank)) else {
            return Err(CudaError::Nccl { during, error: "rank or world size does not fit a C int".into() });
        };
        let mut raw: RawComm = std::ptr::null_mut();
        let mut config = Config::nonblocking();
        // SAFETY: valid out-pointers; NCCL copies the id and the config.
        let code = unsafe { (self.api.comm_init_rank_config)(&mut raw, n, *id, r, &mut config) };
        if let Err(e) = self.check(code, &during, None) {
            if !raw.is_null() {
                // SAFETY: a communicator NCCL returned and nobody else holds.
                unsafe { (self.api.comm_abort)(raw) };
            }
            return Err(e);
        }
        Ok(Comm { nccl: self, raw })
    }
}

/// What [`Comm::state`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommState {
    /// Every call made so far has been handed to the stream (or has finished).
    Ready,
    /// NCCL is still working on the last call (joining, connecting to peers).
    InProgress,
}

/// A nonblocking communicator. Dropping it aborts it: `ncclCommAbort` never waits for peers,
/// so a drop cannot hang on a dead rank; the callers here only drop a communicator whose
/// operations have all completed (or that they gave up on).
pub struct Comm {
    nccl: &'static Nccl,
    raw: RawComm,
}

// SAFETY: an NCCL communicator may be used from any thread, one call at a time. Comm is not
// Sync, and every call takes &self from the one thread that owns it.
unsafe impl Send for Comm {}

impl Drop for Comm {
    fn drop(&mut self) {
        // SAFETY: our communicator, used by no one after this.
        unsafe { (self.nccl.api.comm_abort)(self.raw) };
    }
}

/// A device address as NCCL takes it.
fn ptr(p: u64) -> *mut c_void {
    p as usize as *mut c_void
}

fn stream_of(s: &CudaStream) -> RawStream {
    s.cu_stream() as RawStream
}

impl Comm {
    /// Polls `ncclCommGetAsyncError`: ready, still in progress, or the error that broke it
    /// (a failed peer connection, a remote error, ...).
    pub fn state(&self, during: &str) -> Result<CommState, CudaError> {
        let mut state = SUCCESS;
        // SAFETY: our live communicator and a valid out-pointer.
        let code = unsafe { (self.nccl.api.comm_get_async_error)(self.raw, &mut state) };
        self.nccl.check(code, during, Some(self.raw))?;
        match state {
            SUCCESS => Ok(CommState::Ready),
            IN_PROGRESS => Ok(CommState::InProgress),
            other => Err(CudaError::Nccl { during: during.to_string(), error: self.nccl.describe(other, Some(self.raw)) }),
        }
    }

    fn check(&self, code: c_int, during: &str) -> Result<(), CudaError> {
        self.nccl.check(code, during, Some(self.raw))
    }

    /// Sums `count` elements at `send` over all ranks into `recv` (which may equal `send`).
    ///
    /// # Safety
    /// `send` and `recv` must be device buffers of `count` elements of `dtype` on this
    /// communicator's device that stay alive until the work queued on `stream` completes.
    pub unsafe fn all_reduce(&self, send: u64, recv: u64, count: usize, dtype: DataType, op: RedOp, stream: &CudaStream) -> Result<(), CudaError> {
        let code = (self.nccl.api.all_reduce)(ptr(send), ptr(recv), count, dtype as c_int, op as c_int, self.raw, stream_of(stream));
        self.check(code, "queueing ncclAllReduce")
    }

    /// Copies `root`'s `count` elements into every rank's `buf`, in place.
    ///
    /// # Safety
    /// As [`Comm::all_reduce`], for `buf`.
    pub unsafe fn broadcast(&self, buf: u64, count: usize, dtype: DataType, root: usize, stream: &CudaStream) -> Result<(), CudaError> {
        let code = (self.nccl.api.broadcast)(ptr(buf), ptr(buf), count, dtype as c_int, root as c_int, self.raw, stream_of(stream));
        self.check(code, "queueing ncclBroadcast")
    }

    /// Gathers every rank's `count` elements at `send` into `recv` (`count * world`), in rank
    /// order.
    ///
    /// # Safety
    /// As [`Comm::all_reduce`]; `recv` holds `count * world` elements.
    pub unsafe fn all_gather(&self, send: u64, recv: u64, count: usize, dtype: DataType, stream: &CudaStream) -> Result<(), CudaError> {
        let code = (self.nccl.api.all_gather)(ptr(send), ptr(recv), count, dtype as c_int, self.raw, stream_of(stream));
        self.check(code, "queueing ncclAllGather")
    }

    /// Reduces `recv_count * world` elements at `send` over all ranks; rank `r` gets block `r`
    /// (`recv_count` elements) in `recv`.
    ///
    /// # Safety
    /// As [`Comm::all_reduce`]; `send` holds `recv_count * world` elements.
    pub unsafe fn reduce_scatter(&self, send: u64, recv: u64, recv_count: usize, dtype: DataType, op: RedOp, stream: &CudaStream) -> Result<(), CudaError> {
        let code = (self.nccl.api.reduce_scatter)(ptr(send), ptr(recv), recv_count, dtype as c_int, op as c_int, self.raw, stream_of(stream));
        self.check(code, "queueing ncclReduceScatter")
    }

    /// Sends `count` elements at `buf` to `peer`.
    ///
    /// # Safety
    /// As [`Comm::all_reduce`], for `buf`.
    pub unsafe fn send(&self, buf: u64, count: usize, dtype: DataType, peer: usize, stream: &CudaStream) -> Result<(), CudaError> {
        let code = (self.nccl.api.send)(ptr(buf), count, dtype as c_int, peer as c_int, self.raw, stream_of(stream));
        self.check(code, "queueing ncclSend")
    }

    /// Receives `count` elements from `peer` into `buf`.
    ///
    /// # Safety
    /// As [`Comm::all_reduce`], for `buf`.
    pub unsafe fn recv(&self, buf: u64, count: usize, dtype: DataType, peer: usize, stream: &CudaStream) -> Result<(), CudaError> {
        let code = (self.nccl.api.recv)(ptr(buf), count, dtype as c_int, peer as c_int, self.raw, stream_of(stream));
        self.check(code, "queueing ncclRecv")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_print_as_nccl_writes_them() {
        assert_eq!(version_string(21903), "2.19.3");
        assert_eq!(version_string(MIN_VERSION), "2.14.0");
    }

    #[test]
    fn the_config_prefix_has_the_layout_of_nccl_2_17() {
        // size_t, 2 x unsigned, 4 x int, a pointer, an int (padded): 48 bytes on 64-bit targets.
        if cfg!(target_pointer_width = "64") {
            assert_eq!(std::mem::size_of::<Config>(), 48);
        }
        assert_eq!(std::mem::size_of::<UniqueId>(), UniqueId::LEN);
    }

    #[test]
    fn a_missing_library_is_an_error_naming_it_and_the_fix() {
        let err = load_from(&["libtensorbrain-no-nccl.so.2".to_string()]).err().expect("no such library");
        let msg = err.to_string();
        assert!(msg.starts_with("NCCL not usable (tried libtensorbrain-no-nccl.so.2): "), "{msg}");
        assert!(msg.contains("cannot open shared object file"), "{msg}");
        assert!(msg.contains("TENSORBRAIN_NCCL_LIB"), "{msg}");
    }

    #[test]
    fn a_unique_id_needs_exactly_128_bytes() {
        assert!(UniqueId::from_bytes(&[1; 128]).is_some());
        assert!(UniqueId::from_bytes(&[1; 127]).is_none());
    }
}
