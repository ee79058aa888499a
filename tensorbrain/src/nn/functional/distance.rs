//! Distances and similarities between vectors: `F.pairwise_distance` and
//! `F.cosine_similarity`.

use crate::tensor::{Error, Result, Tensor};

/// `||x1 - x2 + eps||_p` over the last dim (`F.pairwise_distance`), broadcasting the inputs.
pub fn try_pairwise_distance(x1: &Tensor, x2: &Tensor, p: f64, eps: f64, keepdim: bool) -> Result<Tensor> {
    if x1.rank() == 0 && x2.rank() == 0 {
        return Err(Error::Msg("pairwise_distance: inputs need at least one dim".into()));
    }
    x1.try_sub(x2)?.try_add_scalar(eps)?.try_vector_norm(p, &[-1], keepdim)
}

/// The cosine of the angle between `x1` and `x2` along `dim` (`F.cosine_similarity`):
/// `sum(x1 / max(||x1||, eps) * x2 / max(||x2||, eps))`. As in PyTorch, the clamp to `eps`
/// changes the value but not the gradient (PyTorch clamps outside autograd).
pub fn try_cosine_similarity(x1: &Tensor, x2: &Tensor, dim: isize, eps: f64) -> Result<Tensor> {
    let shape = crate::tensor::layout::broadcast_shapes("cosine_similarity", x1.shape(), x2.shape())?;
    let target: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
    let (a, b) = (x1.try_expand(&target)?, x2.try_expand(&target)?);
    let clamped_norm = |t: &Tensor| -> Result<Tensor> {
        let n = t.try_vector_norm(2.0, &[dim], true)?;
        let raised = n.detach().try_clamp(Some(eps), None)?.try_sub(&n.detach())?;
        n.try_add(&raised)
    };
    a.try_div(&clamped_norm(&a)?)?.try_mul(&b.try_div(&clamped_norm(&b)?)?)?.try_sum(&[dim], false)
}
