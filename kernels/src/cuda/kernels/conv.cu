// Convolution as GEMM (the im2col method; tensorbrain/src/cuda/window.rs does the GEMMs
// with cuBLAS): im2col unrolls the input into columns, col2im folds column gradients back into an
// input gradient. Columns are one matrix for the whole batch, [C*KH*KW, N*OH*OW], so the
// forward is one GEMM per group (W [O, C*KH*KW] times the columns) and the weight gradient is
// one GEMM summing over the batch inside the contraction, with no per-sample partial sums.
// Row (c, ky, kx) matches the weight's [O, C/groups, KH, KW] layout, so group g's rows are
// contiguous.
//
// col2im runs one thread per input cell and gathers every tap that read it (no atomics), so the
// input gradient is deterministic.

template <typename T>
__device__ __forceinline__ void im2col_impl(const T* x, T* cols, TbWindow g) {
    const long long plane = g.oh * g.ow;
    const long long ncols = g.n * plane;
    const long long total = g.c * g.kh * g.kw * ncols;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const long long row = k / ncols;
        const long long col = k - row * ncols;
        const long long n = col / plane;
        const long long pos = col - n * plane;
        const long long oy = pos / g.ow;
        const long long ox = pos - oy * g.ow;
        const long long kx = row % g.kw;
        const long long t = row / g.kw;
        const long long ky = t % g.kh;
        const long long c = t / g.kh;
        const long long iy = oy * g.sh - g.ph + ky * g.dh;
        const long long ix = ox * g.sw - g.pw + kx * g.dw;
        const bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
        cols[k] = inside ? x[((n * g.c + c) * g.h + iy) * g.w + ix] : T(0);
    }
}

template <typename T>
__device__ __forceinline__ void col2im_impl(const T* cols, T* dx, TbWindow g) {
    const long long plane = g.oh * g.ow;
    const long long ncols = g.n * plane;
    const long long total = g.n * g.c * g.h * g.w;
    const long long ext_y = g.dh * (g.kh - 1) + 1;
    const long long ext_x = g.dw * (g.kw - 1) + 1;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const long long ix = k % g.w;
        long long t = k / g.w;
        const long long iy = t % g.h;
        t /= g.h;
        const long long c = t % g.c;
        const long long n = t / g.c;
        long long oy0, oy1, ox0, ox1;
        tb_covering(iy, g.ph, g.sh, ext_y, g.oh, oy0, oy1);
        tb_covering(ix, g.pw, g.sw, ext_x, g.ow, ox0, ox1);
        T acc = T(0);
        for (long long oy = oy0; oy < oy1; ++oy) {
            const long long dy = iy + g.ph - oy * g.sh;  // = ky * dh
            if (dy % g.dh != 0) continue;
            const long long ky = dy / g.dh;
            for (long long ox = ox0; ox < ox1; ++ox) {
                const long long dxx = ix + g.pw - ox * g.sw;  // = kx * dw
                if (dxx % g.dw != 0) continue;
                const long long kx = dxx / g.dw;
                const long long row = (c * g.kh + ky) * g.kw + kx;
                acc += cols[row * ncols + n * plane + oy * g.ow + ox];
            }
        }
        dx[k] = acc;
    }
}

extern "C" __global__ void im2col_f32(const float* x, float* cols, TbWindow g) { im2col_impl<float>(x, cols, g); }
extern "C" __global__ void im2col_f64(const double* x, double* cols, TbWindow g) { im2col_impl<double>(x, cols, g); }
extern "C" __global__ void col2im_f32(const float* cols, float* dx, TbWindow g) { col2im_impl<float>(cols, dx, g); }
extern "C" __global__ void col2im_f64(const double* cols, double* dx, TbWindow g) { col2im_impl<double>(cols, dx, g); }
