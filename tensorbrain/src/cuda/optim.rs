//! The fused Adam/AdamW step on a GPU (adam.cu): parameter, moments and AMSGrad's maximum
//! updated in place in one kernel, with the optimizer state kept on the device. The other
//! optimizers step GPU parameters through the host (`step_on_host`).

use tensorbrain_kernels::cuda::optim::{AdamDecay, AdamScalars};

use super::{device_buffer, device_error, kernel_dtype, runtime, unary};
use crate::optim::AdamHyper;
use crate::tensor::{Error, Result, Tensor};

/// The step's scalars, in f64 as `optim/adam.rs` computes them for the CPU.
fn scalars(h: &AdamHyper, step: u64) -> AdamScalars {
    let o = &h.options;
    let (beta1, beta2) = o.betas;
    let t = step as f64;
    let decay = match (o.weight_decay == 0.0, h.decoupled) {
        (true, _) => AdamDecay::None,
        (false, true) => AdamDecay::Decoupled,
        (false, false) => AdamDecay::L2,
    };
    AdamScalars {
        step_size: o.lr / (1.0 - beta1.powf(t)),
        bc2_sqrt: (1.0 - beta2.powf(t)).powf(0.5),
        w1: 1.0 - beta1,
        beta2,
        w2: 1.0 - beta2,
        eps: o.eps,
        weight_decay: o.weight_decay,
        decay_factor: 1.0 - o.lr * o.weight_decay,
        decay,
        maximize: o.maximize,
    }
}

/// Step `step` (1 on the first) of Adam/AdamW for the contiguous f32/f64 parameter `p` on a
/// GPU, with its gradient `g` and its state `m`, `v` (and `vmax` with AMSGrad), all on `p`'s
/// device and of its dtype and shape.
pub(crate) fn adam_step(h: &AdamHyper, step: u64, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, vmax: Option<&Tensor>) -> Result<()> {
    const OP: &str = "adam step";
    let device = p.device();
    let dt = kernel_dtype(OP, p.dtype(), device)?;
    if g.device() != device {
        return Err(Error::DeviceMismatch { op: OP, lhs: device, rhs: g.device() });
    }
    assert_eq!(h.options.amsgrad, vmax.is_some(), "internal: AMSGrad's running maximum is kept exactly when amsgrad is on");
    for t in [p, m, v].into_iter().chain(vmax) {
        assert!(
            t.is_contiguous() && t.device() == device && t.dtype() == p.dtype() && t.shape() == p.shape(),
            "internal: the fused Adam step got a parameter or state tensor that is not contiguous on {device} ({:?} {} on {})",
            t.shape(),
            t.dtype(),
            t.device()
        );
    }
    let rt = runtime(device, OP)?;
    // A gradient that aliases the parameter (or is a strided view) is copied first: the kernel
    // reads it while it writes the parameter.
    let g = if g.shares_storage(p) || !g.is_contiguous() { unary("copy", g)? } else { g.clone() };
    let s = scalars(h, step);
    // Write locks on everything the kernel writes, a read lock on the gradient.
    let (ps, gs, ms, vs) = (p.storage_mut(), g.storage(), m.storage_mut(), v.storage_mut());
    let vmax_guard = vmax.map(|t| (t.storage_mut(), t.layout().offset));
    rt.adam_step(
        dt,
        p.numel(),
        (device_buffer(&ps), p.layout().offset),
        (device_buffer(&gs), g.layout().offset),
        (device_buffer(&ms), m.layout().offset),
        (device_buffer(&vs), v.layout().offset),
        vmax_guard.as_ref().map(|(guard, off)| (device_buffer(guard), *off)),
        &s,
    )
    .map_err(|e| device_error(OP, device, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyper(weight_decay: f64, decoupled: bool) -> AdamHyper {
        let options = crate::optim::AdamOptions { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay, amsgrad: false, maximize: true };
        AdamHyper { options, decoupled }
    }

    #[test]
    fn step_scalars_follow_the_cpu_formulas() {
        let s = scalars(&hyper(0.01, true), 3);
        assert_eq!(s.step_size, 1e-3 / (1.0 - 0.9f64.powf(3.0)));
        assert_eq!(s.bc2_sqrt, (1.0 - 0.999f64.powf(3.0)).sqrt());
        assert_eq!((s.w1, s.beta2, s.w2), (1.0 - 0.9, 0.999, 1.0 - 0.999));
        assert_eq!(s.decay_factor, 1.0 - 1e-3 * 0.01);
        assert!(s.maximize);
        assert_eq!(s.decay, AdamDecay::Decoupled);
        assert_eq!(scalars(&hyper(0.01, false), 1).decay, AdamDecay::L2);
        assert_eq!(scalars(&hyper(0.0, true), 1).decay, AdamDecay::None);
        assert_eq!(scalars(&hyper(0.0, false), 1).decay, AdamDecay::None);
    }
}
