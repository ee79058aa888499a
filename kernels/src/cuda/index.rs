//! Launchers of index.cu: `index_select` (any dtype, by element width) and a deterministic
//! `index_add` driven by an [`IndexAddPlan`] made on the host.
//!
//! Operands are contiguous and viewed `[outer, n, inner]` around the indexed dim, as in
//! `kernels/src/index.rs`; the indices have been checked to lie in `0..n` by the caller.

use super::codegen::DType;
use super::runtime::{CudaRuntime, DeviceBuffer, KernelArg};
use super::CudaError;

/// The source positions of an `index_add`, grouped by the row they add into: row `rows[u]`
/// receives the source rows `js[starts[u]..starts[u + 1]]`, in ascending order (the CPU
/// kernel's order), so one GPU thread per target cell adds them with no atomics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexAddPlan {
    /// The distinct target rows, ascending.
    pub rows: Vec<i64>,
    /// `rows.len() + 1` offsets into `js`.
    pub starts: Vec<i64>,
    /// Every source position `j`, grouped by `idx[j]`, ascending within a group.
    pub js: Vec<i64>,
}

impl IndexAddPlan {
    /// The plan for indices `idx`, each in `0..n` (a counting sort by target row).
    pub fn new(idx: &[i64], n: usize) -> IndexAddPlan {
        let mut count = vec![0i64; n];
        for &r in idx {
            count[r as usize] += 1;
        }
        let mut first = vec![0i64; n + 1];
        for r in 0..n {
            first[r + 1] = first[r] + count[r];
        }
        let mut next = first.clone();
        let mut js = vec![0i64; idx.len()];
        for (j, &r) in idx.iter().enumerate() {
            js[next[r as usize] as usize] = j as i64;
            next[r as usize] += 1;
        }
        let rows: Vec<i64> = (0..n).filter(|&r| count[r] > 0).map(|r| r as i64).collect();
        let mut starts: Vec<i64> = rows.iter().map(|&r| first[r as usize]).collect();
        starts.push(idx.len() as i64);
        IndexAddPlan { rows, starts, js }
    }

    /// `rows`, `starts` and `js` in one buffer (one upload).
    fn packed(&self) -> Vec<i64> {
        [&self.rows[..], &self.starts, &self.js].concat()
    }
}

/// The sizes `[outer, n, inner]` of an indexed operand.
#[derive(Clone, Copy, Debug)]
pub struct IndexedDims {
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
}

impl CudaRuntime {
    /// `out[o, j, i] = src[o, idx[j], i]`: `outer * m * inner` elements of `width` bytes
    /// (1, 2, 4 or 8) from `src` (from element `src_offset`) at the `m` i64 indices in `idx`
    /// (from element `idx_offset`).
    pub fn index_select(&'static self, width: usize, src: (&DeviceBuffer, usize), idx: (&DeviceBuffer, usize), d: IndexedDims, m: usize) -> Result<DeviceBuffer, CudaError> {
        let suffix = match width {
            1 => "b1",
            2 => "b2",
            4 => "b4",
            8 => "b8",
            _ => panic!("internal: index_select of {width}-byte elements"),
        };
        let len = d.outer * m * d.inner;
        let out = self.alloc(len * width)?;
        let args = [
            KernelArg::Ptr(src.0.ptr() + (src.1 * width) as u64),
            KernelArg::Ptr(idx.0.ptr() + (idx.1 * 8) as u64),
            KernelArg::Ptr(out.ptr()),
            KernelArg::I64(d.outer as i64),
            KernelArg::I64(d.n as i64),
            KernelArg::I64(d.inner as i64),
            KernelArg::I64(m as i64),
        ];
        self.launch_elements("index.cu", &format!("index_select_{suffix}"), len, &args)?;
        Ok(out)
    }

    /// Adds `src` `[outer, m, inner]` (from element `src_offset`) into `out` `[outer, n, inner]`
    /// in place, at the rows of `plan` (made from the `m` indices). `out` must be a buffer no
    /// other tensor reads (a fresh copy of the base).
    pub fn index_add_into(&'static self, dtype: DType, out: &DeviceBuffer, src: (&DeviceBuffer, usize), plan: &IndexAddPlan, d: IndexedDims) -> Result<(), CudaError> {
        let targets = plan.rows.len();
        if targets == 0 || d.outer == 0 || d.inner == 0 {
            return Ok(());
        }
        let packed = self.upload(bytes_of(&plan.packed()))?;
        let (rows, starts, js) = (packed.ptr(), packed.ptr() + 8 * targets as u64, packed.ptr() + 8 * (2 * targets + 1) as u64);
        let args = [
            KernelArg::Ptr(out.ptr()),
            KernelArg::Ptr(src.0.at(dtype, src.1)),
            KernelArg::Ptr(rows),
            KernelArg::Ptr(starts),
            KernelArg::Ptr(js),
            KernelArg::I64(d.outer as i64),
            KernelArg::I64(d.n as i64),
            KernelArg::I64(d.inner as i64),
            KernelArg::I64(plan.js.len() as i64),
            KernelArg::I64(targets as i64),
        ];
        // `packed` is returned to the allocator when it drops, after the launch is queued; the
        // allocator reuses blocks only on the same stream, so later work cannot overwrite it
        // before this kernel has read it.
        self.launch_elements("index.cu", &format!("index_add_{}", dtype.suffix()), d.outer * targets * d.inner, &args)
    }
}

fn bytes_of(v: &[i64]) -> &[u8] {
    // SAFETY: i64 has no padding and any byte pattern is a valid u8; the length is in bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays a plan the way index.cu's index_add does, on the host.
    fn apply(plan: &IndexAddPlan, base: &[f64], src: &[f64], d: IndexedDims) -> Vec<f64> {
        let m = plan.js.len();
        let mut out = base.to_vec();
        for o in 0..d.outer {
            for (u, &r) in plan.rows.iter().enumerate() {
                for i in 0..d.inner {
                    let cell = &mut out[(o * d.n + r as usize) * d.inner + i];
                    for s in plan.starts[u]..plan.starts[u + 1] {
                        *cell += src[(o * m + plan.js[s as usize] as usize) * d.inner + i];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_plan_groups_sources_by_row_in_ascending_order() {
        let plan = IndexAddPlan::new(&[2, 0, 2, 2, 4], 5);
        assert_eq!(plan.rows, [0, 2, 4]);
        assert_eq!(plan.starts, [0, 1, 4, 5]);
        assert_eq!(plan.js, [1, 0, 2, 3, 4]);
        assert_eq!(plan.packed().len(), 3 + 4 + 5);
        let empty = IndexAddPlan::new(&[], 3);
        assert!(empty.rows.is_empty() && empty.js.is_empty());
        assert_eq!(empty.starts, [0]);
    }

    #[test]
    fn replaying_a_plan_equals_the_cpu_index_add_bit_for_bit() {
        // Values whose sums depend on the order of addition, so a different order would show.
        let d = IndexedDims { outer: 3, n: 6, inner: 4 };
        let idx = [5i64, 1, 1, 3, 5, 5, 0, 1];
        let m = idx.len();
        let base: Vec<f64> = (0..d.outer * d.n * d.inner).map(|k| (k as f64 * 0.37).sin() * 1e8).collect();
        let src: Vec<f64> = (0..d.outer * m * d.inner).map(|k| (k as f64 * 1.3).cos() * 10f64.powi((k % 17) as i32 - 8)).collect();
        let mut want = base.clone();
        crate::index::index_add(&mut want, d.outer, d.n, d.inner, &idx, &src);
        let got = apply(&IndexAddPlan::new(&idx, d.n), &base, &src, d);
        assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}
