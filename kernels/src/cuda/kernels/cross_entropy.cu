// Cross-entropy from logits [rows, classes] and class targets [rows] (i64):
//   loss[r] = logsumexp(x[r, :]) - x[r, t[r]],   0 where t[r] == ignore_index.
// The forward saves lse[r] for the backward; the mean over non-ignored rows is taken by the
// host (sum_rows over loss, divided by the count), so `reduction` is not a kernel concern.
// A target outside [0, classes) (and not ignore_index) gives NaN loss and sets *bad to
// (row + 1), checked by the host.
//
// Backward: dx[r, c] = dloss[r] * (softmax(x)[r, c] - [c == t[r]]), zero for ignored rows.
// dloss is per row, so mean reduction passes dloss_mean / count for every row.

template <typename T>
__device__ __forceinline__ void cross_entropy_fwd_impl(const T* x, const long long* target, T* loss, T* lse_out, long long rows,
                                                       long long classes, long long ignore_index, int* bad) {
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * classes;
        T m, s;
        tb_row_max_sumexp(xr, classes, m, s);
        if (threadIdx.x == 0) {
            const T lse = m + tb_log(s);
            lse_out[r] = lse;
            const long long t = target[r];
            if (t == ignore_index) {
                loss[r] = T(0);
            } else if (t < 0 || t >= classes) {
                loss[r] = tb_nan<T>();
                atomicCAS(bad, 0, (int)(r < 0x7ffffffeLL ? r + 1 : 0x7fffffff));
            } else {
                loss[r] = lse - xr[t];
            }
        }
    }
}

template <typename T>
__device__ __forceinline__ void cross_entropy_bwd_impl(const T* x, const long long* target, const T* lse, const T* dloss, T* dx,
                                                       long long rows, long long classes, long long ignore_index) {
    const long long total = rows * classes;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const long long r = k / classes;
        const long long c = k - r * classes;
        const long long t = target[r];
        if (t == ignore_index || t < 0 || t >= classes) {
            dx[k] = T(0);
        } else {
            const T p = tb_exp(x[k] - lse[r]);
            dx[k] = dloss[r] * (c == t ? p - T(1) : p);
        }
    }
}

extern "C" __global__ void cross_entropy_fwd_f32(const float* x, const long long* target, float* loss, float* lse, long long rows,
                                                 long long classes, long long ignore_index, int* bad) {
    cross_entropy_fwd_impl<float>(x, target, loss, lse, rows, classes, ignore_index, bad);
}
extern "C" __global__ void cross_entropy_fwd_f64(const double* x, const long long* target, double* loss, double* lse,
                                                 long long rows, long long classes, long long ignore_index, int* bad) {
    cross_entropy_fwd_impl<double>(x, target, loss, lse, rows, classes, ignore_index, bad);
}
extern "C" __global__ void cross_entropy_bwd_f32(const float* x, const long long* target, const float* lse, const float* dloss,
                                                 float* dx, long long rows, long long classes, long long ignore_index) {
    cross_entropy_bwd_impl<float>(x, target, lse, dloss, dx, rows, classes, ignore_index);
}
extern "C" __global__ void cross_entropy_bwd_f64(const double* x, const long long* target, const double* lse,
                                                 const double* dloss, double* dx, long long rows, long long classes,
                                                 long long ignore_index) {
    cross_entropy_bwd_impl<double>(x, target, lse, dloss, dx, rows, classes, ignore_index);
}
