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
