//! Finite-difference gradient checking, like `torch.autograd.gradcheck`.

use super::{grad, no_grad};
use crate::tensor::{DType, Error, Result, Tensor};

/// Tolerances and step for [`gradcheck`].
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-5, rtol: 1e-4 }
    }
}

/// Compares the tape's gradients of `f` at `inputs` (f64 tensors) with central differences.
///
/// The scalar checked is `sum(f(inputs) * w)` for a fixed pseudo-random `w`, so every output
/// element contributes with a distinct weight. Returns the largest absolute error, or an error
/// naming the input and element where analytic and numeric gradients disagree.
pub fn gradcheck(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor], opts: GradcheckOptions) -> Result<f64> {
    for (i, x) in inputs.iter().enumerate() {
        if x.dtype() != DType::F64 {
            return Err(Error::Msg(format!("gradcheck: input {i} is {}, expected f64", x.dtype())));
        }
    }
    let leaves: Vec<Tensor> = inputs.iter().map(|x| x.detach().set_requires_grad(true)).collect();
    let out = f(&leaves)?;
    let w = weights(out.shape());
    let scalar = |xs: &[Tensor]| -> Result<f64> { Ok(f(xs)?.try_mul(&w)?.try_sum_all()?.item::<f64>()) };
    let analytic = grad(&out.try_mul(&w)?.try_sum_all()?, &leaves, None, false)?;

    let mut worst = 0.0f64;
    for (i, x) in leaves.iter().enumerate() {
        let base = x.to_vec::<f64>();
        let a = analytic[i].as_ref().map(|g| g.to_vec::<f64>()).unwrap_or_else(|| vec![0.0; base.len()]);
        for j in 0..base.len() {
            let numeric = no_grad(|| -> Result<f64> {
                let mut plus = base.clone();
                plus[j] += opts.eps;
                let mut minus = base.clone();
                minus[j] -= opts.eps;
                let with = |v: Vec<f64>| -> Vec<Tensor> {
                    leaves.iter().enumerate().map(|(k, l)| if k == i { Tensor::from_vec(v.clone(), x.shape()) } else { l.detach() }).collect()
                };
                Ok((scalar(&with(plus))? - scalar(&with(minus))?) / (2.0 * opts.eps))
            })?;
            let err = (a[j] - numeric).abs();
            worst = worst.max(err);
            if err > opts.atol + opts.rtol * numeric.abs() {
                return Err(Error::Msg(format!(
                    "gradcheck: input {i} element {j}: analytic {} vs numeric {numeric} (shape {:?})",
                    a[j],
                    x.shape()
                )));
            }
        }
    }
    Ok(worst)
}

/// Checks second derivatives: the gradient of `f`, computed with `create_graph`, is itself
/// gradient-checked.
pub fn gradgradcheck(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor], opts: GradcheckOptions) -> Result<f64> {
    let first = |xs: &[Tensor]| -> Result<Tensor> {
        // The numeric pass evaluates this under no_grad on plain tensors, but it needs a graph.
        let _mode = super::GradModeGuard::new(true);
        let leaves: Vec<Tensor> =
            xs.iter().map(|x| if x.requires_grad() { x.clone() } else { x.detach().set_requires_grad(true) }).collect();
        let xs = &leaves[..];
        let out = f(xs)?;
        let w = weights(out.shape());
        let gs = grad(&out.try_mul(&w)?.try_sum_all()?, xs, None, true)?;
        // Concatenate every input's gradient into one flat output.
        let mut total: Option<Tensor> = None;
        for (g, x) in gs.into_iter().zip(xs) {
            let g = match g {
                Some(g) => g.try_reshape(&[-1])?,
                None => Tensor::zeros(&[x.numel()], DType::F64),
            };
            let s = g.try_mul(&g)?.try_sum_all()?;
            total = Some(match total {
                None => s,
                Some(t) => t.try_add(&s)?,
            });
        }
        total.ok_or_else(|| Error::Msg("gradgradcheck: no inputs".into()))
    };
    gradcheck(first, inputs, opts)
}

/// Deterministic weights in [0.5, 1.5) so no output element is ignored.
fn weights(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|k| 0.5 + ((k as f64 * 0.618_033_988_749_895) % 1.0)).collect();
    Tensor::from_vec(v, shape)
}
