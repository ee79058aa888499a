// Embedding lookup: out[i, :] = weight[ids[i], :] for ids of shape [n] (i64) and weight
// [vocab, dim]. An id outside [0, vocab) writes NaN to its row and records (first such
// position + 1) in *bad, which the host checks after the launch and reports as an error; a
// silent out-of-bounds read would return garbage.
//
// Backward: dweight[ids[i], :] += dy[i, :], with atomicAdd because several positions may share
// an id. ids equal to padding_idx (pass -1 for none) get no gradient, as in PyTorch.
// dweight must be zeroed first. atomicAdd on double needs sm_60+, below every target here.

template <typename T>
__device__ __forceinline__ void embedding_fwd_impl(const long long* ids, const T* weight, T* out, long long n, long long vocab,
                                                   long long dim, int* bad) {
    const long long total = n * dim;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const long long i = k / dim;
        const long long j = k - i * dim;
        const long long id = ids[i];
        if (id < 0 || id >= vocab) {
            out[k] = tb_nan<T>();
            if (j == 0) atomicCAS(bad, 0, (int)(i < 0x7ffffffeLL ? i + 1 : 0x7fffffff));
        } else {
            out[k] = weight[id * dim + j];
        }
    }
}

template <typename T>
__device__ __forceinline__ void embedding_bwd_impl(const long long* ids, const T* dy, T* dweight, long long n, long long vocab,
                                                   long long dim, long long padding_idx) {
    const long long total = n * dim;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (long long)blockDim.x * gridDim.x) {
        const long long i = k / dim;
        const long long j = k - i * dim;
        const long long id = ids[i];
        // Out-of-range ids were reported by the forward; skipping them keeps the write in bounds.
        if (id < 0 || id >= vocab || id == padding_idx) continue;
        atomicAdd(&dweight[id * dim + j], dy[k]);
    }
}

extern "C" __global__ void embedding_fwd_f32(const long long* ids, const float* weight, float* out, long long n, long long vocab,
                                             long long dim, int* bad) {
    embedding_fwd_impl<float>(ids, weight, out, n, vocab, dim, bad);
}
extern "C" __global__ void embedding_fwd_f64(const long long* ids, const double* weight, double* out, long long n,
                                             long long vocab, long long dim, int* bad) {
    embedding_fwd_impl<double>(ids, weight, out, n, vocab, dim, bad);
}
extern "C" __global__ void embedding_bwd_f32(const long long* ids, const float* dy, float* dweight, long long n, long long vocab,
                                             long long dim, long long padding_idx) {
    embedding_bwd_impl<float>(ids, dy, dweight, n, vocab, dim, padding_idx);
}
extern "C" __global__ void embedding_bwd_f64(const long long* ids, const double* dy, double* dweight, long long n,
                                             long long vocab, long long dim, long long padding_idx) {
    embedding_bwd_impl<double>(ids, dy, dweight, n, vocab, dim, padding_idx);
}
