//! Matrix multiplication on strided operands, on top of the `gemm` crate.
//!
//! Every matrix is given as (slice, offset, row stride, column stride), in elements, so
//! transposed and sliced views multiply without a copy. f32, f64 and f16 go straight to `gemm`
//! (which dispatches on `TypeId` and packs strided operands itself); bf16, which `gemm` lacks,
//! is widened to f32, multiplied and rounded back once.

use crate::{threads, transpose, Float};
use half::bf16;
use std::any::TypeId;
use rayon::prelude::*;
use std::cell::Cell;

/// From this many rows of A up, an f32 B whose contraction index is contiguous (a view of a
/// row-major `[n, k]` matrix, as `x·Wᵀ` gives) is transposed to row-major before `gemm` sees
/// it: `gemm` packs such a B an element at a time at a stride of `k`, 3–18× slower than a
/// row-major B at these sizes (`gemm_layouts` example). Below it the product is close to a
/// matrix-vector one that reads each element of B about once, and the copy would not pay.
const TRANSPOSE_B_MIN_M: usize = 2;

/// Whether an f32 B given as a view of a row-major `[n, k]` matrix is transposed before
/// `gemm`, for `m` rows of A split into `parts` column blocks ([`column_parts`]).
///
/// From [`TRANSPOSE_B_MIN_M`] rows: when the product is split by columns, each thread
/// transposes its own block, and that won at every split size (`gemm_layouts`, 2 threads,
/// ours against `gemm` on the view, GFLOP/s: 64×784×256 110 vs 85, 64×2048×512 101 vs 57,
/// 256×1024×1024 143 vs 124). Unsplit, the transpose runs on one thread ahead of the product
/// and pays only for few rows (Intel Xeon model 207, 1 thread: 32×1024×144 50 vs 19,
/// 16×1024×1024 19 vs 13, but 64×784×256 83 vs 107 and level from 64 rows on at the other
/// shapes); with more rows `gemm` packs B itself, amortised over them.
fn transposes_b(m: usize, parts: usize) -> bool {
    m >= TRANSPOSE_B_MIN_M && (parts > 1 || m < TRANSPOSE_B_UNSPLIT_MAX_M)
}

/// Below this many rows of A, an unsplit product still transposes B ([`transposes_b`]).
const TRANSPOSE_B_UNSPLIT_MAX_M: usize = 64;

/// Transposed copies of B above this size are not kept for reuse, so a thread does not hold on
/// to the largest one it ever made.
const KEEP_SCRATCH_MAX: usize = 4 << 20;

thread_local! {
    /// Per-thread buffer for transposed B operands, reused across products.
    static B_SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// A strided matrix view into a slice: element (i, j) is at `offset + i*rs + j*cs`.
#[derive(Clone, Copy, Debug)]
struct View {
    offset: usize,
    rs: isize,
    cs: isize,
}

impl View {
    fn new(offset: usize, rs: isize, cs: isize) -> Self {
        View { offset, rs, cs }
    }

    /// A row-major matrix with `cols` columns at the start of its slice.
    fn row_major(cols: usize) -> Self {
        View::new(0, cols as isize, 1)
    }

    /// The smallest and largest element index the view touches, or `None` on overflow.
    fn index_range(self, rows: usize, cols: usize) -> Option<(isize, isize)> {
        let span = |len: usize, stride: isize| -> Option<(isize, isize)> {
            let last = isize::try_from(len - 1).ok()?.checked_mul(stride)?;
            Some((last.min(0), last.max(0)))
        };
        let (r_lo, r_hi) = span(rows, self.rs)?;
        let (c_lo, c_hi) = span(cols, self.cs)?;
        let base = isize::try_from(self.offset).ok()?;
        Some((
            base.checked_add(r_lo)?.checked_add(c_lo)?,
            base.checked_add(r_hi)?.checked_add(c_hi)?,
        ))
    }

    /// Panics unless every element of a `rows`×`cols` view lies inside a slice of length `len`.
    ///
    /// Checked in release too: it guards the raw-pointer call into `gemm` and costs nothing
    /// next to the multiplication.
    fn check_fits(self, rows: usize, cols: usize, len: usize, name: &str) {
        if rows == 0 || cols == 0 {
            return;
        }
        let fits = match self.index_range(rows, cols) {
            Some((lo, hi)) => lo >= 0 && (hi as usize) < len,
            None => false,
        };
        assert!(
            fits,
            "matmul: {name} view ({rows}x{cols}, offset {}, strides [{}, {}]) does not fit in a \
             slice of {len} elements",
            self.offset, self.rs, self.cs
        );
    }

    /// Panics if two different elements of the view share a memory location. Writing such a
    /// view from several gemm threads would be a data race.
    fn check_distinct(self, rows: usize, cols: usize) {
        if rows == 0 || cols == 0 {
            return;
        }
        let mut dims = [
            (rows, self.rs.unsigned_abs()),
            (cols, self.cs.unsigned_abs()),
        ];
        dims.sort_by_key(|&(_, s)| s);
        let mut reach = 1; // the smallest stride the next dim needs to step past the ones before
        for (len, stride) in dims {
            if len <= 1 {
                continue;
            }
            assert!(
                stride >= reach,
                "matmul: output view overlaps itself (strides [{}, {}])",
                self.rs,
                self.cs
            );
            reach = stride.saturating_mul(len);
        }
    }
}

/// `gemm`'s threading for an `m`×`k`×`n` product when allowed `threads` threads.
fn parallelism(threads: usize, m: usize, k: usize, n: usize) -> gemm::Parallelism {
    let work = m.saturating_mul(k).saturating_mul(n);
    // Below gemm's own threshold it would run single-threaded anyway; skip its bookkeeping.
    if threads > 1 && work >= gemm::get_threading_threshold() {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// C (+)= A·B, with A `m`×`k`, B `k`×`n` and C `m`×`n`, all strided (see the module docs);
/// C starts at `c[0]`. `accumulate` adds to C instead of overwriting it. When `k == 0` the
/// product is zero: C is zeroed, or left unchanged when accumulating.
///
/// Uses up to [`threads::num_threads`] threads for large products.
///
/// # Panics
/// If a view does not fit in its slice, or C's view maps two elements to one location.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    a_offset: usize,
    a_rs: isize,
    a_cs: isize,
    b: &[T],
    b_offset: usize,
    b_rs: isize,
    b_cs: isize,
    c: &mut [T],
    c_rs: isize,
    c_cs: isize,
    accumulate: bool,
) {
    #[rustfmt::skip]
    matmul_with_threads(
        threads::num_threads(), m, k, n,
        a, a_offset, a_rs, a_cs,
        b, b_offset, b_rs, b_cs,
        c, c_rs, c_cs,
        accumulate,
    );
}

/// [`matmul`] with an explicit thread budget; `threads == 1` runs on the calling thread, which
/// is what a caller already parallelising over independent products wants.
#[allow(clippy::too_many_arguments)]
pub fn matmul_with_threads<T: Float>(
    threads: usize,
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    a_offset: usize,
    a_rs: isize,
    a_cs: isize,
    b: &[T],
    b_offset: usize,
    b_rs: isize,
    b_cs: isize,
    c: &mut [T],
    c_rs: isize,
    c_cs: isize,
    accumulate: bool,
) {
    let a_view = View::new(a_offset, a_rs, a_cs);
    let b_view = View::new(b_offset, b_rs, b_cs);
    let c_view = View::new(0, c_rs, c_cs);
    a_view.check_fits(m, k, a.len(), "A");
    b_view.check_fits(k, n, b.len(), "B");
    c_view.check_fits(m, n, c.len(), "C");
    c_view.check_distinct(m, n);

    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for_each_index(m, n, c_view, |i| c[i] = T::zero());
        }
        return;
    }
    let par = parallelism(threads, m, k, n);
    let parts = column_parts(par, m, n);
    if TypeId::of::<T>() == TypeId::of::<f32>() && b_view.rs == 1 && b_view.cs > 1 && n > 1 && transposes_b(m, parts) {
        // SAFETY: T is f32 (checked just above), so the slice casts are identities.
        let (a32, b32): (&[f32], &[f32]) = unsafe { (std::slice::from_raw_parts(a.as_ptr().cast(), a.len()), std::slice::from_raw_parts(b.as_ptr().cast(), b.len())) };
        let c32 = SendPtr(c.as_mut_ptr().cast::<f32>());
        let part_cols = n.div_ceil(parts);
        let one_part = |j0: usize, par: gemm::Parallelism| {
            let nj = part_cols.min(n - j0);
            let mut bt = B_SCRATCH.take();
            let ldb = transpose::padded_ld(nj);
            bt.resize((k - 1) * ldb + nj, 0.0);
            // B's columns j0.. (each contiguous) are the rows of a row-major matrix `cs` apart.
            transpose::transpose_f32(nj, k, b32, b_view.offset + j0 * b_view.cs as usize, b_view.cs as usize, &mut bt, ldb);
            // SAFETY: as below, with B the freshly filled `bt` (rows `ldb` apart) and C its
            // columns j0..j0+nj, which no other part writes.
            unsafe { gemm_raw(m, k, nj, a32, a_view, &bt, View::new(0, ldb as isize, 1), c32.at(j0 as isize * c_view.cs), c_view, accumulate, par) };
            if bt.len() <= KEEP_SCRATCH_MAX {
                B_SCRATCH.set(bt);
            }
        };
        if parts > 1 {
            (0..parts).into_par_iter().for_each(|p| one_part(p * part_cols, gemm::Parallelism::None));
        } else {
            one_part(0, par);
        }
        return;
    }
    if TypeId::of::<T>() == TypeId::of::<bf16>() {
        matmul_via_f32(m, k, n, a, a_view, b, b_view, c, c_view, accumulate, par);
    } else {
        // SAFETY: the checks above keep every index of A, B and C inside its slice, C's
        // elements are distinct, and `c` is borrowed mutably so nothing else aliases it.
        // T is f32, f64 or f16 (the `Float` types other than bf16), which `gemm` supports.
        unsafe { gemm_raw(m, k, n, a, a_view, b, b_view, c.as_mut_ptr(), c_view, accumulate, par) }
    }
}

/// How many column blocks a product with a transposed B splits into, each transposed and
/// multiplied on a thread of its own: for a few rows of A (a batch of activations times `Wᵀ`)
/// `gemm`'s own threading split the product poorly and the transpose ran on one thread
/// (64×784 · (256×784)ᵀ: 127 GFLOP/s on 2 threads against PyTorch's 173, `bench_all`).
/// Split, `gemm_layouts` on 2 threads (best of 4 interleaved runs, before → after) gave
/// 118 → 170 there, 99 → 124 at 64×2048×512, 50 → 97 at 16×1024×1024, 155 → 184 at
/// 256×1024×1024. Large A keeps `gemm`'s split.
fn column_parts(par: gemm::Parallelism, m: usize, n: usize) -> usize {
    match par {
        gemm::Parallelism::Rayon(t) if m <= COLUMN_SPLIT_MAX_M => t.min(n / COLUMN_SPLIT_MIN_COLS).max(1),
        _ => 1,
    }
}

/// Up to this many rows of A, [`column_parts`] splits by columns.
const COLUMN_SPLIT_MAX_M: usize = 256;
/// Fewest columns of C per part: 72-column halves of a 32×1024×144 product ran at 46 GFLOP/s
/// on two threads against 69 unsplit (`gemm_layouts`).
const COLUMN_SPLIT_MIN_COLS: usize = 128;

/// A pointer to C shared by threads that write disjoint parts of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used to hand threads disjoint column blocks of one output.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The element `offset` elements on.
    ///
    /// # Safety
    /// `offset` must stay inside the allocation.
    unsafe fn at(self, offset: isize) -> *mut f32 {
        self.0.offset(offset)
    }
}

/// Calls `gemm::gemm` on validated views: dst := 1·dst + 1·A·B, or A·B when not reading dst.
/// C is a pointer so that threads can each be handed a column block of one output.
///
/// # Safety
/// Every element of the views must be in bounds (A and B in their slices, C in the allocation
/// behind `c`), C's elements distinct and written by no one else meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: 'static + Copy + num_traits::One>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    a_view: View,
    b: &[T],
    b_view: View,
    c: *mut T,
    c_view: View,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    let one = T::one();
    gemm::gemm(
        m,
        n,
        k,
        c.add(c_view.offset),
        c_view.cs,
        c_view.rs,
        accumulate,
        a.as_ptr().add(a_view.offset),
        a_view.cs,
        a_view.rs,
        b.as_ptr().add(b_view.offset),
        b_view.cs,
        b_view.rs,
        one,
        one,
        false,
        false,
        false,
        par,
    );
}

/// For types `gemm` lacks (bf16): widen to contiguous f32, multiply, round back once.
#[allow(clippy::too_many_arguments)]
fn matmul_via_f32<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    a_view: View,
    b: &[T],
    b_view: View,
    c: &mut [T],
    c_view: View,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    let a32 = gather_f32(a, a_view, m, k);
    let b32 = gather_f32(b, b_view, k, n);
    let mut c32 = if accumulate {
        gather_f32(c, c_view, m, n)
    } else {
        vec![0.0; m * n]
    };
    let (a32_view, b32_view, c32_view) =
        (View::row_major(k), View::row_major(n), View::row_major(n));
    // SAFETY: freshly allocated contiguous buffers of exactly the viewed sizes.
    unsafe {
        gemm_raw(
            m, k, n, &a32, a32_view, &b32, b32_view, c32.as_mut_ptr(), c32_view, accumulate, par,
        )
    };
    let mut src = c32.into_iter();
    for_each_index(m, n, c_view, |i| {
        c[i] = T::from_f64(f64::from(src.next().unwrap_or_default()))
    });
}

/// Copies a strided view into a new row-major f32 buffer.
fn gather_f32<T: Float>(x: &[T], view: View, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for_each_index(rows, cols, view, |i| out.push(x[i].to_f64() as f32));
    out
}

/// Calls `f` with the slice index of each element of a validated view, in row-major order.
fn for_each_index(rows: usize, cols: usize, view: View, mut f: impl FnMut(usize)) {
    for i in 0..rows {
        let row = view.offset as isize + i as isize * view.rs;
        for j in 0..cols {
            f((row + j as isize * view.cs) as usize);
        }
    }
}

/// A batch of products C[p] (+)= A[p]·B[p], one per entry of `offsets`.
///
/// Every A[p] is an `m`×`k` view of `a` at `offsets[p].0` with strides (`a_rs`, `a_cs`), every
/// B[p] a `k`×`n` view of `b` at `offsets[p].1`; a broadcast batch dim just repeats an offset.
/// C is contiguous `[batch, m, n]` with `batch = offsets.len()`.
///
/// Many small products run in parallel across the batch, each on one thread; a few large ones
/// run one after another, each using all threads.
///
/// # Panics
/// If `c.len() != offsets.len() * m * n` or a view does not fit in its slice.
#[allow(clippy::too_many_arguments)]
pub fn batched_matmul<T: Float>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    a_rs: isize,
    a_cs: isize,
    b: &[T],
    b_rs: isize,
    b_cs: isize,
    offsets: &[(usize, usize)],
    c: &mut [T],
    accumulate: bool,
) {
    let batch = offsets.len();
    let c_len = m * n;
    assert_eq!(
        c.len(),
        batch * c_len,
        "batched_matmul: C must be contiguous [batch={batch}, {m}, {n}]"
    );
    if c_len == 0 {
        return;
    }
    let one = |threads: usize, p: usize, c_p: &mut [T]| {
        let (a_off, b_off) = offsets[p];
        matmul_with_threads(
            threads, m, k, n, a, a_off, a_rs, a_cs, b, b_off, b_rs, b_cs, c_p, n as isize, 1,
            accumulate,
        );
    };
    let threads = threads::num_threads();
    let per_item = m * n * k.max(1);
    let total = per_item.saturating_mul(batch);
    // Splitting the batch balances well once there are several items per thread, and is the
    // only useful split when each product is too small for gemm to thread.
    let split_batch = batch >= 2 * threads || per_item < gemm::get_threading_threshold();
    if split_batch && batch > 1 {
        threads::for_each_chunk_mut(c, c_len, total, |p, c_p| one(1, p, c_p));
    } else {
        for (p, c_p) in c.chunks_mut(c_len).enumerate() {
            one(threads, p, c_p);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Deterministic random data and tolerant comparisons, shared by the kernels' unit tests.
    use crate::Float;

    /// SplitMix64: tiny, seedable, good enough for test data.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [0, n).
        pub fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
        /// Uniform in [-1, 1).
        pub fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
        pub fn vec<T: Float>(&mut self, len: usize) -> Vec<T> {
            (0..len).map(|_| T::from_f64(self.uniform())).collect()
        }
    }

    /// Asserts |got - want| <= tol * (1 + |want|) elementwise.
    pub fn assert_close<T: Float>(got: &[T], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let g = Float::to_f64(*g);
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "{what}: element {i}: got {g}, want {w}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{assert_close, Rng};
    use super::*;
    use half::f16;

    /// A strided operand for the reference: its slice plus view.
    struct Operand<T> {
        data: Vec<T>,
        view: View,
    }

    /// A random `rows`×`cols` operand laid out one of four ways: row-major, column-major
    /// (a transposed view), row-major with padded rows at an offset, or with reversed rows.
    fn operand<T: Float>(rng: &mut Rng, rows: usize, cols: usize, layout: usize) -> Operand<T> {
        let (r, c) = (rows as isize, cols as isize);
        let (len, view) = match layout {
            0 => (rows * cols, View::row_major(cols)),
            1 => (rows * cols, View::new(0, 1, r)),
            2 => (3 + rows * (cols + 2), View::new(3, c + 2, 1)),
            _ => (rows * cols, View::new(rows.saturating_sub(1) * cols, -c, 1)),
        };
        Operand {
            data: rng.vec(len),
            view,
        }
    }

    fn at<T: Float>(op: &Operand<T>, i: usize, j: usize) -> f64 {
        op.data
            [(op.view.offset as isize + i as isize * op.view.rs + j as isize * op.view.cs) as usize]
            .to_f64()
    }

    fn reference<T: Float>(
        m: usize,
        k: usize,
        n: usize,
        a: &Operand<T>,
        b: &Operand<T>,
        c0: &[T],
        acc: bool,
    ) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| at(a, i, p) * at(b, p, j)).sum();
                out[i * n + j] = dot + if acc { c0[i * n + j].to_f64() } else { 0.0 };
            }
        }
        out
    }

    fn check_type<T: Float>(tol: f64, seed: u64) {
        let mut rng = Rng::new(seed);
        let shapes = [
            (1, 1, 1),
            (3, 5, 7),
            (17, 9, 33),
            (64, 1, 5),
            (2, 70, 3),
            (0, 4, 3),
            (5, 0, 6),
            (4, 3, 0),
            (40, 48, 50),
        ];
        for (s, &(m, k, n)) in shapes.iter().enumerate() {
            for acc in [false, true] {
                let la = (s + usize::from(acc)) % 4;
                let lb = (s * 3 + 1) % 4;
                let a = operand::<T>(&mut rng, m, k, la);
                let b = operand::<T>(&mut rng, k, n, lb);
                let c0: Vec<T> = rng.vec(m * n);
                let want = reference(m, k, n, &a, &b, &c0, acc);
                // C transposed (column-major) on odd shapes, to exercise gemm's transposition.
                let (c_rs, c_cs) = if s % 2 == 1 {
                    (1, m as isize)
                } else {
                    (n as isize, 1)
                };
                let mut c = vec![T::zero(); m * n];
                for i in 0..m {
                    for j in 0..n {
                        c[(i as isize * c_rs + j as isize * c_cs) as usize] = c0[i * n + j];
                    }
                }
                let (av, bv) = (a.view, b.view);
                matmul(
                    m, k, n, &a.data, av.offset, av.rs, av.cs, &b.data, bv.offset, bv.rs, bv.cs,
                    &mut c, c_rs, c_cs, acc,
                );
                let got: Vec<T> = (0..m * n)
                    .map(|e| c[((e / n) as isize * c_rs + (e % n) as isize * c_cs) as usize])
                    .collect();
                assert_close(
                    &got,
                    &want,
                    tol * (k as f64).max(1.0),
                    &format!("m={m} k={k} n={n} acc={acc}"),
                );
            }
        }
    }

    #[test]
    fn matmul_f32() {
        check_type::<f32>(1e-6, 1);
    }

    #[test]
    fn matmul_f64() {
        check_type::<f64>(1e-14, 2);
    }

    #[test]
    fn matmul_f16() {
        check_type::<f16>(2e-3, 3);
    }

    #[test]
    fn matmul_bf16() {
        check_type::<bf16>(1e-2, 4);
    }

    /// f32 B given as Wᵀ (a view of a row-major `[n, k]` matrix with padded rows, at an
    /// offset) is transposed before `gemm` from two rows of A up (below 64 unless split), into a buffer whose rows are
    /// padded when `n` is a multiple of 256, and split into column blocks across threads when A
    /// has few rows: every such shape, threaded or not, accumulating or not, against the f64
    /// reference; unsplit with more rows (300, or 70 on one thread) `gemm` takes the view as it is.
    #[test]
    fn matmul_f32_with_transposed_b() {
        assert_eq!((column_parts(parallelism(2, 70, 31, 300), 70, 300), column_parts(parallelism(4, 40, 200, 601), 40, 601)), (2, 4));
        let mut rng = Rng::new(6);
        // (70, 31, 300) and (40, 200, 601) are split into column blocks on 2 and 4 threads, the last
        // block shorter.
        for &(m, k, n) in &[(1, 33, 256), (2, 7, 3), (3, 64, 256), (9, 100, 512), (70, 31, 300), (16, 1, 260), (40, 200, 601), (300, 20, 40)] {
            for (threads, acc) in [(1, false), (2, true), (4, false)] {
                let (offset, ld) = (5, k + 3);
                let b = Operand::<f32> { data: rng.vec(offset + n * ld), view: View::new(offset, 1, ld as isize) };
                let a = operand::<f32>(&mut rng, m, k, 0);
                let c0: Vec<f32> = rng.vec(m * n);
                let want = reference(m, k, n, &a, &b, &c0, acc);
                let mut c = c0.clone();
                matmul_with_threads(threads, m, k, n, &a.data, 0, k as isize, 1, &b.data, offset, 1, ld as isize, &mut c, n as isize, 1, acc);
                assert_close(&c, &want, 1e-6 * k as f64, &format!("m={m} k={k} n={n} threads={threads} acc={acc}"));
            }
        }
    }

    #[test]
    fn matmul_large_threads_agree_with_serial() {
        let mut rng = Rng::new(5);
        let (m, k, n) = (130, 257, 190);
        let a: Vec<f64> = rng.vec(m * k);
        let b: Vec<f64> = rng.vec(k * n);
        let mut c1 = vec![0.0; m * n];
        let mut c2 = vec![0.0; m * n];
        matmul_with_threads(
            1, m, k, n, &a, 0, k as isize, 1, &b, 0, n as isize, 1, &mut c1, n as isize, 1, false,
        );
        matmul_with_threads(
            4, m, k, n, &a, 0, k as isize, 1, &b, 0, n as isize, 1, &mut c2, n as isize, 1, false,
        );
        assert_close(&c2, &c1, 1e-12, "threaded vs serial");
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn matmul_rejects_short_slice() {
        let a = [1.0f32; 5];
        let b = [1.0f32; 6];
        let mut c = [0.0f32; 4];
        matmul(2, 3, 2, &a, 0, 3, 1, &b, 0, 2, 1, &mut c, 2, 1, false);
    }

    #[test]
    #[should_panic(expected = "overlaps itself")]
    fn matmul_rejects_overlapping_output() {
        let a = [1.0f32; 6];
        let b = [1.0f32; 6];
        let mut c = [0.0f32; 4];
        matmul(2, 3, 2, &a, 0, 3, 1, &b, 0, 2, 1, &mut c, 1, 1, false);
    }

    fn check_batched<T: Float>(batch: usize, m: usize, k: usize, n: usize, tol: f64, seed: u64) {
        let mut rng = Rng::new(seed);
        // A broadcast over the batch is modelled by a shared A every other item; B is per item
        // and transposed.
        let a: Vec<T> = rng.vec(2 * m * k);
        let b: Vec<T> = rng.vec(batch * k * n);
        let offsets: Vec<(usize, usize)> =
            (0..batch).map(|p| ((p % 2) * m * k, p * k * n)).collect();
        let c0: Vec<T> = rng.vec(batch * m * n);
        for acc in [false, true] {
            let mut c = c0.clone();
            batched_matmul(
                m, k, n, &a, k as isize, 1, &b, 1, k as isize, &offsets, &mut c, acc,
            );
            let mut want = vec![0.0; batch * m * n];
            for (p, &(ao, bo)) in offsets.iter().enumerate() {
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|q| a[ao + i * k + q].to_f64() * b[bo + j * k + q].to_f64())
                            .sum();
                        let e = p * m * n + i * n + j;
                        want[e] = dot + if acc { c0[e].to_f64() } else { 0.0 };
                    }
                }
            }
            assert_close(
                &c,
                &want,
                tol * k as f64,
                &format!("batch={batch} m={m} k={k} n={n}"),
            );
        }
    }

    #[test]
    fn batched_small_many() {
        check_batched::<f32>(37, 5, 7, 3, 1e-6, 6);
        check_batched::<f64>(64, 16, 16, 16, 1e-14, 7);
        check_batched::<bf16>(9, 4, 5, 6, 1e-2, 8);
    }

    #[test]
    fn batched_large_few() {
        check_batched::<f32>(2, 120, 130, 140, 1e-6, 9);
        check_batched::<f64>(3, 100, 110, 120, 1e-14, 10);
    }

    #[test]
    fn batched_empty() {
        let mut c: Vec<f32> = vec![];
        batched_matmul(
            3,
            2,
            4,
            &[0.0f32; 6],
            2,
            1,
            &[0.0; 8],
            4,
            1,
            &[],
            &mut c,
            false,
        );
        let mut c = vec![1.0f32; 6];
        batched_matmul(
            1,
            0,
            2,
            &[],
            0,
            1,
            &[],
            2,
            1,
            &[(0, 0), (0, 0), (0, 0)],
            &mut c,
            false,
        );
        assert!(c.iter().all(|&x| x == 0.0));
    }

    /// `cargo test -p tensorbrain-kernels --release -- --ignored --nocapture --test-threads=1`
    /// (one test at a time: the timings share the cores and the thread setting).
    #[test]
    #[ignore = "timing, run by hand"]
    fn gemm_gflops() {
        let n = 1024;
        let mut rng = Rng::new(11);
        let a: Vec<f32> = rng.vec(n * n);
        let b: Vec<f32> = rng.vec(n * n);
        let mut c = vec![0.0f32; n * n];
        let ni = n as isize;
        for threads in [1, 2] {
            threads::set_num_threads(threads);
            matmul(n, n, n, &a, 0, ni, 1, &b, 0, ni, 1, &mut c, ni, 1, false); // warm-up
            let reps = 10;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                matmul(n, n, n, &a, 0, ni, 1, &b, 0, ni, 1, &mut c, ni, 1, false);
            }
            let secs = t.elapsed().as_secs_f64() / reps as f64;
            let gflops = 2.0 * (n * n * n) as f64 / secs / 1e9;
            println!("f32 {n}x{n}x{n}, {threads} thread(s): {:.2} ms, {gflops:.1} GFLOP/s ({:.1} per thread)", secs * 1e3, gflops / threads as f64);
        }
        threads::set_num_threads(0);
    }
}
