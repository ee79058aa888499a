// Row-wise softmax and log-softmax, forward and backward, over contiguous [rows, cols].
// One block per row (grid-stride over rows); the row max is subtracted before exp so large
// logits do not overflow, as in the CPU kernels.

template <typename T>
__device__ __forceinline__ void softmax_fwd_impl(const T* x, T* y, long long rows, long long cols, bool log_out) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        T m, s;
        tb_row_max_sumexp(xr, cols, m, s);
        if (log_out) {
            const T lse = m + tb_log(s);
            for (long long j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = xr[j] - lse;
        } else {
            const T inv = T(1) / s;
            for (long long j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = tb_exp(xr[j] - m) * inv;
        }
    }
}

// softmax:     dx = y * (dy - sum(dy * y))
// log_softmax: dx = dy - exp(y) * sum(dy)
template <typename T>
__device__ __forceinline__ void softmax_bwd_impl(const T* y, const T* dy, T* dx, long long rows, long long cols, bool log_out) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* yr = y + r * cols;
        const T* gr = dy + r * cols;
        T* dr = dx + r * cols;
        T s = T(0);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += log_out ? gr[j] : gr[j] * yr[j];
        s = tb_block_reduce(s, TbSum(), T(0));
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            dr[j] = log_out ? gr[j] - tb_exp(yr[j]) * s : yr[j] * (gr[j] - s);
        }
    }
}

extern "C" __global__ void softmax_fwd_f32(const float* x, float* y, long long rows, long long cols) {
    softmax_fwd_impl<float>(x, y, rows, cols, false);
}
extern "C" __global__ void softmax_fwd_f64(const double* x, double* y, long long rows, long long cols) {
    softmax_fwd_impl<double>(x, y, rows, cols, false);
}
extern "C" __global__ void log_softmax_fwd_f32(const float* x, float* y, long long rows, long long cols) {
    softmax_fwd_impl<float>(x, y, rows, cols, true);
}
extern "C" __global__ void log_softmax_fwd_f64(const double* x, double* y, long long rows, long long cols) {
    softmax_fwd_impl<double>(x, y, rows, cols, true);
}
extern "C" __global__ void softmax_bwd_f32(const float* y, const float* dy, float* dx, long long rows, long long cols) {
    softmax_bwd_impl<float>(y, dy, dx, rows, cols, false);
}
extern "C" __global__ void softmax_bwd_f64(const double* y, const double* dy, double* dx, long long rows, long long cols) {
    softmax_bwd_impl<double>(y, dy, dx, rows, cols, false);
}
extern "C" __global__ void log_softmax_bwd_f32(const float* y, const float* dy, float* dx, long long rows, long long cols) {
    softmax_bwd_impl<float>(y, dy, dx, rows, cols, true);
}
extern "C" __global__ void log_softmax_bwd_f64(const double* y, const double* dy, double* dx, long long rows, long long cols) {
    softmax_bwd_impl<double>(y, dy, dx, rows, cols, true);
}
