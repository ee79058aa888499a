//! A caching device allocator, like PyTorch's CUDA caching allocator in spirit (much smaller).
//!
//! `cudaMalloc`/`cudaFree` synchronise the device and take tens of microseconds, so a training
//! step that allocated every activation from the driver would spend its time there. Instead,
//! freed blocks go to a free pool and are handed out again:
//!
//! * Sizes are rounded to classes ([`round_size`]): multiples of 512 B up to 1 MiB, multiples of
//!   2 MiB above. Rounding makes the sizes of one training step repeat exactly, so blocks fit
//!   again on the next step.
//! * One free pool per stream. Work on a stream runs in order, so a block freed by stream S can
//!   be reused at once by later work on S (that work runs after the last use). Handing it to
//!   another stream would need an event to wait on; we simply do not.
//! * Best fit with a bound ([`fits`]): the smallest cached block that is at most 25% larger
//!   than the rounded request is reused, so a small request does not pin a huge block. Blocks
//!   are never split (PyTorch splits large segments; we have not needed to yet).
//! * When the device is out of memory, the allocator frees every cached block and tries once
//!   more before reporting [`CudaError::OutOfMemory`].
//!
//! Statistics follow PyTorch's names: `allocated` (bytes in blocks handed out), `reserved`
//! (bytes obtained from the device: allocated + cached) and their peaks.
//!
//! The allocator is generic over [`DeviceMemory`], so the unit tests below run it on a mock
//! device memory on any machine; [`CudaMemory`] is the real one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::driver::StreamId;
use super::CudaError;

/// Where blocks come from: device memory (or a mock of it in tests).
pub trait DeviceMemory {
    /// Allocates `bytes` bytes and returns the device address, or the reason it failed.
    fn malloc(&mut self, bytes: usize) -> Result<u64, String>;
    /// Returns a block obtained from `malloc` with the same `bytes`.
    fn free(&mut self, ptr: u64, bytes: usize) -> Result<(), String>;
}

/// Allocation granularity of small blocks.
pub const SMALL_ALIGN: usize = 512;
/// Largest size rounded to [`SMALL_ALIGN`].
pub const SMALL_MAX: usize = 1 << 20;
/// Granularity of large blocks.
pub const LARGE_ALIGN: usize = 2 << 20;

/// The size class of a request of `bytes` (0 is treated as 1, so every block has an address).
pub fn round_size(bytes: usize) -> usize {
    let b = bytes.max(1);
    let align = if b <= SMALL_MAX { SMALL_ALIGN } else { LARGE_ALIGN };
    b.div_ceil(align) * align
}

/// Whether a cached block of `block` bytes may serve a request rounded to `rounded` bytes.
pub fn fits(block: usize, rounded: usize) -> bool {
    block >= rounded && block - rounded <= rounded / 4
}

/// A block handed out by the allocator. Give it back with [`CachingAllocator::free`].
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    pub ptr: u64,
    /// Bytes the block really has (a size class, at least what was asked for).
    pub size: usize,
    /// Bytes that were asked for.
    pub requested: usize,
    pub stream: StreamId,
}

/// PyTorch-style memory statistics, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub allocated: usize,
    pub reserved: usize,
    pub peak_allocated: usize,
    pub peak_reserved: usize,
    /// Requests served from a free pool.
    pub cache_hits: usize,
    /// Requests that went to the device.
    pub device_mallocs: usize,
    pub device_frees: usize,
    /// Times the cache was emptied to retry a failed device allocation.
    pub oom_retries: usize,
}

pub struct CachingAllocator<M: DeviceMemory> {
    mem: M,
    /// Per stream: size -> addresses of free blocks of that size.
    pools: HashMap<StreamId, BTreeMap<usize, Vec<u64>>>,
    /// Blocks handed out: address -> (size, stream). Catches double frees and foreign blocks.
    live: HashMap<u64, (usize, StreamId)>,
    stats: MemoryStats,
}

impl<M: DeviceMemory> CachingAllocator<M> {
    pub fn new(mem: M) -> Self {
        CachingAllocator { mem, pools: HashMap::new(), live: HashMap::new(), stats: MemoryStats::default() }
    }

    pub fn stats(&self) -> MemoryStats {
        self.stats
    }

    /// Bytes held in free pools (reserved but not allocated).
    pub fn cached(&self) -> usize {
        self.stats.reserved - self.stats.allocated
    }

    /// A block of at least `bytes` bytes for use on `stream`.
    pub fn alloc(&mut self, bytes: usize, stream: StreamId) -> Result<Block, CudaError> {
        let rounded = round_size(bytes);
        let ptr_size = self.take_cached(rounded, stream);
        let (ptr, size) = match ptr_size {
            Some(b) => {
                self.stats.cache_hits += 1;
                b
            }
            None => (self.malloc_with_retry(rounded, bytes)?, rounded),
        };
        self.live.insert(ptr, (size, stream));
        self.stats.allocated += size;
        self.stats.peak_allocated = self.stats.peak_allocated.max(self.stats.allocated);
        Ok(Block { ptr, size, requested: bytes, stream })
    }

    /// The smallest cached block on `stream` that [`fits`] `rounded`.
    fn take_cached(&mut self, rounded: usize, stream: StreamId) -> Option<(u64, usize)> {
        let pool = self.pools.get_mut(&stream)?;
        let (&size, list) = pool.range_mut(rounded..).next()?;
        if !fits(size, rounded) {
            return None;
        }
        let ptr = list.pop().expect("free lists are removed when empty");
        if list.is_empty() {
            pool.remove(&size);
        }
        Some((ptr, size))
    }

    fn malloc_with_retry(&mut self, rounded: usize, requested: usize) -> Result<u64, CudaError> {
        let ptr = match self.mem.malloc(rounded) {
            Ok(p) => p,
            Err(_) => {
                // Cached blocks of other sizes or streams may be what stands in the way.
                self.stats.oom_retries += 1;
                self.empty_cache()?;
                self.mem.malloc(rounded).map_err(|why| CudaError::OutOfMemory { requested, reserved: self.stats.reserved, why })?
            }
        };
        self.stats.device_mallocs += 1;
        self.stats.reserved += rounded;
        self.stats.peak_reserved = self.stats.peak_reserved.max(self.stats.reserved);
        Ok(ptr)
    }

    /// Returns `block` to its stream's free pool.
    ///
    /// # Panics
    /// If the block was not handed out by this allocator or was freed already: both are bugs
    /// that would otherwise let two tensors share memory.
    pub fn free(&mut self, block: Block) {
        let Some((size, stream)) = self.live.remove(&block.ptr) else {
            panic!("caching allocator: block at {:#x} is not live (double free or foreign block)", block.ptr);
        };
        assert_eq!((size, stream), (block.size, block.stream), "caching allocator: block at {:#x} changed", block.ptr);
        self.stats.allocated -= size;
        self.pools.entry(stream).or_default().entry(size).or_default().push(block.ptr);
    }

    /// Gives every cached (free) block back to the device, like `torch.cuda.empty_cache()`.
    /// Blocks in use are untouched.
    pub fn empty_cache(&mut self) -> Result<(), CudaError> {
        let pools = std::mem::take(&mut self.pools);
        let mut first_err = None;
        for (_, pool) in pools {
            for (size, ptrs) in pool {
                for ptr in ptrs {
                    match self.mem.free(ptr, size) {
                        Ok(()) => {
                            self.stats.device_frees += 1;
                            self.stats.reserved -= size;
                        }
                        Err(e) => {
                            first_err.get_or_insert(CudaError::Driver { during: format!("freeing {size} bytes at {ptr:#x}"), error: e });
                        }
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Device memory of one CUDA context, through the driver's `cuMemAlloc`/`cuMemFree`.
pub struct CudaMemory {
    ctx: Arc<cudarc::driver::CudaContext>,
}

impl CudaMemory {
    pub fn new(device: &super::driver::Device) -> CudaMemory {
        CudaMemory { ctx: device.context().clone() }
    }
}

impl DeviceMemory for CudaMemory {
    fn malloc(&mut self, bytes: usize) -> Result<u64, String> {
        self.ctx.bind_to_thread().map_err(|e| format!("{e:?}"))?;
        // SAFETY: the context is current on this thread; the address is freed by `free`.
        unsafe { cudarc::driver::result::malloc_sync(bytes) }.map_err(|e| format!("{e:?}"))
    }

    fn free(&mut self, ptr: u64, _bytes: usize) -> Result<(), String> {
        self.ctx.bind_to_thread().map_err(|e| format!("{e:?}"))?;
        // SAFETY: `ptr` came from `malloc` above and the allocator frees each block once.
        unsafe { cudarc::driver::result::free_sync(ptr) }.map_err(|e| format!("{e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device with `capacity` bytes that hands out increasing addresses and checks frees.
    struct MockMemory {
        capacity: usize,
        used: usize,
        next: u64,
        live: HashMap<u64, usize>,
        mallocs: usize,
    }

    impl MockMemory {
        fn new(capacity: usize) -> Self {
            MockMemory { capacity, used: 0, next: 0x1000_0000, live: HashMap::new(), mallocs: 0 }
        }
    }

    impl DeviceMemory for MockMemory {
        fn malloc(&mut self, bytes: usize) -> Result<u64, String> {
            if self.used + bytes > self.capacity {
                return Err(format!("mock out of memory ({} + {bytes} > {})", self.used, self.capacity));
            }
            self.used += bytes;
            self.mallocs += 1;
            let p = self.next;
            self.next += bytes as u64;
            self.live.insert(p, bytes);
            Ok(p)
        }

        fn free(&mut self, ptr: u64, bytes: usize) -> Result<(), String> {
            match self.live.remove(&ptr) {
                Some(b) if b == bytes => {
                    self.used -= bytes;
                    Ok(())
                }
                other => Err(format!("mock: bad free of {ptr:#x} ({bytes} bytes), live entry {other:?}")),
            }
        }
    }

    const S0: StreamId = StreamId(0);
    const S1: StreamId = StreamId(1);
    const MB: usize = 1 << 20;

    #[test]
    fn sizes_round_to_classes() {
        assert_eq!(round_size(0), 512);
        assert_eq!(round_size(1), 512);
        assert_eq!(round_size(512), 512);
        assert_eq!(round_size(513), 1024);
        assert_eq!(round_size(MB), MB);
        assert_eq!(round_size(MB + 1), 2 * MB);
        assert_eq!(round_size(5 * MB), 6 * MB);
    }

    #[test]
    fn a_freed_block_is_reused_on_its_stream() {
        let mut a = CachingAllocator::new(MockMemory::new(100 * MB));
        let b = a.alloc(1000, S0).unwrap();
        let p = b.ptr;
        assert_eq!(b.size, 1024);
        a.free(b);
        let b2 = a.alloc(700, S0).unwrap(); // same class (1024)
        assert_eq!(b2.ptr, p);
        let s = a.stats();
        assert_eq!((s.device_mallocs, s.cache_hits), (1, 1));
        assert_eq!(a.mem.mallocs, 1);
        a.free(b2);
    }

    #[test]
    fn a_block_freed_on_one_stream_is_not_given_to_another() {
        let mut a = CachingAllocator::new(MockMemory::new(100 * MB));
        let b = a.alloc(4096, S0).unwrap();
        let p = b.ptr;
        a.free(b);
        let other = a.alloc(4096, S1).unwrap();
        assert_ne!(other.ptr, p);
        assert_eq!(a.stats().device_mallocs, 2);
        // Back on S0 the cached block is used.
        assert_eq!(a.alloc(4096, S0).unwrap().ptr, p);
    }

    #[test]
    fn a_small_request_does_not_take_a_much_larger_block() {
        let mut a = CachingAllocator::new(MockMemory::new(100 * MB));
        let big = a.alloc(10 * MB, S0).unwrap();
        let big_ptr = big.ptr;
        a.free(big);
        let small = a.alloc(512, S0).unwrap();
        assert_ne!(small.ptr, big_ptr);
        // 8 MiB is 2 MiB (25%) under the cached 10 MiB block: that block is reused, and its full
        // size counts as allocated.
        let near = a.alloc(8 * MB, S0).unwrap();
        assert_eq!((near.ptr, near.size), (big_ptr, 10 * MB));
        assert_eq!(a.stats().allocated, 10 * MB + 512);
    }

    #[test]
    fn best_fit_takes_the_smallest_block_that_fits() {
        let mut a = CachingAllocator::new(MockMemory::new(100 * MB));
        let b1 = a.alloc(4608, S0).unwrap(); // 4608 (9 * 512)
        let b2 = a.alloc(4096, S0).unwrap();
        let p2 = b2.ptr;
        a.free(b1);
        a.free(b2);
        assert_eq!(a.alloc(4000, S0).unwrap().ptr, p2);
    }

    #[test]
    fn stats_track_allocated_reserved_and_peaks() {
        let mut a = CachingAllocator::new(MockMemory::new(100 * MB));
        let x = a.alloc(3 * MB, S0).unwrap(); // 4 MiB
        let y = a.alloc(100, S0).unwrap(); // 512
        let s = a.stats();
        assert_eq!((s.allocated, s.reserved), (4 * MB + 512, 4 * MB + 512));
        a.free(x);
        let s = a.stats();
        assert_eq!((s.allocated, s.reserved, s.peak_allocated), (512, 4 * MB + 512, 4 * MB + 512));
        assert_eq!(a.cached(), 4 * MB);
        a.empty_cache().unwrap();
        let s = a.stats();
        assert_eq!((s.allocated, s.reserved, s.peak_reserved), (512, 512, 4 * MB + 512));
        assert_eq!(a.mem.used, 512);
        assert_eq!(s.device_frees, 1);
        a.free(y);
        a.empty_cache().unwrap();
        assert_eq!(a.mem.used, 0);
        assert_eq!(a.stats().reserved, 0);
    }

    #[test]
    fn out_of_memory_empties_the_cache_and_retries() {
        let mut a = CachingAllocator::new(MockMemory::new(10 * MB));
        let x = a.alloc(6 * MB, S1).unwrap();
        a.free(x); // 6 MiB cached on S1
        // 6 MiB on S0 does not fit next to the cached block: the cache is emptied, then it does.
        let y = a.alloc(6 * MB, S0).unwrap();
        let s = a.stats();
        assert_eq!((s.oom_retries, s.device_frees, s.reserved), (1, 1, 6 * MB));
        // Really out of memory: a clear error with the numbers.
        let err = a.alloc(8 * MB, S0).unwrap_err();
        assert!(matches!(err, CudaError::OutOfMemory { requested, reserved, .. } if requested == 8 * MB && reserved == 6 * MB), "{err:?}");
        assert!(err.to_string().contains("mock out of memory"), "{err}");
        a.free(y);
    }

    #[test]
    #[should_panic(expected = "not live")]
    fn a_double_free_panics() {
        let mut a = CachingAllocator::new(MockMemory::new(MB));
        let b = a.alloc(10, S0).unwrap();
        let copy = Block { ptr: b.ptr, size: b.size, requested: b.requested, stream: b.stream };
        a.free(b);
        a.free(copy);
    }
}
