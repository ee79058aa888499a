//! Compiling CUDA C to PTX with NVRTC, with a cache keyed by (architecture, source hash).
//!
//! NVRTC needs no GPU, so this runs (and is tested) on CPU machines. cudarc finds libnvrtc by
//! `dlopen` of fixed names (`libnvrtc.so`, ..., `libnvrtc.so.12`) and panics when none loads.
//! [`load_nvrtc`] therefore opens the library first — from `$TENSORBRAIN_NVRTC_LIB` when set
//! (e.g. the `nvidia-cuda-nvrtc-cu12` wheel's `libnvrtc.so.12`, which is on no loader path),
//! else by name — and keeps it loaded. glibc's `dlopen` matches a requested name against the
//! SONAME of libraries already loaded, so cudarc's `dlopen("libnvrtc.so.12")` returns that same
//! library. Because cudarc tries `libnvrtc.so` first, a different NVRTC on the loader path could
//! win; [`load_nvrtc`] compares the version both handles report and fails if they differ.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::nvrtc::{result as nv, sys};

use super::CudaError;

/// Environment variable naming the NVRTC library to load.
pub const NVRTC_ENV: &str = "TENSORBRAIN_NVRTC_LIB";

/// Names tried when `$TENSORBRAIN_NVRTC_LIB` is not set (CUDA 12 first: cudarc is built for
/// 12.9's API).
const NVRTC_NAMES: &[&str] = &["libnvrtc.so.12", "libnvrtc.so"];

/// NVRTC's version, once loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvrtcVersion {
    pub major: i32,
    pub minor: i32,
}

/// Loads NVRTC once per process; every later call returns the first outcome.
pub fn load_nvrtc() -> Result<NvrtcVersion, CudaError> {
    static LOADED: OnceLock<Result<NvrtcVersion, CudaError>> = OnceLock::new();
    LOADED.get_or_init(load_uncached).clone()
}

fn load_uncached() -> Result<NvrtcVersion, CudaError> {
    let candidates: Vec<String> = match std::env::var(NVRTC_ENV) {
        Ok(p) if !p.is_empty() => vec![p],
        _ => NVRTC_NAMES.iter().map(|s| s.to_string()).collect(),
    };
    let mut whys = Vec::new();
    let mut lib = None;
    for c in &candidates {
        // SAFETY: loading NVRTC runs its initialisers, as any NVRTC user does.
        match unsafe { libloading::Library::new(c) } {
            Ok(l) => {
                lib = Some(l);
                break;
            }
            Err(e) => whys.push(super::driver::loader_error(&e)),
        }
    }
    let Some(lib) = lib else {
        return Err(CudaError::NoNvrtc { tried: candidates, why: whys.join("; ") });
    };
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    let ours = unsafe {
        let f: libloading::Symbol<unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int> =
            lib.get(b"nvrtcVersion\0").map_err(|e| CudaError::NoNvrtc { tried: candidates.clone(), why: super::driver::loader_error(&e) })?;
        let (mut major, mut minor) = (0, 0);
        f(&mut major, &mut minor);
        NvrtcVersion { major, minor }
    };
    // cudarc's handle: the same library if SONAME matching worked (see the module docs).
    let theirs = catch_unwind(AssertUnwindSafe(|| unsafe {
        let (mut major, mut minor) = (0, 0);
        sys::nvrtcVersion(&mut major, &mut minor);
        NvrtcVersion { major, minor }
    }))
    .map_err(|_| CudaError::NoNvrtc {
        tried: candidates.clone(),
        why: "loaded, but cudarc could not open libnvrtc by name; add its directory to LD_LIBRARY_PATH".into(),
    })?;
    if ours != theirs {
        return Err(CudaError::NoNvrtc {
            tried: candidates,
            why: format!(
                "loaded NVRTC {}.{}, but cudarc opened a different NVRTC {}.{} from the loader path",
                ours.major, ours.minor, theirs.major, theirs.minor
            ),
        });
    }
    Ok(ours)
}

/// NVRTC's output for one source.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub ptx: String,
    /// NVRTC's log; empty when there was nothing to say. Non-empty on success means warnings.
    pub log: String,
}

/// Compiles `source` (named `name` in messages) for `arch` (`sm_80`, `sm_90`, ...) to PTX.
/// `options` are extra NVRTC options. PTX is generated for the virtual architecture
/// `compute_XY`, which the driver JIT-compiles for the GPU it runs on.
pub fn compile_ptx(name: &str, source: &str, arch: &str, options: &[&str]) -> Result<Compiled, CudaError> {
    let compute = arch.strip_prefix("sm_").map(|n| format!("compute_{n}")).unwrap_or_else(|| arch.to_string());
    let (ptx, log) = compile(name, source, arch, &compute, options, false)?;
    Ok(Compiled { ptx: String::from_utf8_lossy(&ptx).trim_end_matches('\0').to_string(), log })
}

/// Compiles `source` for the real architecture `arch` (`sm_90`) to a CUBIN: NVRTC then also
/// runs ptxas, so register and shared-memory limits and ptxas's own warnings are checked too,
/// still without a GPU. Returns the CUBIN bytes and the log.
pub fn compile_cubin(name: &str, source: &str, arch: &str, options: &[&str]) -> Result<(Vec<u8>, String), CudaError> {
    compile(name, source, arch, arch, options, true)
}

fn compile(name: &str, source: &str, arch: &str, gpu_arch: &str, options: &[&str], cubin: bool) -> Result<(Vec<u8>, String), CudaError> {
    load_nvrtc()?;
    let mut opts = vec![format!("--gpu-architecture={gpu_arch}"), "--std=c++17".to_string()];
    opts.extend(options.iter().map(|s| s.to_string()));
    let err = |log: String| CudaError::Compile { name: name.to_string(), arch: arch.to_string(), log };
    let c_src = CString::new(source).map_err(|_| err("source contains a NUL byte".into()))?;
    let c_name = CString::new(name).map_err(|_| err("name contains a NUL byte".into()))?;
    let prog = nv::create_program(&c_src, Some(&c_name)).map_err(|e| err(format!("nvrtcCreateProgram: {e:?}")))?;
    // SAFETY: `prog` was created above, `c_src`/`c_name` outlive it, and it is destroyed once.
    unsafe {
        let compiled = nv::compile_program(prog, &opts);
        let log = nv::get_program_log(prog).map(|l| c_chars_to_string(&l)).unwrap_or_default();
        let result = match compiled {
            Ok(()) if cubin => get_cubin(prog).map(|b| (b, log)).map_err(|e| err(format!("nvrtcGetCUBIN: {e:?}"))),
            Ok(()) => nv::get_ptx(prog).map(|p| (p.iter().map(|&c| c as u8).collect(), log)).map_err(|e| err(format!("nvrtcGetPTX: {e:?}"))),
            Err(e) => Err(err(format!("{e:?}\n{log}"))),
        };
        let _ = nv::destroy_program(prog);
        result
    }
}

/// cudarc's `result` module has no CUBIN getter; the two sys calls it would make.
///
/// # Safety
/// `prog` must be a live, successfully compiled program.
unsafe fn get_cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, nv::NvrtcError> {
    let mut size = 0usize;
    sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
    let mut buf = vec![0u8; size];
    sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr().cast()).result()?;
    Ok(buf)
}

fn c_chars_to_string(v: &[c_char]) -> String {
    if v.is_empty() {
        return String::new();
    }
    // NVRTC's buffers end with a NUL.
    let bytes: Vec<u8> = v.iter().map(|&c| c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(s) => s.to_string_lossy().trim_end().to_string(),
        Err(_) => String::from_utf8_lossy(&bytes).trim_end().to_string(),
    }
}

/// A PTX cache: each (arch, source, options) is compiled once per process.
#[derive(Default)]
pub struct PtxCache {
    map: Mutex<HashMap<(String, u64), Arc<Compiled>>>,
    compiles: Mutex<usize>,
}

impl PtxCache {
    pub fn new() -> PtxCache {
        PtxCache::default()
    }

    /// The hash a source is cached under (the options are hashed with it, since they change the
    /// PTX as much as the source does).
    pub fn key(source: &str, options: &[&str]) -> u64 {
        let mut h = DefaultHasher::new();
        source.hash(&mut h);
        options.hash(&mut h);
        h.finish()
    }

    pub fn get_or_compile(&self, name: &str, source: &str, arch: &str, options: &[&str]) -> Result<Arc<Compiled>, CudaError> {
        let key = (arch.to_string(), Self::key(source, options));
        if let Some(c) = self.map.lock().unwrap().get(&key) {
            return Ok(c.clone());
        }
        // Compiled outside the lock: NVRTC takes tens of milliseconds, and two threads
        // compiling the same source at once only waste work.
        let c = Arc::new(compile_ptx(name, source, arch, options)?);
        *self.compiles.lock().unwrap() += 1;
        Ok(self.map.lock().unwrap().entry(key).or_insert(c).clone())
    }

    /// NVRTC invocations so far (tests check that a cache hit compiles nothing).
    pub fn compiles(&self) -> usize {
        *self.compiles.lock().unwrap()
    }
}
