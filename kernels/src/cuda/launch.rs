//! Launch-configuration arithmetic and the kernel-parameter structs shared with the `.cu`
//! sources. Pure arithmetic, so it is tested on CPU machines.
//!
//! Two launch shapes cover the hand-written kernels:
//! * elementwise ([`elementwise`]): 256 threads per block, and enough blocks to fill the GPU a
//!   few times over but no more; the kernels use grid-stride loops, so a capped grid still
//!   covers any `n`.
//! * per-row ([`rows`]): one block per row, threads a multiple of 32 (the block reduction in
//!   common.cuh shuffles within full warps) sized to the row, at most 1024; rows beyond the grid
//!   limit are covered by the kernels' grid-stride loop over rows.

use cudarc::driver::{DeviceRepr, LaunchConfig};

/// Mirrors `TB_MAX_DIMS` in common.cuh.
pub const MAX_DIMS: usize = 8;
/// Threads per block of elementwise kernels.
pub const ELEMENTWISE_BLOCK: u32 = 256;
/// Resident blocks per SM we aim for: enough to hide latency; more only adds scheduling work.
pub const BLOCKS_PER_SM: u32 = 8;
/// Largest grid x dimension (compute capability 3.0 and later).
pub const MAX_GRID_X: u32 = (1u32 << 31) - 1;
pub const MAX_BLOCK: u32 = 1024;
pub const WARP: u32 = 32;

/// A 1-D launch: `grid` blocks of `block` threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub grid: u32,
    pub block: u32,
}

impl Launch {
    pub fn config(self) -> LaunchConfig {
        LaunchConfig { grid_dim: (self.grid, 1, 1), block_dim: (self.block, 1, 1), shared_mem_bytes: 0 }
    }
}

/// Launch for `n` independent elements on a GPU with `sm_count` SMs; `None` when `n == 0`
/// (a zero-sized grid is a launch error, so empty tensors skip the launch).
pub fn elementwise(n: usize, sm_count: u32) -> Option<Launch> {
    if n == 0 {
        return None;
    }
    let needed = n.div_ceil(ELEMENTWISE_BLOCK as usize);
    let cap = (sm_count.max(1) as usize * BLOCKS_PER_SM as usize).min(MAX_GRID_X as usize);
    Some(Launch { grid: needed.min(cap) as u32, block: ELEMENTWISE_BLOCK })
}

/// Launch for a per-row kernel over `rows` rows of `cols` elements; `None` if there are no rows.
/// Threads: `cols` rounded up to a warp, within [32, 1024], so short rows do not leave most
/// threads idle and long rows get a full block.
pub fn rows(rows: usize, cols: usize) -> Option<Launch> {
    if rows == 0 {
        return None;
    }
    let block = (cols.div_ceil(WARP as usize) * WARP as usize).clamp(WARP as usize, MAX_BLOCK as usize) as u32;
    Some(Launch { grid: rows.min(MAX_GRID_X as usize) as u32, block })
}

/// `TbShape` of common.cuh: the output shape, row-major.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelShape {
    pub ndim: i32,
    pub pad_: i32,
    pub dims: [i64; MAX_DIMS],
}

/// `TbStrides` of common.cuh: one operand's element offset and strides (0 on broadcast dims).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelStrides {
    pub offset: i64,
    pub s: [i64; MAX_DIMS],
}

// SAFETY: both are #[repr(C)] plain integers laid out as the C structs in common.cuh (checked
// by `layouts_match_common_cuh` below).
unsafe impl DeviceRepr for KernelShape {}
unsafe impl DeviceRepr for KernelStrides {}

/// `TbWindow` of common.cuh: a sliding 2-D window over NCHW input (convolution and pooling).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowGeometry {
    pub n: i64,
    pub c: i64,
    pub h: i64,
    pub w: i64,
    pub oh: i64,
    pub ow: i64,
    pub kh: i64,
    pub kw: i64,
    pub sh: i64,
    pub sw: i64,
    pub ph: i64,
    pub pw: i64,
    pub dh: i64,
    pub dw: i64,
    /// Pooling's `count_include_pad` (0/1); 0 for convolutions.
    pub flag: i64,
}

// SAFETY: #[repr(C)] i64 fields in the order of TbWindow's `long long` fields (checked by
// `window_geometry_matches_common_cuh`).
unsafe impl DeviceRepr for WindowGeometry {}

/// Merges adjacent dims that every operand walks contiguously (stride[d] = stride[d+1] *
/// dims[d+1] for all operands), and drops size-1 dims. Fewer dims mean fewer divisions per
/// element in `tb_offset`, and lets tensors of more than [`MAX_DIMS`] dims launch when they
/// collapse. Returns the new shape and each operand's new strides.
pub fn collapse(shape: &[usize], strides: &[&[isize]]) -> (Vec<usize>, Vec<Vec<isize>>) {
    let keep: Vec<usize> = (0..shape.len()).filter(|&d| shape[d] != 1).collect();
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<isize>> = vec![Vec::new(); strides.len()];
    for &d in &keep {
        let mergeable = !out_shape.is_empty()
            && strides.iter().zip(&out_strides).all(|(s, o)| *o.last().unwrap() == s[d] * shape[d] as isize);
        if mergeable {
            *out_shape.last_mut().unwrap() *= shape[d];
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().unwrap() = s[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    (out_shape, out_strides)
}

/// The kernel parameters for an output `shape` and operands `(offset, strides)`, after
/// [`collapse`]; an error naming the shape if it still has more than [`MAX_DIMS`] dims.
pub fn kernel_layout(shape: &[usize], operands: &[(usize, &[isize])]) -> Result<(KernelShape, Vec<KernelStrides>), String> {
    for (k, (_, s)) in operands.iter().enumerate() {
        if s.len() != shape.len() {
            return Err(format!("operand {k} has {} strides for a {}-d shape {shape:?}", s.len(), shape.len()));
        }
    }
    let strides: Vec<&[isize]> = operands.iter().map(|(_, s)| *s).collect();
    let (cshape, cstrides) = collapse(shape, &strides);
    if cshape.len() > MAX_DIMS {
        return Err(format!("shape {shape:?} has {} dims after merging contiguous ones; CUDA kernels take at most {MAX_DIMS}", cshape.len()));
    }
    let mut ks = KernelShape { ndim: cshape.len() as i32, pad_: 0, dims: [1; MAX_DIMS] };
    for (d, &n) in cshape.iter().enumerate() {
        ks.dims[d] = n as i64;
    }
    let kstrides = operands
        .iter()
        .zip(&cstrides)
        .map(|((off, _), s)| {
            let mut k = KernelStrides { offset: *off as i64, s: [0; MAX_DIMS] };
            for (d, &v) in s.iter().enumerate() {
                k.s[d] = v as i64;
            }
            k
        })
        .collect();
    Ok((ks, kstrides))
}

/// What `tb_offset` in common.cuh computes, on the host: the element offset of an operand at
/// flat output index `i`. The tests below check the kernel layouts with it.
pub fn offset_of(i: i64, shape: &KernelShape, st: &KernelStrides) -> i64 {
    let mut i = i;
    let mut off = st.offset;
    for d in (0..shape.ndim as usize).rev() {
        let n = shape.dims[d];
        let q = i / n;
        off += (i - q * n) * st.s[d];
        i = q;
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementwise_grid_covers_small_inputs_exactly_and_caps_large_ones() {
        assert_eq!(elementwise(0, 132), None);
        assert_eq!(elementwise(1, 132), Some(Launch { grid: 1, block: 256 }));
        assert_eq!(elementwise(256, 132), Some(Launch { grid: 1, block: 256 }));
        assert_eq!(elementwise(257, 132), Some(Launch { grid: 2, block: 256 }));
        // 132 SMs (H100/H200) * 8 blocks: a billion elements still get 1056 blocks and loop.
        assert_eq!(elementwise(1 << 30, 132), Some(Launch { grid: 1056, block: 256 }));
        // An unknown SM count (0) still launches.
        assert_eq!(elementwise(10_000, 0), Some(Launch { grid: 8, block: 256 }));
    }

    #[test]
    fn row_blocks_are_whole_warps_within_limits() {
        assert_eq!(rows(0, 10), None);
        assert_eq!(rows(4, 1), Some(Launch { grid: 4, block: 32 }));
        assert_eq!(rows(4, 0), Some(Launch { grid: 4, block: 32 }));
        assert_eq!(rows(4, 33), Some(Launch { grid: 4, block: 64 }));
        assert_eq!(rows(4, 1000), Some(Launch { grid: 4, block: 1024 }));
        assert_eq!(rows(4, 50_000), Some(Launch { grid: 4, block: 1024 }));
        assert_eq!(rows(usize::MAX / 2, 10).unwrap().grid, MAX_GRID_X);
        for c in [1, 31, 32, 33, 500, 1023, 1024, 1025, 100_000] {
            let b = rows(1, c).unwrap().block;
            assert!(b % WARP == 0 && (WARP..=MAX_BLOCK).contains(&b), "cols {c}: block {b}");
        }
    }

    #[test]
    fn layouts_match_common_cuh() {
        // TbShape { int ndim; int pad_; long long dims[8]; } and TbStrides { long long offset;
        // long long s[8]; } on a 64-bit target.
        assert_eq!(std::mem::size_of::<KernelShape>(), 8 + 8 * MAX_DIMS);
        assert_eq!(std::mem::size_of::<KernelStrides>(), 8 + 8 * MAX_DIMS);
        assert_eq!(std::mem::align_of::<KernelShape>(), 8);
        assert!(include_str!("kernels/common.cuh").contains(&format!("#define TB_MAX_DIMS {MAX_DIMS}")));
    }

    #[test]
    fn window_geometry_matches_common_cuh() {
        // The field names of TbWindow, in order, from the C declaration.
        let src = include_str!("kernels/common.cuh");
        let body = src.split("struct TbWindow {").nth(1).unwrap().split("};").next().unwrap();
        let fields: Vec<&str> = body
            .lines()
            .map(|l| l.split("//").next().unwrap().trim())
            .filter(|l| !l.is_empty())
            .flat_map(|l| l.trim_start_matches("long long").trim_end_matches(';').split(',').map(str::trim))
            .collect();
        assert_eq!(fields, ["n", "c", "h", "w", "oh", "ow", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "flag"]);
        assert_eq!(std::mem::size_of::<WindowGeometry>(), 8 * fields.len());
    }

    #[test]
    fn contiguous_dims_merge_and_broadcast_dims_do_not() {
        // [2, 3, 4] contiguous: one dim of 24.
        let (s, st) = collapse(&[2, 3, 4], &[&[12, 4, 1]]);
        assert_eq!((s, st), (vec![24], vec![vec![1]]));
        // A row vector broadcast over rows: [2, 3, 4] with b = [4] (strides 0, 0, 1). The first
        // two dims merge (both 0 for b, contiguous for a); the last cannot merge with them.
        let (s, st) = collapse(&[2, 3, 4], &[&[12, 4, 1], &[0, 0, 1]]);
        assert_eq!(s, vec![6, 4]);
        assert_eq!(st, vec![vec![4, 1], vec![0, 1]]);
        // Transposed: nothing merges. Size-1 dims vanish.
        let (s, st) = collapse(&[3, 1, 5], &[&[1, 99, 3]]);
        assert_eq!((s, st), (vec![3, 5], vec![vec![1, 3]]));
    }

    #[test]
    fn kernel_offsets_match_strided_indexing() {
        // out[i, j, k] = a[k, j, i] (permuted) + b[j] (broadcast), a at offset 5.
        let shape = [3usize, 4, 5];
        let a_strides: [isize; 3] = [1, 3, 12];
        let b_strides: [isize; 3] = [0, 1, 0];
        let (ks, st) = kernel_layout(&shape, &[(5, &a_strides), (0, &b_strides)]).unwrap();
        let mut flat = 0i64;
        for i in 0..3i64 {
            for j in 0..4i64 {
                for k in 0..5i64 {
                    assert_eq!(offset_of(flat, &ks, &st[0]), 5 + i + 3 * j + 12 * k);
                    assert_eq!(offset_of(flat, &ks, &st[1]), j);
                    flat += 1;
                }
            }
        }
    }

    #[test]
    fn too_many_dims_is_an_error_unless_they_collapse() {
        let shape = [2usize; 9];
        let contiguous: Vec<isize> = (0..9).rev().map(|d| 1isize << d).collect();
        let (ks, _) = kernel_layout(&shape, &[(0, &contiguous)]).unwrap();
        assert_eq!((ks.ndim, ks.dims[0]), (1, 512));
        // Reversed strides (a full transpose) cannot merge: 9 dims is too many.
        let reversed: Vec<isize> = (0..9).map(|d| 1isize << d).collect();
        let err = kernel_layout(&shape, &[(0, &reversed)]).unwrap_err();
        assert!(err.contains("at most 8"), "{err}");
        assert!(kernel_layout(&[2, 3], &[(0, &[1])]).unwrap_err().contains("1 strides"));
    }

    #[test]
    fn a_scalar_output_has_zero_dims_and_offset_only() {
        let (ks, st) = kernel_layout(&[], &[(7, &[])]).unwrap();
        assert_eq!(ks.ndim, 0);
        assert_eq!(offset_of(0, &ks, &st[0]), 7);
    }
}
