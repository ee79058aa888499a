//! Iteration over strided (non-contiguous, broadcast) operands.
//!
//! Every elementwise kernel walks its output in row-major order while reading operands through
//! their own strides. [`Rows`] collapses the dims that can be merged, leaving an innermost run
//! (`inner` elements with one stride per operand) that the kernels turn into tight loops LLVM
//! can vectorise; only the outer index is computed with divisions, once per row.

use rayon::prelude::*;
use std::mem::MaybeUninit;
use smallvec::SmallVec;
use std::any::TypeId;

type Dims = SmallVec<[usize; 6]>;

/// Below this many elements a kernel stays on the calling thread: rayon's fork-join costs
/// a few microseconds, which is more than the work.
pub const PARALLEL_THRESHOLD: usize = 1 << 15;

/// An iteration plan over `shape` for `N` operands.
#[derive(Clone, Debug)]
pub struct Rows<const N: usize> {
    outer_shape: Dims,
    outer_strides: [Dims; N],
    offsets: [usize; N],
    /// Elements per row.
    pub inner: usize,
    /// Stride of each operand along the row.
    pub inner_strides: [usize; N],
    /// Number of rows.
    pub rows: usize,
}

impl<const N: usize> Rows<N> {
    pub fn new(shape: &[usize], strides: [&[usize]; N], offsets: [usize; N]) -> Self {
        // Drop size-1 dims, then merge dim i into i+1 wherever every operand allows it.
        let mut dims: Vec<(usize, [usize; N])> = Vec::with_capacity(shape.len());
        for (i, &d) in shape.iter().enumerate() {
            if d == 1 {
                continue;
            }
            let s: [usize; N] = std::array::from_fn(|k| strides[k][i]);
            if let Some(last) = dims.last_mut() {
                if (0..N).all(|k| last.1[k] == s[k] * d) {
                    last.0 *= d;
                    last.1 = s;
                    continue;
                }
            }
            dims.push((d, s));
        }
        let numel: usize = shape.iter().product();
        let (inner, inner_strides) = match dims.pop() {
            Some((d, s)) => (d, s),
            None => (if numel == 0 { 0 } else { 1 }, [0; N]),
        };
        let outer_shape: Dims = dims.iter().map(|d| d.0).collect();
        let outer_strides = std::array::from_fn(|k| dims.iter().map(|d| d.1[k]).collect());
        let rows = if inner == 0 { 0 } else { outer_shape.iter().product() };
        Rows { outer_shape, outer_strides, offsets, inner, inner_strides, rows }
    }

    /// Storage offset of each operand at the start of row `row`.
    #[inline]
    pub fn row_offsets(&self, mut row: usize) -> [usize; N] {
        let mut off = self.offsets;
        for i in (0..self.outer_shape.len()).rev() {
            let d = self.outer_shape[i];
            let idx = row % d;
            row /= d;
            for (k, o) in off.iter_mut().enumerate() {
                *o += idx * self.outer_strides[k][i];
            }
        }
        off
    }
}

/// Runs `f(offsets, out_piece)` over the rows of a contiguous output. A piece is a whole row or
/// part of one (then `offsets` are those of the piece's first element). A large output is cut
/// into one contiguous run of elements per thread of the kernel budget
/// ([`crate::threads::num_threads`]), so a single long row still uses every thread, many short
/// rows are not handed to rayon one by one, and `set_num_threads(1)` keeps it on the caller.
pub fn for_each_row<D: Send, const N: usize>(
    plan: &Rows<N>,
    out: &mut [D],
    f: impl Fn([usize; N], &mut [D]) + Sync + Send,
) {
    if plan.rows == 0 || out.is_empty() {
        return;
    }
    let threads = crate::threads::num_threads();
    if threads == 1 || out.len() < PARALLEL_THRESHOLD {
        walk_rows(plan, 0, out, &f);
        return;
    }
    let run = out.len().div_ceil(threads).max(PARALLEL_THRESHOLD);
    out.par_chunks_mut(run).enumerate().for_each(|(i, piece)| walk_rows(plan, i * run, piece, &f));
}

/// `f` over the output elements `start..start + out.len()`, one call per (part of a) row.
fn walk_rows<D, const N: usize>(plan: &Rows<N>, start: usize, mut out: &mut [D], f: &impl Fn([usize; N], &mut [D])) {
    let inner = plan.inner.max(1);
    let mut at = start;
    while !out.is_empty() {
        let (row, col) = (at / inner, at % inner);
        let n = (inner - col).min(out.len());
        let base = plan.row_offsets(row);
        let (piece, rest) = std::mem::take(&mut out).split_at_mut(n);
        f(std::array::from_fn(|k| base[k] + col * plan.inner_strides[k]), piece);
        out = rest;
        at += n;
    }
}

/// `f` over a dense source into a new vector, without first zero-filling the output.
fn dense_map_vec<S: Copy + Sync, D: Send>(src: &[S], f: impl Fn(S) -> D + Sync + Send) -> Vec<D> {
    dense_vec(src.len(), |start, out| map_piece(out, &src[start..][..out.len()], &f))
}

/// `out[i] = f(src[i])`. Its own function so that `out` and `src` arrive as `&mut`/`&`
/// arguments, which LLVM knows alias nothing: inlined into rayon's worker closure, the loop
/// reloaded what `f` captures (`mul_scalar`'s factor, as an f64 converted per element) after
/// every store and ran one element at a time, 2.8× slower on two threads than on one.
#[inline(never)]
fn map_piece<S: Copy, D>(out: &mut [MaybeUninit<D>], src: &[S], f: &impl Fn(S) -> D) {
    for (o, &x) in out.iter_mut().zip(src) {
        *o = MaybeUninit::new(f(x));
    }
}

/// `out[i] = f(a[i], b[i])`, a function of its own for the reason given at [`map_piece`].
#[inline(never)]
fn zip_piece<A: Copy, B: Copy, D>(out: &mut [MaybeUninit<D>], a: &[A], b: &[B], f: &impl Fn(A, B) -> D) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = MaybeUninit::new(f(x, y));
    }
}

/// `out[i] = f(src[i])` in place of initialised values, as [`map_piece`].
#[inline(never)]
fn map_into<S: Copy, D>(out: &mut [D], src: &[S], f: &impl Fn(S) -> D) {
    for (o, &x) in out.iter_mut().zip(src) {
        *o = f(x);
    }
}

/// A new vector of `len` elements that `fill(start, piece)` writes piece by piece: one
/// contiguous run of [`PARALLEL_THRESHOLD`]-element pieces per thread of the kernel budget, each
/// piece a plain loop that LLVM vectorises. (rayon's `par_iter().zip().map().collect_into_vec()`
/// went element by element through its producer chain and ignored the thread budget: the
/// tape's elementwise fwd+bwd on [256, 2048] was slower on 2 threads than on 1.)
fn dense_vec<D: Send>(len: usize, fill: impl Fn(usize, &mut [MaybeUninit<D>]) + Sync + Send) -> Vec<D> {
    let mut out: Vec<D> = Vec::with_capacity(len);
    crate::threads::for_each_chunk_mut(&mut out.spare_capacity_mut()[..len], PARALLEL_THRESHOLD, len, |i, piece| fill(i * PARALLEL_THRESHOLD, piece));
    // SAFETY: the pieces cover `0..len` and `fill` wrote every element of its piece.
    unsafe { out.set_len(len) };
    out
}

/// A new vector of `len` elements, every one of which `fill` writes. Not zero-filling it first
/// saves a pass over memory and lets the threads that write the output be the ones that fault
/// its pages in: a broadcast multiply over [32, 32, 32, 32] took 0.37 ms on 2 threads with the
/// zero-fill (PyTorch 0.16).
fn uninit_vec<D>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<D>])) -> Vec<D> {
    let mut out: Vec<D> = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` elements (`map` and `zip_map` write every output element).
    unsafe { out.set_len(len) };
    out
}

/// [`map`] into a new vector, without zero-filling it first.
pub fn map_vec<S: Copy + Sync, D: Copy + Default + Send>(
    src: &[S],
    offset: usize,
    shape: &[usize],
    strides: &[usize],
    f: impl Fn(S) -> D + Sync + Send,
) -> Vec<D> {
    let numel: usize = shape.iter().product();
    let plan = Rows::new(shape, [strides], [offset]);
    if plan.rows == 1 && plan.inner_strides[0] == 1 {
        return dense_map_vec(&src[offset..offset + numel], f);
    }
    uninit_vec(numel, |out| map(src, offset, shape, strides, out, |x| MaybeUninit::new(f(x))))
}

/// [`zip_map`] into a new vector, without zero-filling it first.
#[allow(clippy::too_many_arguments)]
pub fn zip_map_vec<A: Copy + Sync, B: Copy + Sync, D: Copy + Default + Send>(
    a: &[A],
    a_offset: usize,
    a_strides: &[usize],
    b: &[B],
    b_offset: usize,
    b_strides: &[usize],
    shape: &[usize],
    f: impl Fn(A, B) -> D + Sync + Send,
) -> Vec<D> {
    let numel: usize = shape.iter().product();
    let plan = Rows::new(shape, [a_strides, b_strides], [a_offset, b_offset]);
    if plan.rows == 1 && plan.inner_strides == [1, 1] {
        let (a, b) = (&a[a_offset..a_offset + numel], &b[b_offset..b_offset + numel]);
        return dense_vec(numel, |start, out| {
            let n = out.len();
            zip_piece(out, &a[start..start + n], &b[start..start + n], &f)
        });
    }
    uninit_vec(numel, |out| zip_map(a, a_offset, a_strides, b, b_offset, b_strides, shape, out, |x, y| MaybeUninit::new(f(x, y))))
}

/// `out[i] = f(src[i])` for a strided source and contiguous output.
pub fn map<S: Copy + Sync, D: Send>(
    src: &[S],
    offset: usize,
    shape: &[usize],
    strides: &[usize],
    out: &mut [D],
    f: impl Fn(S) -> D + Sync + Send,
) {
    let plan = Rows::new(shape, [strides], [offset]);
    // A dense source collapses to one unit-stride row.
    if plan.rows == 1 && plan.inner_strides[0] == 1 {
        let src = &src[offset..offset + out.len()];
        let len = out.len();
        crate::threads::for_each_chunk_mut(out, PARALLEL_THRESHOLD, len, |i, o| map_into(o, &src[i * PARALLEL_THRESHOLD..], &f));
        return;
    }
    let s0 = plan.inner_strides[0];
    for_each_row(&plan, out, |[o], row| {
        // Unit-stride rows get their own loop so it vectorises: a permuted copy such as a
        // reduction over dims [0, 2, 3] of NCHW (batch norm's statistics) copies whole planes,
        // and the strided loop took 11% of a ResNet block's training step.
        if s0 == 1 {
            let n = row.len();
            for (d, &v) in row.iter_mut().zip(&src[o..o + n]) {
                *d = f(v);
            }
        } else {
            for (i, d) in row.iter_mut().enumerate() {
                *d = f(src[o + i * s0]);
            }
        }
    });
}

/// `out[i] = f(a[i], b[i])` with both operands already broadcast to `shape` (stride 0 where
/// they repeat). The common stride patterns get their own loops so they vectorise.
#[allow(clippy::too_many_arguments)]
pub fn zip_map<A: Copy + Sync, B: Copy + Sync, D: Send>(
    a: &[A],
    a_offset: usize,
    a_strides: &[usize],
    b: &[B],
    b_offset: usize,
    b_strides: &[usize],
    shape: &[usize],
    out: &mut [D],
    f: impl Fn(A, B) -> D + Sync + Send,
) {
    let plan = Rows::new(shape, [a_strides, b_strides], [a_offset, b_offset]);
    let [sa, sb] = plan.inner_strides;
    // A piece may be part of a row (see for_each_row): its own length bounds the loop.
    for_each_row(&plan, out, |[oa, ob], row| match (sa, sb) {
        (1, 1) => {
            let n = row.len();
            let (a, b) = (&a[oa..oa + n], &b[ob..ob + n]);
            for i in 0..n {
                row[i] = f(a[i], b[i]);
            }
        }
        (1, 0) => {
            let n = row.len();
            let (a, b) = (&a[oa..oa + n], b[ob]);
            for i in 0..n {
                row[i] = f(a[i], b);
            }
        }
        (0, 1) => {
            let n = row.len();
            let (a, b) = (a[oa], &b[ob..ob + n]);
            for i in 0..n {
                row[i] = f(a, b[i]);
            }
        }
        _ => {
            for (i, d) in row.iter_mut().enumerate() {
                *d = f(a[oa + i * sa], b[ob + i * sb]);
            }
        }
    });
}

/// `out[i] = f(c[i], a[i], b[i])` for three broadcast operands (used by `where`).
#[allow(clippy::too_many_arguments)]
pub fn zip3_map<C: Copy + Sync, A: Copy + Sync, B: Copy + Sync, D: Send>(
    c: (&[C], usize, &[usize]),
    a: (&[A], usize, &[usize]),
    b: (&[B], usize, &[usize]),
    shape: &[usize],
    out: &mut [D],
    f: impl Fn(C, A, B) -> D + Sync + Send,
) {
    let plan = Rows::new(shape, [c.2, a.2, b.2], [c.1, a.1, b.1]);
    let [sc, sa, sb] = plan.inner_strides;
    // Dense rows, with either value operand possibly a broadcast scalar (`where(mask, x, 0)`),
    // run as zipped slices that vectorise; other strides index element by element.
    for_each_row(&plan, out, |[oc, oa, ob], row| {
        let n = row.len();
        match (sc, sa, sb) {
            (1, 1, 1) => {
                let (cs, as_, bs) = (&c.0[oc..oc + n], &a.0[oa..oa + n], &b.0[ob..ob + n]);
                for (d, ((&cv, &av), &bv)) in row.iter_mut().zip(cs.iter().zip(as_).zip(bs)) {
                    *d = f(cv, av, bv);
                }
            }
            (1, 1, 0) => {
                let (cs, as_, bv) = (&c.0[oc..oc + n], &a.0[oa..oa + n], b.0[ob]);
                for (d, (&cv, &av)) in row.iter_mut().zip(cs.iter().zip(as_)) {
                    *d = f(cv, av, bv);
                }
            }
            (1, 0, 1) => {
                let (cs, av, bs) = (&c.0[oc..oc + n], a.0[oa], &b.0[ob..ob + n]);
                for (d, (&cv, &bv)) in row.iter_mut().zip(cs.iter().zip(bs)) {
                    *d = f(cv, av, bv);
                }
            }
            _ => {
                for (i, d) in row.iter_mut().enumerate() {
                    *d = f(c.0[oc + i * sc], a.0[oa + i * sa], b.0[ob + i * sb]);
                }
            }
        }
    });
}

/// Copies a strided view into a contiguous buffer.
///
/// An f32 matrix stored transposed (a weight gradient `(xᵀ·g)ᵀ`, any `.t()` made contiguous)
/// goes through the AVX tile transpose: element by element it was 4.8% of an MNIST CNN
/// training step, in the optimizer's copy of `fc1`'s gradient (`perf`).
pub fn copy<T: Copy + Send + Sync + 'static>(src: &[T], offset: usize, shape: &[usize], strides: &[usize], out: &mut [T]) {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        let plan = Rows::new(shape, [strides], [offset]);
        if let (&[rows], &[1], [ld]) = (&plan.outer_shape[..], &plan.outer_strides[0][..], plan.inner_strides) {
            if ld >= rows && plan.inner > 1 {
                // SAFETY: T is f32 (checked above), so the casts are identities.
                let (src, out) = unsafe { (std::slice::from_raw_parts(src.as_ptr().cast::<f32>(), src.len()), std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<f32>(), out.len())) };
                // out[r][c] = src[offset + r + c·ld]: the transpose of the [inner, rows] matrix
                // whose rows are `ld` apart.
                return crate::transpose::transpose_f32(plan.inner, rows, src, offset, ld, out, plan.inner);
            }
        }
    }
    map(src, offset, shape, strides, out, |x| x)
}

/// Writes a contiguous `src` into the strided view `(offset, shape, strides)` of `dst`
/// (the inverse of [`copy`]). The view must not overlap itself (no stride-0 dims).
pub fn copy_into<T: Copy>(src: &[T], dst: &mut [T], offset: usize, shape: &[usize], strides: &[usize]) {
    let plan = Rows::new(shape, [strides], [offset]);
    let n = plan.inner;
    let s0 = plan.inner_strides[0];
    for (r, row) in src.chunks(n.max(1)).take(plan.rows).enumerate() {
        let [o] = plan.row_offsets(r);
        for (i, &v) in row.iter().enumerate() {
            dst[o + i * s0] = v;
        }
    }
}

/// Applies `f(&row) -> R` to each contiguous row of `row_len` elements, in parallel when large.
pub fn reduce_rows<T: Sync, R: Send>(src: &[T], row_len: usize, rows: usize, f: impl Fn(&[T]) -> R + Sync + Send) -> Vec<R> {
    if row_len == 0 {
        let empty: &[T] = &[];
        return (0..rows).map(|_| f(empty)).collect();
    }
    if src.len() >= PARALLEL_THRESHOLD && rows > 1 && crate::threads::num_threads() > 1 {
        // At least a threshold's worth of rows per task, at most one task per thread.
        let per_task = (rows.div_ceil(crate::threads::num_threads())).max(PARALLEL_THRESHOLD.div_ceil(row_len));
        src.par_chunks(row_len).with_min_len(per_task).map(&f).collect()
    } else {
        src.chunks(row_len).map(f).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stride pattern of `zip3_map` (dense, either value broadcast, transposed) against
    /// an index-by-index reference.
    #[test]
    fn zip3_map_on_dense_broadcast_and_strided_operands() {
        let (rows, cols) = (3, 70);
        let c: Vec<bool> = (0..rows * cols).map(|i| i % 3 == 0).collect();
        let a: Vec<i32> = (0..rows * cols).map(|i| i as i32).collect();
        let b: Vec<i32> = (0..rows * cols).map(|i| -(i as i32)).collect();
        let dense = [cols, 1];
        let cases: [(&[usize], &[usize]); 4] = [(&dense, &dense), (&dense, &[0, 0]), (&[0, 0], &dense), (&[1, rows], &dense)];
        for (sa, sb) in cases {
            let mut out = vec![0; rows * cols];
            zip3_map((&c, 0, &dense), (&a, 0, sa), (&b, 0, sb), &[rows, cols], &mut out, |c, a, b| if c { a } else { b });
            for i in 0..rows {
                for j in 0..cols {
                    let want = if c[i * cols + j] { a[i * sa[0] + j * sa[1]] } else { b[i * sb[0] + j * sb[1]] };
                    assert_eq!(out[i * cols + j], want, "strides {sa:?} {sb:?} at ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn copies_a_transposed_view() {
        let src: Vec<i32> = (0..6).collect(); // [2, 3]
        let mut out = vec![0; 6];
        copy(&src, 0, &[3, 2], &[1, 3], &mut out);
        assert_eq!(out, [0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn broadcasts_rows_and_columns() {
        let a = [1, 2, 3]; // [3, 1]
        let b = [10, 20]; // [1, 2]
        let mut out = vec![0; 6];
        zip_map(&a, 0, &[1, 0], &b, 0, &[0, 1], &[3, 2], &mut out, |x, y| x + y);
        assert_eq!(out, [11, 21, 12, 22, 13, 23]);
    }

    #[test]
    fn large_parallel_map_matches_serial() {
        let n = PARALLEL_THRESHOLD * 3 + 7;
        let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut out = vec![0.0; n];
        // Column-major view of a [n/7.., 7] reinterpreted: use a reversed 2-D view.
        let rows = n / 7;
        let mut out2 = vec![0.0; rows * 7];
        copy(&src, 0, &[7, rows], &[1, 7], &mut out2);
        for r in 0..rows {
            for c in 0..7 {
                assert_eq!(out2[c * rows + r], src[r * 7 + c]);
            }
        }
        map(&src, 0, &[n], &[1], &mut out, |x| x * 2.0);
        assert!(out.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f32));
    }

    #[test]
    fn long_broadcast_rows_split_across_threads() {
        // One row longer than a parallel piece, broadcast against a column: every piece must
        // read from its own offset.
        let n = PARALLEL_THRESHOLD * 2 + 5;
        let a: Vec<i64> = (0..n as i64).collect(); // [1, n]
        let b = [1000i64, 2000]; // [2, 1]
        let mut out = vec![0i64; 2 * n];
        zip_map(&a, 0, &[0, 1], &b, 0, &[1, 0], &[2, n], &mut out, |x, y| x + y);
        for r in 0..2 {
            for c in 0..n {
                assert_eq!(out[r * n + c], c as i64 + b[r]);
            }
        }
        let mut out2 = vec![0i64; n];
        map(&a, 0, &[n], &[1], &mut out2, |x| x * 2);
        let strided: Vec<i64> = (0..2 * n as i64).collect();
        let mut out3 = vec![0i64; n];
        map(&strided, 1, &[n], &[2], &mut out3, |x| x);
        assert!(out3.iter().enumerate().all(|(i, &v)| v == 2 * i as i64 + 1));
    }

    #[test]
    fn transposed_f32_matrices_copy_through_the_tile_transpose() {
        // [rows, cols] views of a row-major [cols, ld] buffer (ld > rows: padded), at an offset.
        // (10, 3, 4, 2) overlaps itself (ld < rows) and takes the general path.
        for (rows, cols, ld, offset) in [(5, 3, 5, 0), (37, 19, 40, 3), (256, 130, 256, 1), (10, 3, 4, 2)] {
            let src: Vec<f32> = (0..offset + rows + (cols - 1) * ld).map(|i| i as f32).collect();
            let mut out = vec![0.0f32; rows * cols];
            copy(&src, offset, &[rows, cols], &[1, ld], &mut out);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(out[r * cols + c], src[offset + r + c * ld], "({r}, {c}) of {rows}x{cols}");
                }
            }
        }
    }

    #[test]
    fn runs_cut_rows_anywhere() {
        // Short rows (301) that the per-thread runs cut in the middle, and an odd start of
        // each piece: every piece must read from its own element's offset.
        let (rows, cols) = (257, 301);
        let src: Vec<i64> = (0..(rows * cols) as i64).collect();
        let mut out = vec![0i64; rows * cols];
        copy(&src, 0, &[cols, rows], &[1, cols], &mut out);
        for c in 0..cols {
            for r in 0..rows {
                assert_eq!(out[c * rows + r], src[r * cols + c], "element ({c}, {r})");
            }
        }
        let plan = Rows::new(&[cols, rows], [&[1, cols]], [0]);
        for start in [0, 1, rows - 1, rows, 3 * rows + 7] {
            let mut piece = vec![0i64; 2 * rows + 3];
            walk_rows(&plan, start, &mut piece, &|[o], row: &mut [i64]| {
                for (i, d) in row.iter_mut().enumerate() {
                    *d = src[o + i * cols];
                }
            });
            assert_eq!(piece, out[start..start + piece.len()], "piece starting at {start}");
        }
    }

    #[test]
    fn empty_shapes_do_nothing() {
        let mut out: Vec<f32> = vec![];
        map(&[1.0f32], 0, &[0, 3], &[3, 1], &mut out, |x| x);
        let p = Rows::new(&[2, 0], [&[0, 1]], [0]);
        assert_eq!(p.rows, 0);
    }
}
