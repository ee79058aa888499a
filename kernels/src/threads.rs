//! The process-wide thread budget for kernels, and helpers that honour it.
//!
//! Kernels run on rayon's global pool. The budget set here caps how many pieces a kernel splits
//! its work into (and how many threads `gemm` uses), so `set_num_threads(1)` makes every kernel
//! run on the calling thread without having to rebuild rayon's pool.

use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// 0 means "not set": follow rayon's pool size.
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Below this many (roughly element-sized) operations, handing work to rayon costs more than it
/// saves: waking a worker is a few microseconds, which is tens of thousands of cheap operations.
pub const MIN_PARALLEL_WORK: usize = 1 << 16;

/// Sets how many threads kernels may use. `0` restores the default (rayon's pool size).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n, Ordering::Relaxed);
}

/// How many threads kernels may use: the last `set_num_threads`, else rayon's pool size.
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => rayon::current_num_threads().max(1),
        n => n,
    }
}

/// Whether a job of about `work` element operations should be split across threads.
pub fn worth_parallelising(work: usize) -> bool {
    num_threads() > 1 && work >= MIN_PARALLEL_WORK
}

/// Runs `f(index, chunk)` for each `chunk_len`-sized chunk of `data` (the last may be shorter),
/// in parallel when `work` (total element operations, roughly) makes it worthwhile.
pub fn for_each_chunk_mut<T, F>(data: &mut [T], chunk_len: usize, work: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    for_each_chunk_mut_init(data, chunk_len, work, || (), |_, i, chunk| f(i, chunk));
}

/// Like [`for_each_chunk_mut`], with per-thread scratch state made by `init` (called about once
/// per thread, not once per chunk), e.g. a reusable buffer.
pub fn for_each_chunk_mut_init<T, S, I, F>(
    data: &mut [T],
    chunk_len: usize,
    work: usize,
    init: I,
    f: F,
) where
    T: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, &mut [T]) + Sync + Send,
{
    if data.is_empty() {
        return;
    }
    let chunk_len = chunk_len.max(1);
    let n_chunks = data.len().div_ceil(chunk_len);
    let threads = num_threads();
    if n_chunks < 2 || !worth_parallelising(work) {
        let mut state = init();
        for (i, chunk) in data.chunks_mut(chunk_len).enumerate() {
            f(&mut state, i, chunk);
        }
        return;
    }
    // One contiguous run of chunks per thread: caps concurrency at the budget and calls `init`
    // once per run.
    let per_thread = n_chunks.div_ceil(threads);
    data.par_chunks_mut(chunk_len)
        .enumerate()
        .with_min_len(per_thread)
        .for_each_init(init, |state, (i, chunk)| f(state, i, chunk));
}

/// Splits `0..len` into at most `num_threads()` contiguous ranges (one range when not worth
/// parallelising), for kernels that reduce per-range partial results.
pub fn split_range(len: usize, work: usize) -> Vec<std::ops::Range<usize>> {
    let parts = if worth_parallelising(work) {
        num_threads().min(len).max(1)
    } else {
        1
    };
    let base = len / parts;
    let extra = len % parts;
    let mut start = 0;
    (0..parts)
        .map(|p| {
            let end = start + base + usize::from(p < extra);
            let r = start..end;
            start = end;
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_range_covers_everything_once() {
        for len in [0, 1, 5, 17, 1000] {
            for work in [0, usize::MAX] {
                let ranges = split_range(len, work);
                assert!(ranges.len() <= num_threads().max(1));
                let mut next = 0;
                for r in &ranges {
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn chunks_visit_every_index() {
        let mut v = vec![0usize; 1003];
        for_each_chunk_mut(&mut v, 10, usize::MAX, |i, c| {
            c.iter_mut().for_each(|x| *x = i)
        });
        for (j, x) in v.iter().enumerate() {
            assert_eq!(*x, j / 10);
        }
    }
}
