// Elementwise unary and binary kernels over strided, broadcasting operands.
//
// Output: contiguous, `n` elements of `shape`. Each input is read through its own strides
// (0 on broadcast dims), so transposed, sliced and broadcast views need no copy first. The
// formulas are those of kernels/src/fused.rs, so the GPU and CPU agree to rounding.

#define TB_GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)

template <typename T> struct Neg { __device__ T operator()(T x) const { return -x; } };
template <typename T> struct Exp { __device__ T operator()(T x) const { return tb_exp(x); } };
template <typename T> struct Log { __device__ T operator()(T x) const { return tb_log(x); } };
template <typename T> struct Sqrt { __device__ T operator()(T x) const { return tb_sqrt(x); } };
template <typename T> struct Rsqrt { __device__ T operator()(T x) const { return T(1) / tb_sqrt(x); } };
template <typename T> struct Abs { __device__ T operator()(T x) const { return tb_abs(x); } };
template <typename T> struct Sin { __device__ T operator()(T x) const { return tb_sin(x); } };
template <typename T> struct Cos { __device__ T operator()(T x) const { return tb_cos(x); } };
template <typename T> struct Tanh { __device__ T operator()(T x) const { return tb_tanh(x); } };
template <typename T> struct Sigmoid { __device__ T operator()(T x) const { return T(1) / (T(1) + tb_exp(-x)); } };
template <typename T> struct Relu { __device__ T operator()(T x) const { return x <= T(0) ? T(0) : x; } };
template <typename T> struct Gelu {
    __device__ T operator()(T x) const { return x * T(0.5) * (T(1) + tb_erf(x * T(0.70710678118654752440))); }
};
template <typename T> struct GeluTanh {
    __device__ T operator()(T x) const {
        return T(0.5) * x * (T(1) + tb_tanh(T(0.7978845608028654) * (x + T(0.044715) * x * x * x)));
    }
};
template <typename T> struct Silu { __device__ T operator()(T x) const { return x / (T(1) + tb_exp(-x)); } };
template <typename T> struct Softplus {
    __device__ T operator()(T x) const { return x > T(20) ? x : tb_log1p(tb_exp(x)); }
};
template <typename T> struct Log1p { __device__ T operator()(T x) const { return tb_log1p(x); } };
template <typename T> struct Square { __device__ T operator()(T x) const { return x * x; } };
template <typename T> struct Reciprocal { __device__ T operator()(T x) const { return T(1) / x; } };
template <typename T> struct Erf { __device__ T operator()(T x) const { return tb_erf(x); } };
template <typename T> struct Sign {
    __device__ T operator()(T x) const { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }
};

template <typename T> struct Add { __device__ T operator()(T a, T b) const { return a + b; } };
template <typename T> struct Sub { __device__ T operator()(T a, T b) const { return a - b; } };
template <typename T> struct Mul { __device__ T operator()(T a, T b) const { return a * b; } };
template <typename T> struct Div { __device__ T operator()(T a, T b) const { return a / b; } };
template <typename T> struct Maximum { __device__ T operator()(T a, T b) const { return tb_max(a, b); } };
template <typename T> struct Minimum { __device__ T operator()(T a, T b) const { return tb_min(a, b); } };
template <typename T> struct Pow { __device__ T operator()(T a, T b) const { return tb_pow(a, b); } };

template <typename T, typename F>
__device__ __forceinline__ void unary_impl(long long n, TbShape shape, const T* x, TbStrides xs, T* out, F f) {
    TB_GRID_STRIDE(i, n) { out[i] = f(x[tb_offset(i, shape, xs)]); }
}

template <typename T, typename F>
__device__ __forceinline__ void binary_impl(long long n, TbShape shape, const T* a, TbStrides as, const T* b, TbStrides bs,
                                            T* out, F f) {
    TB_GRID_STRIDE(i, n) { out[i] = f(a[tb_offset(i, shape, as)], b[tb_offset(i, shape, bs)]); }
}

#define TB_UNARY(name, Op)                                                                                      \
    extern "C" __global__ void name##_f32(long long n, TbShape shape, const float* x, TbStrides xs, float* out) {   \
        unary_impl<float>(n, shape, x, xs, out, Op<float>());                                                   \
    }                                                                                                           \
    extern "C" __global__ void name##_f64(long long n, TbShape shape, const double* x, TbStrides xs, double* out) { \
        unary_impl<double>(n, shape, x, xs, out, Op<double>());                                                 \
    }

#define TB_BINARY(name, Op)                                                                                     \
    extern "C" __global__ void name##_f32(long long n, TbShape shape, const float* a, TbStrides as,               \
                                          const float* b, TbStrides bs, float* out) {                             \
        binary_impl<float>(n, shape, a, as, b, bs, out, Op<float>());                                           \
    }                                                                                                           \
    extern "C" __global__ void name##_f64(long long n, TbShape shape, const double* a, TbStrides as,              \
                                          const double* b, TbStrides bs, double* out) {                           \
        binary_impl<double>(n, shape, a, as, b, bs, out, Op<double>());                                         \
    }

TB_UNARY(neg, Neg)
TB_UNARY(exp, Exp)
TB_UNARY(log, Log)
TB_UNARY(sqrt, Sqrt)
TB_UNARY(rsqrt, Rsqrt)
TB_UNARY(abs, Abs)
TB_UNARY(sin, Sin)
TB_UNARY(cos, Cos)
TB_UNARY(tanh, Tanh)
TB_UNARY(sigmoid, Sigmoid)
TB_UNARY(relu, Relu)
TB_UNARY(gelu, Gelu)
TB_UNARY(gelu_tanh, GeluTanh)
TB_UNARY(silu, Silu)
TB_UNARY(softplus, Softplus)
TB_UNARY(log1p, Log1p)
TB_UNARY(square, Square)
TB_UNARY(reciprocal, Reciprocal)
TB_UNARY(erf, Erf)
TB_UNARY(sign, Sign)
// A strided copy (makes a view contiguous).
template <typename T> struct Identity { __device__ T operator()(T x) const { return x; } };
TB_UNARY(copy, Identity)

// Strided copies by element width (b1, b2, b4, b8): a copy needs no arithmetic, so these serve
// every dtype, integers and bool included.
#define TB_COPY_BYTES(SUFFIX, T)                                                                       \
    extern "C" __global__ void copy_##SUFFIX(long long n, TbShape shape, const T* x, TbStrides xs, T* out) { \
        TB_GRID_STRIDE(i, n) { out[i] = x[tb_offset(i, shape, xs)]; }                                  \
    }
TB_COPY_BYTES(b1, unsigned char)
TB_COPY_BYTES(b2, unsigned short)
TB_COPY_BYTES(b4, unsigned int)
TB_COPY_BYTES(b8, unsigned long long)

TB_BINARY(add, Add)
TB_BINARY(sub, Sub)
TB_BINARY(mul, Mul)
TB_BINARY(div, Div)
TB_BINARY(maximum, Maximum)
TB_BINARY(minimum, Minimum)
TB_BINARY(pow, Pow)

// Comparisons: bool results as one byte 0/1 (the runtime's Bool storage), operands broadcast
// through their strides. NaN compares false except for `ne`, as in IEEE and PyTorch.
template <typename T> struct CmpEq { __device__ bool operator()(T a, T b) const { return a == b; } };
template <typename T> struct CmpNe { __device__ bool operator()(T a, T b) const { return a != b; } };
template <typename T> struct CmpLt { __device__ bool operator()(T a, T b) const { return a < b; } };
template <typename T> struct CmpLe { __device__ bool operator()(T a, T b) const { return a <= b; } };
template <typename T> struct CmpGt { __device__ bool operator()(T a, T b) const { return a > b; } };
template <typename T> struct CmpGe { __device__ bool operator()(T a, T b) const { return a >= b; } };

template <typename T, typename F>
__device__ __forceinline__ void compare_impl(long long n, TbShape shape, const T* a, TbStrides as, const T* b, TbStrides bs,
                                             unsigned char* out, F f) {
    TB_GRID_STRIDE(i, n) { out[i] = f(a[tb_offset(i, shape, as)], b[tb_offset(i, shape, bs)]) ? 1 : 0; }
}

#define TB_COMPARE(name, Op)                                                                                    \
    extern "C" __global__ void name##_f32(long long n, TbShape shape, const float* a, TbStrides as,               \
                                          const float* b, TbStrides bs, unsigned char* out) {                     \
        compare_impl<float>(n, shape, a, as, b, bs, out, Op<float>());                                          \
    }                                                                                                           \
    extern "C" __global__ void name##_f64(long long n, TbShape shape, const double* a, TbStrides as,              \
                                          const double* b, TbStrides bs, unsigned char* out) {                    \
        compare_impl<double>(n, shape, a, as, b, bs, out, Op<double>());                                        \
    }

TB_COMPARE(eq, CmpEq)
TB_COMPARE(ne, CmpNe)
TB_COMPARE(lt, CmpLt)
TB_COMPARE(le, CmpLe)
TB_COMPARE(gt, CmpGt)
TB_COMPARE(ge, CmpGe)

// `cond ? a : b` with a bool (byte) condition; all three broadcast through their strides.
template <typename T>
__device__ __forceinline__ void where_impl(long long n, TbShape shape, const unsigned char* c, TbStrides cs, const T* a,
                                           TbStrides as, const T* b, TbStrides bs, T* out) {
    TB_GRID_STRIDE(i, n) { out[i] = c[tb_offset(i, shape, cs)] ? a[tb_offset(i, shape, as)] : b[tb_offset(i, shape, bs)]; }
}

extern "C" __global__ void where_f32(long long n, TbShape shape, const unsigned char* c, TbStrides cs, const float* a,
                                     TbStrides as, const float* b, TbStrides bs, float* out) {
    where_impl<float>(n, shape, c, cs, a, as, b, bs, out);
}
extern "C" __global__ void where_f64(long long n, TbShape shape, const unsigned char* c, TbStrides cs, const double* a,
                                     TbStrides as, const double* b, TbStrides bs, double* out) {
    where_impl<double>(n, shape, c, cs, a, as, b, bs, out);
}

// Unary ops with two scalar parameters p and q (a Rust number beside a tensor: `x * 2.0`,
// `x.clamp(..)`), so the scalar travels as a kernel argument instead of a one-element tensor.
// Unused parameters are passed as 0.
template <typename T> struct Affine {  // add_scalar (1, v), mul_scalar (v, 0)
    T p, q;
    __device__ T operator()(T x) const { return p * x + q; }
};
template <typename T> struct PowScalar {
    T p, q;
    __device__ T operator()(T x) const { return p == T(2) ? x * x : tb_pow(x, p); }
};
template <typename T> struct Clamp {  // max(x, p) then min(., q), NaN stays NaN (PyTorch's order)
    T p, q;
    __device__ T operator()(T x) const {
        T y = x < p ? p : x;
        return y > q ? q : y;
    }
};
template <typename T> struct LeakyRelu {
    T p, q;
    __device__ T operator()(T x) const { return x > T(0) ? x : x * p; }
};
template <typename T> struct Elu {
    T p, q;
    __device__ T operator()(T x) const { return x > T(0) ? x : p * tb_expm1(x); }
};

#define TB_UNARY_PQ(name, Op)                                                                                   \
    extern "C" __global__ void name##_f32(long long n, TbShape shape, const float* x, TbStrides xs, float p,      \
                                          float q, float* out) {                                                \
        unary_impl<float>(n, shape, x, xs, out, Op<float>{p, q});                                               \
    }                                                                                                           \
    extern "C" __global__ void name##_f64(long long n, TbShape shape, const double* x, TbStrides xs, double p,    \
                                          double q, double* out) {                                              \
        unary_impl<double>(n, shape, x, xs, out, Op<double>{p, q});                                             \
    }

TB_UNARY_PQ(affine, Affine)
TB_UNARY_PQ(pow_scalar, PowScalar)
TB_UNARY_PQ(clamp, Clamp)
TB_UNARY_PQ(leaky_relu, LeakyRelu)
TB_UNARY_PQ(elu, Elu)

// Dtype conversions to f32/f64 (`to_dtype`): from f32, f64, i64, i32 and bytes (u8, and bool
// stored as 0/1). One rounding, as the CPU's `convert`: floats and integers convert directly.
template <typename In, typename Out>
__device__ __forceinline__ void cast_impl(long long n, TbShape shape, const In* x, TbStrides xs, Out* out) {
    TB_GRID_STRIDE(i, n) { out[i] = (Out)x[tb_offset(i, shape, xs)]; }
}

#define TB_CAST(from, In)                                                                                       \
    extern "C" __global__ void cast_##from##_f32(long long n, TbShape shape, const In* x, TbStrides xs, float* out) { \
        cast_impl<In, float>(n, shape, x, xs, out);                                                             \
    }                                                                                                           \
    extern "C" __global__ void cast_##from##_f64(long long n, TbShape shape, const In* x, TbStrides xs,          \
                                                 double* out) {                                                 \
        cast_impl<In, double>(n, shape, x, xs, out);                                                            \
    }

TB_CAST(f32, float)
TB_CAST(f64, double)
TB_CAST(i64, long long)
TB_CAST(i32, int)
TB_CAST(u8, unsigned char)

// f16 and bf16 (stored as raw 16-bit patterns: NVRTC gets no headers, so cuda_fp16.h's types
// are not used). Conversions round to nearest even, as the `half` crate the CPU uses; f16's
// through PTX's cvt, bf16's on the bits (NaN stays a quiet NaN). An f64 goes through f32
// rounded to odd, which has enough extra bits that the second rounding is exact: one correct
// rounding from f64, as on the CPU. Ops on f16/bf16 tensors compute in f32 between these casts.
__device__ __forceinline__ float tb_f16_to_f32(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ unsigned short tb_f32_to_f16(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
__device__ __forceinline__ float tb_bf16_to_f32(unsigned short b) { return __uint_as_float(((unsigned int)b) << 16); }
__device__ __forceinline__ unsigned short tb_f32_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}
__device__ __forceinline__ float tb_f64_to_f32_odd(double d) {
    float f = __double2float_rz(d);
    if (!tb_isnan(d) && (double)f != d) f = __uint_as_float(__float_as_uint(f) | 1u);
    return f;
}

struct FromF16 { __device__ float operator()(unsigned short h) const { return tb_f16_to_f32(h); } };
struct FromBf16 { __device__ float operator()(unsigned short b) const { return tb_bf16_to_f32(b); } };
struct ToF16 {
    __device__ unsigned short operator()(float f) const { return tb_f32_to_f16(f); }
    __device__ unsigned short operator()(double d) const { return tb_f32_to_f16(tb_f64_to_f32_odd(d)); }
};
struct ToBf16 {
    __device__ unsigned short operator()(float f) const { return tb_f32_to_bf16(f); }
    __device__ unsigned short operator()(double d) const { return tb_f32_to_bf16(tb_f64_to_f32_odd(d)); }
};

template <typename In, typename Out, typename F>
__device__ __forceinline__ void convert_impl(long long n, TbShape shape, const In* x, TbStrides xs, Out* out, F f) {
    TB_GRID_STRIDE(i, n) { out[i] = f(x[tb_offset(i, shape, xs)]); }
}

extern "C" __global__ void cast_f16_f32(long long n, TbShape shape, const unsigned short* x, TbStrides xs, float* out) {
    convert_impl(n, shape, x, xs, out, FromF16());
}
extern "C" __global__ void cast_bf16_f32(long long n, TbShape shape, const unsigned short* x, TbStrides xs, float* out) {
    convert_impl(n, shape, x, xs, out, FromBf16());
}
// Widening to f64 is exact through f32.
struct F16ToF64 { __device__ double operator()(unsigned short h) const { return (double)tb_f16_to_f32(h); } };
struct Bf16ToF64 { __device__ double operator()(unsigned short b) const { return (double)tb_bf16_to_f32(b); } };
extern "C" __global__ void cast_f16_f64(long long n, TbShape shape, const unsigned short* x, TbStrides xs, double* out) {
    convert_impl(n, shape, x, xs, out, F16ToF64());
}
extern "C" __global__ void cast_bf16_f64(long long n, TbShape shape, const unsigned short* x, TbStrides xs, double* out) {
    convert_impl(n, shape, x, xs, out, Bf16ToF64());
}
extern "C" __global__ void cast_f32_f16(long long n, TbShape shape, const float* x, TbStrides xs, unsigned short* out) {
    convert_impl(n, shape, x, xs, out, ToF16());
}
extern "C" __global__ void cast_f64_f16(long long n, TbShape shape, const double* x, TbStrides xs, unsigned short* out) {
    convert_impl(n, shape, x, xs, out, ToF16());
}
extern "C" __global__ void cast_f32_bf16(long long n, TbShape shape, const float* x, TbStrides xs, unsigned short* out) {
    convert_impl(n, shape, x, xs, out, ToBf16());
}
extern "C" __global__ void cast_f64_bf16(long long n, TbShape shape, const double* x, TbStrides xs, unsigned short* out) {
    convert_impl(n, shape, x, xs, out, ToBf16());
}
