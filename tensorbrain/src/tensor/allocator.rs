//! Keeps freed tensor memory in the process for reuse.
//!
//! glibc hands large freed blocks back to the system (munmap, heap trimming) and takes fresh
//! pages for the next large allocation. Training frees and reallocates the same activation-
//! sized buffers every step, and with multithreaded kernels each unmap is a TLB shootdown on
//! every core: on this project's 2-core machines that churn was half the time of a small CNN's
//! training step (`bench_static`, CNN batch 64: 18 ms, 9.7 ms without it). So, once per
//! process, the mmap and trim thresholds are raised: memory stays at the peak a step needs
//! instead of going back and forth, the trade PyTorch's caching allocator makes on GPUs.
//! `TENSORBRAIN_KEEP_FREED_MEMORY=0` leaves glibc's defaults alone.

use std::sync::Once;

/// Blocks up to this size come from the heap, where freed memory is reused (glibc's maximum).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of the heap is returned only beyond this.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1 << 30;

/// Applies the allocator settings the first time it is called.
#[inline]
pub(crate) fn keep_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TENSORBRAIN_KEEP_FREED_MEMORY").is_ok_and(|v| v == "0") {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's allocation policy; it is called before or
        // between allocations like any other malloc call (glibc serialises it internally).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    });
}
