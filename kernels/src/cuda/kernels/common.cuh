// Shared by every TensorBrain CUDA source: sources.rs prepends this file to each .cu file
// before handing it to NVRTC (NVRTC sees no system headers, so nothing here includes any).
//
// Conventions:
// * every kernel exists as <name>_f32 and <name>_f64 (extern "C", so the names are stable);
// * element counts and offsets are `long long`, so tensors over 2^31 elements index correctly;
// * elementwise kernels use grid-stride loops, so any grid size is correct (launch.rs picks it);
// * row kernels run one block per row with blockDim.x a multiple of 32 (warp shuffles need
//   full warps) and at most 1024 threads.

#define TB_MAX_DIMS 8
#define TB_FULL_MASK 0xffffffffu

// Shape of the output (row-major) and strides of one operand, both by value as kernel
// parameters. Mirrored by `launch::KernelShape` / `launch::KernelStrides` (#[repr(C)]).
struct TbShape {
    int ndim;
    int pad_;
    long long dims[TB_MAX_DIMS];
};

struct TbStrides {
    long long offset;
    long long s[TB_MAX_DIMS];
};

// Element offset of the operand at flat (row-major) output index `i`. A broadcast dim has
// stride 0, so the same element is read for every index along it.
__device__ __forceinline__ long long tb_offset(long long i, const TbShape& shape, const TbStrides& st) {
    long long off = st.offset;
    for (int d = shape.ndim - 1; d >= 0; --d) {
        const long long n = shape.dims[d];
        const long long q = i / n;
        off += (i - q * n) * st.s[d];
        i = q;
    }
    return off;
}

// Overloads so templates pick the float or double function.
__device__ __forceinline__ float tb_exp(float x) { return expf(x); }
__device__ __forceinline__ double tb_exp(double x) { return exp(x); }
__device__ __forceinline__ float tb_log(float x) { return logf(x); }
__device__ __forceinline__ double tb_log(double x) { return log(x); }
__device__ __forceinline__ float tb_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double tb_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float tb_rsqrt(float x) { return rsqrtf(x); }
__device__ __forceinline__ double tb_rsqrt(double x) { return rsqrt(x); }
__device__ __forceinline__ float tb_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double tb_abs(double x) { return fabs(x); }
__device__ __forceinline__ float tb_sin(float x) { return sinf(x); }
__device__ __forceinline__ double tb_sin(double x) { return sin(x); }
__device__ __forceinline__ float tb_cos(float x) { return cosf(x); }
__device__ __forceinline__ double tb_cos(double x) { return cos(x); }
__device__ __forceinline__ float tb_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double tb_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float tb_erf(float x) { return erff(x); }
__device__ __forceinline__ double tb_erf(double x) { return erf(x); }
__device__ __forceinline__ float tb_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double tb_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float tb_expm1(float x) { return expm1f(x); }
__device__ __forceinline__ double tb_expm1(double x) { return expm1(x); }
__device__ __forceinline__ float tb_pow(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double tb_pow(double x, double y) { return pow(x, y); }
__device__ __forceinline__ bool tb_isnan(float x) { return x != x; }
__device__ __forceinline__ bool tb_isnan(double x) { return x != x; }

// -infinity without <cmath>'s INFINITY.
template <typename T> __device__ __forceinline__ T tb_neg_inf();
template <> __device__ __forceinline__ float tb_neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double tb_neg_inf<double>() { return __longlong_as_double(0xfff0000000000000ULL); }
template <typename T> __device__ __forceinline__ T tb_nan();
template <> __device__ __forceinline__ float tb_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double tb_nan<double>() { return __longlong_as_double(0x7ff8000000000000ULL); }

// max/min that propagate NaN, as the CPU kernels do (fmaxf would drop it).
template <typename T> __device__ __forceinline__ T tb_max(T a, T b) {
    if (tb_isnan(a) || tb_isnan(b)) return tb_nan<T>();
    return a >= b ? a : b;
}
template <typename T> __device__ __forceinline__ T tb_min(T a, T b) {
    if (tb_isnan(a) || tb_isnan(b)) return tb_nan<T>();
    return a <= b ? a : b;
}

struct TbSum {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct TbMax {
    template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return tb_max(a, b); }
};

template <typename T, typename Op> __device__ __forceinline__ T tb_warp_reduce(T v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(TB_FULL_MASK, v, o));
    return v;
}

// Reduces `v` over the whole block and returns the result to every thread. `identity` fills
// the lanes of warps that do not exist. Needs blockDim.x % 32 == 0; contains __syncthreads, so
// every thread of the block must call it.
template <typename T, typename Op> __device__ __forceinline__ T tb_block_reduce(T v, Op op, T identity) {
    __shared__ T warp_vals[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    v = tb_warp_reduce(v, op);
    if (lane == 0) warp_vals[warp] = v;
    __syncthreads();
    T w = lane < nwarps ? warp_vals[lane] : identity;
    // Every warp reduces the per-warp values itself, so no second broadcast is needed.
    w = tb_warp_reduce(w, op);
    // warp_vals may be reused by the next call only once every warp has read it.
    __syncthreads();
    return w;
}

// One row's maximum and sum of exp(x - max), reduced over the block and returned to every
// thread: the stable log-sum-exp that softmax and cross-entropy share (lse = m + log(s)).
template <typename T> __device__ __forceinline__ void tb_row_max_sumexp(const T* xr, long long cols, T& m, T& s) {
    m = tb_neg_inf<T>();
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) m = tb_max(m, xr[j]);
    m = tb_block_reduce(m, TbMax(), tb_neg_inf<T>());
    s = T(0);
    for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += tb_exp(xr[j] - m);
    s = tb_block_reduce(s, TbSum(), T(0));
}

// A sliding 2-D window over NCHW planes: convolution (conv.cu) and pooling (pool.cu). `flag`
// is pooling's count_include_pad (0/1); convolutions leave it 0. By value as a kernel
// parameter; mirrored by `launch::WindowGeometry` (#[repr(C)], 15 long longs).
struct TbWindow {
    long long n, c, h, w;    // input batch, channels, height, width
    long long oh, ow;        // output height, width
    long long kh, kw;        // window
    long long sh, sw;        // stride
    long long ph, pw;        // zero padding before (and after) each spatial dim
    long long dh, dw;        // dilation
    long long flag;
};

// The output positions o along one axis whose window covers input cell i, as [lo, hi): the
// o with o*s - p + k*d == i for some tap k in [0, taps). For d == 1 (pooling) every tap in
// range counts; the caller re-checks divisibility when d > 1.
__device__ __forceinline__ void tb_covering(long long i, long long p, long long s, long long extent, long long out,
                                            long long& lo, long long& hi) {
    // o*s - p <= i  and  o*s - p + extent - 1 >= i, where extent = d*(taps-1)+1.
    const long long top = i + p;                     // o*s <= top
    const long long bottom = top - (extent - 1);     // o*s >= bottom
    lo = bottom <= 0 ? 0 : (bottom + s - 1) / s;
    hi = top / s + 1;
    if (hi > out) hi = out;
    if (lo > hi) lo = hi;
}
