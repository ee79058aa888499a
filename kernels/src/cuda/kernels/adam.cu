// Fused Adam / AdamW step over n parameters, one thread per element (grid-stride), following
// tensorbrain/src/optim/adam.rs (itself torch.optim.adam's single-tensor step) op for op:
//
//   g = maximize ? -grad : grad
//   decay == 2 (AdamW): p *= decay_factor            (decay_factor = 1 - lr * weight_decay)
//   decay == 1 (Adam L2): g += weight_decay * p
//   m = lerp(m, g, 1 - beta1);  v = v * beta2 + w2 * g * g   (w2 = 1 - beta2, rounded from f64)
//   amsgrad: vmax = max(vmax, v), used in place of v below (vmax null otherwise)
//   p += -step_size * m / (sqrt(v) / bc2_sqrt + eps)  (step_size = lr / (1 - beta1^t),
//                                                       bc2_sqrt = sqrt(1 - beta2^t))
//
// The step-dependent scalars are computed on the host in f64, as on the CPU, so one kernel
// serves every step without a device-side step counter.

template <typename T>
__device__ __forceinline__ T tb_lerp(T start, T end, T w) {
    // torch.lerp's two forms: exact at both ends of the weight range.
    return w < T(0.5) ? start + w * (end - start) : end - (end - start) * (T(1) - w);
}

template <typename T>
__device__ __forceinline__ void adam_step_impl(T* p, const T* grad, T* m, T* v, T* vmax, long long n, T step_size, T bc2_sqrt,
                                               T w1, T beta2, T w2, T eps, T weight_decay, T decay_factor, int decay, int maximize) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x) {
        T g = maximize ? -grad[i] : grad[i];
        T pi = p[i];
        if (decay == 2) {
            pi = pi * decay_factor;
        } else if (decay == 1) {
            g = g + weight_decay * pi;
        }
        const T mi = tb_lerp(m[i], g, w1);
        const T vi = v[i] * beta2 + w2 * g * g;
        m[i] = mi;
        v[i] = vi;
        T vd = vi;
        if (vmax) {
            const T old = vmax[i];
            vd = (old >= vi || tb_isnan(old)) ? old : vi;
            vmax[i] = vd;
        }
        const T denom = tb_sqrt(vd) / bc2_sqrt + eps;
        p[i] = pi + (-step_size) * (mi / denom);
    }
}

extern "C" __global__ void adam_step_f32(float* p, const float* grad, float* m, float* v, float* vmax, long long n, float step_size,
                                         float bc2_sqrt, float w1, float beta2, float w2, float eps, float weight_decay,
                                         float decay_factor, int decay, int maximize) {
    adam_step_impl<float>(p, grad, m, v, vmax, n, step_size, bc2_sqrt, w1, beta2, w2, eps, weight_decay, decay_factor, decay,
                          maximize);
}
extern "C" __global__ void adam_step_f64(double* p, const double* grad, double* m, double* v, double* vmax, long long n,
                                         double step_size, double bc2_sqrt, double w1, double beta2, double w2, double eps,
                                         double weight_decay, double decay_factor, int decay, int maximize) {
    adam_step_impl<double>(p, grad, m, v, vmax, n, step_size, bc2_sqrt, w1, beta2, w2, eps, weight_decay, decay_factor, decay,
                           maximize);
}
