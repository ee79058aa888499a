//! Margin and embedding losses: `MarginRankingLoss`, `SoftMarginLoss`, `CosineEmbeddingLoss`,
//! `TripletMarginLoss`, and the distribution loss `KlDivLoss`.

use super::{check_float, check_pair, reduce, Reduction};
use crate::nn::functional::try_pairwise_distance;
use crate::tensor::{Error, Result, Tensor};

fn check_shape(op: &str, a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::Msg(format!("{op}: {what} must have shape {:?}, got {:?}", a.shape(), b.shape())));
    }
    Ok(())
}

/// `F.margin_ranking_loss`: `max(0, -y (x1 - x2) + margin)` with `y` in {1, -1}.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MarginRankingLoss {
    pub margin: f64,
    pub reduction: Reduction,
}

impl MarginRankingLoss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    pub fn forward(&self, x1: &Tensor, x2: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "margin_ranking_loss";
        check_pair(OP, x1, x2)?;
        check_shape(OP, x1, target, "target")?;
        let loss = target.try_to_dtype(x1.dtype())?.try_neg()?.try_mul(&x1.try_sub(x2)?)?.try_add_scalar(self.margin)?.try_relu()?;
        reduce(loss, self.reduction)
    }
}

/// `F.soft_margin_loss`: `log(1 + exp(-y x))` with `y` in {1, -1}.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SoftMarginLoss {
    pub reduction: Reduction,
}

impl SoftMarginLoss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "soft_margin_loss";
        check_pair(OP, input, target)?;
        reduce(input.try_mul(target)?.try_neg()?.try_exp()?.try_log1p()?, self.reduction)
    }
}

/// `F.cosine_embedding_loss`: `1 - cos(x1, x2)` where `y = 1`, `max(0, cos - margin)` where
/// `y = -1`; the cosine over dim 1 of `[N, D]` inputs (or the only dim of `[D]`), computed as
/// PyTorch does (`x1·x2 / sqrt((|x1|² + 1e-12)(|x2|² + 1e-12))`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CosineEmbeddingLoss {
    pub margin: f64,
    pub reduction: Reduction,
}

impl CosineEmbeddingLoss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    pub fn forward(&self, x1: &Tensor, x2: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "cosine_embedding_loss";
        check_pair(OP, x1, x2)?;
        if !(x1.rank() == 1 || x1.rank() == 2) {
            return Err(Error::Msg(format!("{OP}: inputs must be [N, D] or [D], got {:?}", x1.shape())));
        }
        let dim = x1.rank() as isize - 1;
        let eps = 1e-12;
        let prod = x1.try_mul(x2)?.try_sum(&[dim], false)?;
        let m1 = x1.try_square()?.try_sum(&[dim], false)?.try_add_scalar(eps)?;
        let m2 = x2.try_square()?.try_sum(&[dim], false)?.try_add_scalar(eps)?;
        let cos = prod.try_div(&m1.try_mul(&m2)?.try_sqrt()?)?;
        check_shape(OP, &cos, target, "target (one label per pair)")?;
        let t = target.try_to_dtype(x1.dtype())?;
        let zero = cos.scalar_like(0.0)?;
        let pos = Tensor::try_where_cond(&t.try_eq(&t.scalar_like(1.0)?)?, &cos.try_rsub_scalar(1.0)?, &zero)?;
        let neg = Tensor::try_where_cond(&t.try_eq(&t.scalar_like(-1.0)?)?, &cos.try_sub_scalar(self.margin)?.try_clamp(Some(0.0), None)?, &zero)?;
        reduce(pos.try_add(&neg)?, self.reduction)
    }
}

/// `F.triplet_margin_loss`: `max(d(a, p) - d(a, n) + margin, 0)` with the `p`-norm distance
/// `||x - y + eps||_p` over the last dim; `swap` uses `min(d(a, n), d(p, n))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TripletMarginLoss {
    pub margin: f64,
    pub p: f64,
    pub eps: f64,
    pub swap: bool,
    pub reduction: Reduction,
}

impl Default for TripletMarginLoss {
    fn default() -> Self {
        TripletMarginLoss { margin: 1.0, p: 2.0, eps: 1e-6, swap: false, reduction: Reduction::Mean }
    }
}

impl TripletMarginLoss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = margin;
        self
    }
    pub fn p(mut self, p: f64) -> Self {
        self.p = p;
        self
    }
    pub fn swap(mut self, swap: bool) -> Self {
        self.swap = swap;
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    pub fn forward(&self, anchor: &Tensor, positive: &Tensor, negative: &Tensor) -> Result<Tensor> {
        const OP: &str = "triplet_margin_loss";
        check_pair(OP, anchor, positive)?;
        check_pair(OP, anchor, negative)?;
        let d_ap = try_pairwise_distance(anchor, positive, self.p, self.eps, false)?;
        let mut d_an = try_pairwise_distance(anchor, negative, self.p, self.eps, false)?;
        if self.swap {
            d_an = d_an.try_minimum(&try_pairwise_distance(positive, negative, self.p, self.eps, false)?)?;
        }
        let loss = d_ap.try_sub(&d_an)?.try_add_scalar(self.margin)?.try_clamp(Some(0.0), None)?;
        reduce(loss, self.reduction)
    }
}

/// How [`KlDivLoss`] reduces: as [`Reduction`], plus PyTorch's `batchmean` (the sum divided by
/// the batch size, the mathematically correct KL divergence).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KlReduction {
    #[default]
    Mean,
    BatchMean,
    Sum,
    None,
}

/// `F.kl_div(input, target)`: `target * (log target - input)` pointwise, where `input` holds
/// log-probabilities and `target` probabilities (or log-probabilities with `log_target`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KlDivLoss {
    pub reduction: KlReduction,
    pub log_target: bool,
}

impl KlDivLoss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn reduction(mut self, reduction: KlReduction) -> Self {
        self.reduction = reduction;
        self
    }
    pub fn log_target(mut self, log_target: bool) -> Self {
        self.log_target = log_target;
        self
    }
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "kl_div";
        check_float(OP, "input", input)?;
        check_pair(OP, input, target)?;
        let pointwise = if self.log_target {
            target.try_exp()?.try_mul(&target.try_sub(input)?)?
        } else {
            // xlogy(t, t) - t x, with 0 log 0 = 0.
            let pos = target.try_gt(&target.scalar_like(0.0)?)?;
            let safe = Tensor::try_where_cond(&pos, target, &target.scalar_like(1.0)?)?;
            let tlogt = Tensor::try_where_cond(&pos, &target.try_mul(&safe.try_log()?)?, &target.scalar_like(0.0)?)?;
            tlogt.try_sub(&target.try_mul(input)?)?
        };
        match self.reduction {
            KlReduction::Mean => reduce(pointwise, Reduction::Mean),
            KlReduction::Sum => reduce(pointwise, Reduction::Sum),
            KlReduction::None => Ok(pointwise),
            KlReduction::BatchMean => {
                let n = if input.rank() == 0 { 1 } else { input.shape()[0] };
                pointwise.try_sum_all()?.try_div_scalar(n as f64)
            }
        }
    }
}
