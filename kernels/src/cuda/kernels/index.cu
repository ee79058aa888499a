// Indexing along one dim of a contiguous tensor viewed [outer, n, inner] (kernels/src/index.rs's
// layout). Indices are i64 and were checked to lie in [0, n) on the host before the launch.
//
// index_select copies data without arithmetic, so it exists per element width (b1, b2, b4, b8)
// and serves every dtype: out[o, j, i] = src[o, idx[j], i] for out [outer, m, inner].
//
// index_add adds src [outer, m, inner] into out [outer, n, inner] (already a copy of the base
// tensor) at rows idx[j]. Instead of atomics it takes a host-made plan that groups the source
// positions by target row: target row rows[u] receives js[starts[u]], ..., js[starts[u+1]-1]
// (ascending j). One thread owns each (o, u, i) cell and adds its sources in ascending j, the
// order of the CPU kernel, so the result is deterministic and equal to the CPU's.

template <typename T>
__device__ __forceinline__ void index_select_impl(const T* src, const long long* idx, T* out, long long outer, long long n,
                                                  long long inner, long long m) {
    const long long total = outer * m * inner;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const long long i = k % inner;
        const long long t = k / inner;
        const long long j = t % m;
        const long long o = t / m;
        out[k] = src[(o * n + idx[j]) * inner + i];
    }
}

template <typename T>
__device__ __forceinline__ void index_add_impl(T* out, const T* src, const long long* rows, const long long* starts,
                                               const long long* js, long long outer, long long n, long long inner, long long m,
                                               long long targets) {
    const long long total = outer * targets * inner;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const long long i = k % inner;
        const long long t = k / inner;
        const long long u = t % targets;
        const long long o = t / targets;
        T* cell = out + (o * n + rows[u]) * inner + i;
        T acc = *cell;
        for (long long s = starts[u]; s < starts[u + 1]; ++s) acc += src[(o * m + js[s]) * inner + i];
        *cell = acc;
    }
}

#define TB_INDEX_SELECT(SUFFIX, T)                                                                                          \
    extern "C" __global__ void index_select_##SUFFIX(const T* src, const long long* idx, T* out, long long outer, long long n, \
                                                     long long inner, long long m) {                                        \
        index_select_impl<T>(src, idx, out, outer, n, inner, m);                                                            \
    }
TB_INDEX_SELECT(b1, unsigned char)
TB_INDEX_SELECT(b2, unsigned short)
TB_INDEX_SELECT(b4, unsigned int)
TB_INDEX_SELECT(b8, unsigned long long)

#define TB_INDEX_ADD(SUFFIX, T)                                                                                               \
    extern "C" __global__ void index_add_##SUFFIX(T* out, const T* src, const long long* rows, const long long* starts,       \
                                                  const long long* js, long long outer, long long n, long long inner,         \
                                                  long long m, long long targets) {                                           \
        index_add_impl<T>(out, src, rows, starts, js, outer, n, inner, m, targets);                                           \
    }
TB_INDEX_ADD(f32, float)
TB_INDEX_ADD(f64, double)
