// Row reductions: out[r] = reduce(x[r * cols .. (r + 1) * cols]) over a contiguous [rows, cols]
// input, one block per row (the grid's x dimension; launch.rs splits rows over more than
// 2^31 - 1 blocks with a grid-stride loop over rows). Reductions over other axes are a strided
// copy (elementwise.cu `copy`) that moves the axis last, then this.
//
// Each thread folds a strided slice of the row, then warps combine with shuffles
// (tb_block_reduce in common.cuh). Sum accumulates in the element type, like the CPU kernels.

template <typename T, typename Op>
__device__ __forceinline__ void reduce_rows_impl(const T* x, T* out, long long rows, long long cols, Op op, T identity) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + r * cols;
        T acc = identity;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) acc = op(acc, row[j]);
        acc = tb_block_reduce(acc, op, identity);
        if (threadIdx.x == 0) out[r] = acc;
    }
}

extern "C" __global__ void sum_rows_f32(const float* x, float* out, long long rows, long long cols) {
    reduce_rows_impl<float>(x, out, rows, cols, TbSum(), 0.0f);
}
extern "C" __global__ void sum_rows_f64(const double* x, double* out, long long rows, long long cols) {
    reduce_rows_impl<double>(x, out, rows, cols, TbSum(), 0.0);
}
// The max of an empty row is -inf (the identity), which callers reject before launching.
extern "C" __global__ void max_rows_f32(const float* x, float* out, long long rows, long long cols) {
    reduce_rows_impl<float>(x, out, rows, cols, TbMax(), tb_neg_inf<float>());
}
extern "C" __global__ void max_rows_f64(const double* x, double* out, long long rows, long long cols) {
    reduce_rows_impl<double>(x, out, rows, cols, TbMax(), tb_neg_inf<double>());
}

// Argmax / argmin per row, with the CPU's `arg_best` rule: the first NaN if the row has one,
// else the first index of the best value. Writes the index (i64) and the value. Each thread
// scans its strided slice in ascending order, then (value, index) pairs are combined across
// the warp and the block with the same rule, so the result does not depend on the schedule.
// An index of -1 marks a lane that saw no element.
template <typename T, bool MAX>
__device__ __forceinline__ bool tb_arg_better(T a, long long ia, T b, long long ib) {
    if (ia < 0) return false;
    if (ib < 0) return true;
    const bool na = tb_isnan(a), nb = tb_isnan(b);
    if (na || nb) return na && (!nb || ia < ib);
    if (a == b) return ia < ib;
    return MAX ? a > b : a < b;
}

template <typename T, bool MAX>
__device__ __forceinline__ void tb_arg_warp(T& v, long long& i) {
    for (int o = 16; o > 0; o >>= 1) {
        const T ov = __shfl_xor_sync(TB_FULL_MASK, v, o);
        const long long oi = __shfl_xor_sync(TB_FULL_MASK, i, o);
        if (tb_arg_better<T, MAX>(ov, oi, v, i)) {
            v = ov;
            i = oi;
        }
    }
}

template <typename T, bool MAX>
__device__ __forceinline__ void arg_rows_impl(const T* x, long long* idx_out, T* val_out, long long rows, long long cols) {
    __shared__ T warp_vals[32];
    __shared__ long long warp_idx[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* row = x + r * cols;
        T best = T(0);
        long long bi = -1;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            if (tb_arg_better<T, MAX>(row[j], j, best, bi)) {
                best = row[j];
                bi = j;
            }
        }
        tb_arg_warp<T, MAX>(best, bi);
        if (lane == 0) {
            warp_vals[warp] = best;
            warp_idx[warp] = bi;
        }
        __syncthreads();
        if (warp == 0) {
            best = lane < nwarps ? warp_vals[lane] : T(0);
            bi = lane < nwarps ? warp_idx[lane] : -1;
            tb_arg_warp<T, MAX>(best, bi);
            if (lane == 0) {
                idx_out[r] = bi;
                val_out[r] = best;
            }
        }
        __syncthreads();
    }
}

extern "C" __global__ void argmax_rows_f32(const float* x, long long* idx, float* vals, long long rows, long long cols) {
    arg_rows_impl<float, true>(x, idx, vals, rows, cols);
}
extern "C" __global__ void argmax_rows_f64(const double* x, long long* idx, double* vals, long long rows, long long cols) {
    arg_rows_impl<double, true>(x, idx, vals, rows, cols);
}
extern "C" __global__ void argmin_rows_f32(const float* x, long long* idx, float* vals, long long rows, long long cols) {
    arg_rows_impl<float, false>(x, idx, vals, rows, cols);
}
extern "C" __global__ void argmin_rows_f64(const double* x, long long* idx, double* vals, long long rows, long long cols) {
    arg_rows_impl<double, false>(x, idx, vals, rows, cols);
}
