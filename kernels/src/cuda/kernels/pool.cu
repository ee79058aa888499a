// 2-D max and average pooling over NCHW planes, with kernels/src/pool.rs's semantics (PyTorch's,
// ceil_mode=False, no dilation): windows start at o*s - p, padding never wins a max (the
// search starts from -inf at the window's first real cell and takes a later cell on > or NaN,
// so the last NaN wins), and an average divides by the window clipped to the padded input
// (flag = count_include_pad) or by its real cells.
//
// Max pooling saves the index iy*W + ix of each maximum within its plane as i64 (PyTorch's
// return_indices). Both backwards run one thread per input cell and gather the outputs whose
// window covers it, in output order, so they need no atomics, are deterministic and add in
// the CPU kernels' order.

// The window of output o along one axis: real cells [lo, hi) and the padded length.
__device__ __forceinline__ void tb_pool_span(long long o, long long s, long long p, long long k, long long in, long long& lo,
                                             long long& hi, long long& padded) {
    const long long start = o * s - p;
    long long end = start + k;
    if (end > in + p) end = in + p;
    lo = start < 0 ? 0 : start;
    hi = end < in ? end : in;
    padded = end - start;
}

// Output cell k of [planes, OH, OW]: its plane and its window's real cells [y0, y1) x [x0, x1),
// py x px with the padding.
struct TbPoolCell {
    long long plane, y0, y1, x0, x1, py, px;
};
__device__ __forceinline__ TbPoolCell tb_pool_cell(long long k, const TbWindow& g) {
    TbPoolCell c;
    const long long ox = k % g.ow;
    const long long t = k / g.ow;
    const long long oy = t % g.oh;
    c.plane = t / g.oh;
    tb_pool_span(oy, g.sh, g.ph, g.kh, g.h, c.y0, c.y1, c.py);
    tb_pool_span(ox, g.sw, g.pw, g.kw, g.w, c.x0, c.x1, c.px);
    return c;
}

// Input cell k of [planes, H, W]: its plane and position, and the outputs whose windows cover
// it, [oy0, oy1) x [ox0, ox1).
struct TbPoolCover {
    long long plane, iy, ix, oy0, oy1, ox0, ox1;
};
__device__ __forceinline__ TbPoolCover tb_pool_cover(long long k, const TbWindow& g) {
    TbPoolCover c;
    c.ix = k % g.w;
    const long long t = k / g.w;
    c.iy = t % g.h;
    c.plane = t / g.h;
    tb_covering(c.iy, g.ph, g.sh, g.kh, g.oh, c.oy0, c.oy1);
    tb_covering(c.ix, g.pw, g.sw, g.kw, g.ow, c.ox0, c.ox1);
    return c;
}

template <typename T>
__device__ __forceinline__ void max_pool_fwd_impl(const T* x, T* out, long long* idx, TbWindow g) {
    const long long total = g.n * g.c * g.oh * g.ow;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const TbPoolCell c = tb_pool_cell(k, g);
        const T* xp = x + c.plane * g.h * g.w;
        T best = tb_neg_inf<T>();
        long long best_i = c.y0 * g.w + c.x0;
        for (long long iy = c.y0; iy < c.y1; ++iy) {
            for (long long ix = c.x0; ix < c.x1; ++ix) {
                const T v = xp[iy * g.w + ix];
                if (v > best || tb_isnan(v)) {
                    best = v;
                    best_i = iy * g.w + ix;
                }
            }
        }
        out[k] = best;
        idx[k] = best_i;
    }
}

// dx[plane, i] = sum of dy[plane, o] over the outputs o whose maximum was cell i.
template <typename T>
__device__ __forceinline__ void max_pool_bwd_impl(const T* dy, const long long* idx, T* dx, TbWindow g) {
    const long long total = g.n * g.c * g.h * g.w;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const TbPoolCover c = tb_pool_cover(k, g);
        const long long cell = c.iy * g.w + c.ix;
        const long long base = c.plane * g.oh * g.ow;
        T acc = T(0);
        for (long long oy = c.oy0; oy < c.oy1; ++oy) {
            for (long long ox = c.ox0; ox < c.ox1; ++ox) {
                const long long o = base + oy * g.ow + ox;
                if (idx[o] == cell) acc += dy[o];
            }
        }
        dx[k] = acc;
    }
}

// out[plane, o] = u[plane, idx[plane, o]]: the adjoint of the backward (double backward).
template <typename T>
__device__ __forceinline__ void max_pool_gather_impl(const T* u, const long long* idx, T* out, TbWindow g) {
    const long long per_plane = g.oh * g.ow;
    const long long total = g.n * g.c * per_plane;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const long long plane = k / per_plane;
        out[k] = u[plane * g.h * g.w + idx[k]];
    }
}

template <typename T>
__device__ __forceinline__ void avg_pool_fwd_impl(const T* x, T* out, TbWindow g) {
    const long long total = g.n * g.c * g.oh * g.ow;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const TbPoolCell c = tb_pool_cell(k, g);
        const T* xp = x + c.plane * g.h * g.w;
        // Sums in double, as the CPU kernel does.
        double sum = 0.0;
        for (long long iy = c.y0; iy < c.y1; ++iy)
            for (long long ix = c.x0; ix < c.x1; ++ix) sum += (double)xp[iy * g.w + ix];
        const double d = g.flag ? (double)(c.py * c.px) : (double)((c.y1 - c.y0) * (c.x1 - c.x0));
        out[k] = (T)(sum / d);
    }
}

template <typename T>
__device__ __forceinline__ void avg_pool_bwd_impl(const T* dy, T* dx, TbWindow g) {
    const long long total = g.n * g.c * g.h * g.w;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const TbPoolCover c = tb_pool_cover(k, g);
        const T* dyp = dy + c.plane * g.oh * g.ow;
        T acc = T(0);
        for (long long oy = c.oy0; oy < c.oy1; ++oy) {
            long long y0, y1, py;
            tb_pool_span(oy, g.sh, g.ph, g.kh, g.h, y0, y1, py);
            for (long long ox = c.ox0; ox < c.ox1; ++ox) {
                long long x0, x1, px;
                tb_pool_span(ox, g.sw, g.pw, g.kw, g.w, x0, x1, px);
                const double d = g.flag ? (double)(py * px) : (double)((y1 - y0) * (x1 - x0));
                // The share is rounded to T before it is added, as on the CPU.
                acc += (T)((double)dyp[oy * g.ow + ox] / d);
            }
        }
        dx[k] = acc;
    }
}

extern "C" __global__ void max_pool2d_fwd_f32(const float* x, float* out, long long* idx, TbWindow g) { max_pool_fwd_impl<float>(x, out, idx, g); }
extern "C" __global__ void max_pool2d_fwd_f64(const double* x, double* out, long long* idx, TbWindow g) { max_pool_fwd_impl<double>(x, out, idx, g); }
extern "C" __global__ void max_pool2d_bwd_f32(const float* dy, const long long* idx, float* dx, TbWindow g) { max_pool_bwd_impl<float>(dy, idx, dx, g); }
extern "C" __global__ void max_pool2d_bwd_f64(const double* dy, const long long* idx, double* dx, TbWindow g) { max_pool_bwd_impl<double>(dy, idx, dx, g); }
extern "C" __global__ void max_pool2d_gather_f32(const float* u, const long long* idx, float* out, TbWindow g) { max_pool_gather_impl<float>(u, idx, out, g); }
extern "C" __global__ void max_pool2d_gather_f64(const double* u, const long long* idx, double* out, TbWindow g) { max_pool_gather_impl<double>(u, idx, out, g); }
extern "C" __global__ void avg_pool2d_fwd_f32(const float* x, float* out, TbWindow g) { avg_pool_fwd_impl<float>(x, out, g); }
extern "C" __global__ void avg_pool2d_fwd_f64(const double* x, double* out, TbWindow g) { avg_pool_fwd_impl<double>(x, out, g); }
extern "C" __global__ void avg_pool2d_bwd_f32(const float* dy, float* dx, TbWindow g) { avg_pool_bwd_impl<float>(dy, dx, g); }
extern "C" __global__ void avg_pool2d_bwd_f64(const double* dy, double* dx, TbWindow g) { avg_pool_bwd_impl<double>(dy, dx, g); }
