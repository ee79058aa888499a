//! Elementwise unary math and activations.

use super::{float_map, panicking};
use crate::autograd::{is_grad_enabled, record};
use crate::tensor::{Result, Tensor};

impl Tensor {
    pub fn try_neg(&self) -> Result<Tensor> {
        let out = float_map!(self, "neg", |x| -x)?;
        Ok(record("neg", out, &[self], |g, _| Ok(vec![Some(g.try_neg()?)])))
    }

    pub fn try_exp(&self) -> Result<Tensor> {
        let out = float_map!(self, "exp", |x| x.exp())?;
        let (x, y) = (self.clone(), out.detach());
        Ok(record("exp", out, &[self], move |g, _| {
            // Reuse the saved output unless the backward itself is being recorded.
            let y = if is_grad_enabled() { x.try_exp()? } else { y.clone() };
            Ok(vec![Some(g.try_mul(&y)?)])
        }))
    }

    pub fn try_log(&self) -> Result<Tensor> {
        let out = float_map!(self, "log", |x| x.ln())?;
        let x = self.clone();
        Ok(record("log", out, &[self], move |g, _| Ok(vec![Some(g.try_div(&x)?)])))
    }
}

panicking! {
    /// `-self`.
    fn neg / try_neg(&self) -> Tensor;
    /// `e ** self`.
    fn exp / try_exp(&self) -> Tensor;
    /// Natural logarithm.
    fn log / try_log(&self) -> Tensor;
}
