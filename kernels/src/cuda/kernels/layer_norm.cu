// Layer norm over the last axis of contiguous [rows, cols]:
//   y = (x - mean) * rstd * gamma + beta,   rstd = 1 / sqrt(var + eps)  (biased variance)
// Forward saves mean and rstd per row for the backward. gamma/beta may be null (no affine).
// The variance is a second pass over (x - mean), not E[x^2] - mean^2, which cancels badly.

template <typename T>
__device__ __forceinline__ void layer_norm_fwd_impl(const T* x, const T* gamma, const T* beta, T* y, T* mean_out,
                                                    T* rstd_out, long long rows, long long cols, T eps) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * cols;
        T* yr = y + r * cols;
        T s = T(0);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += xr[j];
        const T mean = tb_block_reduce(s, TbSum(), T(0)) / T(cols);
        T v = T(0);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            const T d = xr[j] - mean;
            v += d * d;
        }
        const T var = tb_block_reduce(v, TbSum(), T(0)) / T(cols);
        const T rstd = T(1) / tb_sqrt(var + eps);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            T h = (xr[j] - mean) * rstd;
            if (gamma) h *= gamma[j];
            if (beta) h += beta[j];
            yr[j] = h;
        }
        if (threadIdx.x == 0) {
            mean_out[r] = mean;
            rstd_out[r] = rstd;
        }
    }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * gamma,  xhat = (x - mean) * rstd
template <typename T>
__device__ __forceinline__ void layer_norm_bwd_dx_impl(const T* x, const T* dy, const T* gamma, const T* mean,
                                                       const T* rstd, T* dx, long long rows, long long cols) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * cols;
        const T* gr = dy + r * cols;
        T* dr = dx + r * cols;
        const T mu = mean[r];
        const T rs = rstd[r];
        T sg = T(0);
        T sgx = T(0);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            const T g = gamma ? gr[j] * gamma[j] : gr[j];
            sg += g;
            sgx += g * (xr[j] - mu) * rs;
        }
        const T mg = tb_block_reduce(sg, TbSum(), T(0)) / T(cols);
        const T mgx = tb_block_reduce(sgx, TbSum(), T(0)) / T(cols);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            const T g = gamma ? gr[j] * gamma[j] : gr[j];
            dr[j] = rs * (g - mg - (xr[j] - mu) * rs * mgx);
        }
    }
}

// dgamma[j] = sum_r dy[r, j] * xhat[r, j],  dbeta[j] = sum_r dy[r, j]. One thread per column:
// neighbouring threads read neighbouring columns, so the loads coalesce. Either output may be
// null. Launched as an elementwise kernel over `cols`.
template <typename T>
__device__ __forceinline__ void layer_norm_bwd_params_impl(const T* x, const T* dy, const T* mean, const T* rstd,
                                                           T* dgamma, T* dbeta, long long rows, long long cols) {
    for (long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += (long long)blockDim.x * gridDim.x) {
        T sg = T(0);
        T sb = T(0);
        for (long long r = 0; r < rows; ++r) {
            const T g = dy[r * cols + j];
            sg += g * (x[r * cols + j] - mean[r]) * rstd[r];
            sb += g;
        }
        if (dgamma) dgamma[j] = sg;
        if (dbeta) dbeta[j] = sb;
    }
}

#define TB_LAYER_NORM(T, sfx)                                                                                       \
    extern "C" __global__ void layer_norm_fwd_##sfx(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, \
                                                    long long rows, long long cols, T eps) {                          \
        layer_norm_fwd_impl<T>(x, gamma, beta, y, mean, rstd, rows, cols, eps);                                     \
    }                                                                                                               \
    extern "C" __global__ void layer_norm_bwd_dx_##sfx(const T* x, const T* dy, const T* gamma, const T* mean,        \
                                                       const T* rstd, T* dx, long long rows, long long cols) {        \
        layer_norm_bwd_dx_impl<T>(x, dy, gamma, mean, rstd, dx, rows, cols);                                        \
    }                                                                                                               \
    extern "C" __global__ void layer_norm_bwd_params_##sfx(const T* x, const T* dy, const T* mean, const T* rstd,    \
                                                           T* dgamma, T* dbeta, long long rows, long long cols) {     \
        layer_norm_bwd_params_impl<T>(x, dy, mean, rstd, dgamma, dbeta, rows, cols);                                \
    }

TB_LAYER_NORM(float, f32)
TB_LAYER_NORM(double, f64)
