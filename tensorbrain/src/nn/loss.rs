//! Loss functions with PyTorch's semantics (`torch.nn.functional`): MSE, L1, cross entropy,
//! negative log likelihood and binary cross entropy (on probabilities or on logits).
//!
//! Each loss comes three ways: `cross_entropy(&logits, &target)` (mean reduction, panics on bad
//! input), `try_cross_entropy` returning [`Result`], and an options form
//! (`CrossEntropyLoss::new().label_smoothing(0.1).forward(&logits, &target)`). Every loss is
//! composed of differentiable tensor ops, so gradients flow to the input (and to float targets
//! and weights) through the tape.

mod margin;
mod regression;

pub use margin::{CosineEmbeddingLoss, KlDivLoss, KlReduction, MarginRankingLoss, SoftMarginLoss, TripletMarginLoss};
pub use regression::{HuberLoss, PoissonNllLoss, SmoothL1Loss};

use crate::ops::ok;
use crate::tensor::{DType, Error, Result, Tensor};

/// How per-element losses are combined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over elements (weighted by class weights where a loss has them).
    #[default]
    Mean,
    /// The sum over elements.
    Sum,
    /// No reduction: one loss per element (per sample for cross entropy).
    None,
}

/// PyTorch's default `ignore_index`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

fn check_float(op: &str, what: &str, t: &Tensor) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(Error::Msg(format!("{op}: {what} must be a float tensor (f32, f64, f16 or bf16), got {} of shape {:?}", t.dtype(), t.shape())));
    }
    Ok(())
}

fn check_same_dtype(op: &str, what: &str, input: &Tensor, other: &Tensor) -> Result<()> {
    if other.dtype() != input.dtype() {
        return Err(Error::Msg(format!("{op}: {what} must have the input's dtype {}, got {}", input.dtype(), other.dtype())));
    }
    Ok(())
}

fn check_same_shape(op: &str, input: &Tensor, target: &Tensor) -> Result<()> {
    if input.shape() != target.shape() {
        return Err(Error::Msg(format!("{op}: target must have the input's shape {:?}, got {:?}", input.shape(), target.shape())));
    }
    Ok(())
}

/// A float tensor (input and target of the same float dtype and shape).
fn check_pair(op: &str, input: &Tensor, target: &Tensor) -> Result<()> {
    check_float(op, "input", input)?;
    check_same_dtype(op, "target", input, target)?;
    check_same_shape(op, input, target)
}

/// `w` must broadcast to `input`'s shape without growing it.
fn check_broadcasts_to(op: &str, what: &str, input: &Tensor, w: &Tensor) -> Result<()> {
    check_same_dtype(op, what, input, w)?;
    let (xs, ws) = (input.shape(), w.shape());
    let fits = ws.len() <= xs.len() && ws.iter().rev().zip(xs.iter().rev()).all(|(&a, &b)| a == b || a == 1);
    if !fits {
        return Err(Error::Msg(format!("{op}: {what} of shape {ws:?} must broadcast to the input's shape {xs:?}")));
    }
    Ok(())
}

fn reduce(loss: Tensor, reduction: Reduction) -> Result<Tensor> {
    match reduction {
        Reduction::Mean => loss.try_mean(&[], false),
        Reduction::Sum => loss.try_sum_all(),
        Reduction::None => Ok(loss),
    }
}

/// Options for [`mse_loss`]: `MseLoss::new().reduction(Reduction::Sum)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MseLoss {
    reduction: Reduction,
}

impl MseLoss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// `(input - target)²`, reduced. Input and target have the same float dtype and shape.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        check_pair("mse_loss", input, target)?;
        let d = input.try_sub(target)?;
        reduce(d.try_mul(&d)?, self.reduction)
    }
}

/// Options for [`l1_loss`]: `L1Loss::new().reduction(Reduction::Sum)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct L1Loss {
    reduction: Reduction,
}

impl L1Loss {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// `|input - target|`, reduced. Input and target have the same float dtype and shape.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        check_pair("l1_loss", input, target)?;
        reduce(input.try_sub(target)?.try_abs()?, self.reduction)
    }
}

/// Options for [`cross_entropy`]: class weights, an ignored target value, label smoothing and
/// the reduction, as in `torch.nn.CrossEntropyLoss`.
#[derive(Clone, Debug)]
pub struct CrossEntropyLoss {
    weight: Option<Tensor>,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: Reduction,
}

impl Default for CrossEntropyLoss {
    fn default() -> Self {
        CrossEntropyLoss { weight: None, ignore_index: DEFAULT_IGNORE_INDEX, label_smoothing: 0.0, reduction: Reduction::Mean }
    }
}

impl CrossEntropyLoss {
    pub fn new() -> Self {
        Self::default()
    }
    /// A weight per class (shape `[C]`, the input's dtype).
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Targets equal to this value contribute nothing (default -100).
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }
    /// Mixes the one-hot target with the uniform distribution: `(1 - ε)·onehot + ε / C`.
    pub fn label_smoothing(mut self, label_smoothing: f64) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Cross entropy between logits `[N, C]` (or `[N, C, d1, ..]`, or `[C]` unbatched) and either
    /// class indices (i64, `[N]` / `[N, d1, ..]` / `[]`) or class probabilities (the input's
    /// shape and dtype).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "cross_entropy";
        check_float(OP, "input (logits)", input)?;
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::Msg(format!("{OP}: label_smoothing must be in [0, 1], got {}", self.label_smoothing)));
        }
        if input.rank() == 0 {
            return Err(Error::Msg(format!("{OP}: input must be logits of shape [N, C], [N, C, d1, ..] or [C], got a 0-d tensor")));
        }
        let class_dim = if input.rank() == 1 { 0 } else { 1 };
        let log_probs = input.try_log_softmax(class_dim)?;
        if target.dtype().is_float() {
            return self.probability_targets(&log_probs, target);
        }
        let opts = ClassIndexLoss { weight: self.weight.as_ref(), ignore_index: self.ignore_index, label_smoothing: self.label_smoothing, reduction: self.reduction };
        opts.apply(OP, &log_probs, target)
    }

    /// Soft targets: `-Σ_c w_c · t_c · log p_c` per sample; the mean divides by the sample count.
    fn probability_targets(&self, log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "cross_entropy";
        // PyTorch accepts any negative ignore_index here (it has nothing to ignore) and rejects
        // the others.
        if self.ignore_index >= 0 {
            return Err(Error::Msg(format!(
                "{OP}: ignore_index is not supported for floating point (probability) targets (got ignore_index {}; leave it at the default -100, or pass class indices as i64)",
                self.ignore_index
            )));
        }
        check_same_dtype(OP, "a probability target", log_probs, target)?;
        if target.shape() != log_probs.shape() {
            return Err(Error::Msg(format!(
                "{OP}: a probability target must have the input's shape {:?}, got {:?} (class-index targets are i64)",
                log_probs.shape(),
                target.shape()
            )));
        }
        let class_dim: isize = if log_probs.rank() == 1 { 0 } else { 1 };
        let classes = log_probs.shape()[class_dim as usize];
        let target = if self.label_smoothing > 0.0 {
            target.try_mul_scalar(1.0 - self.label_smoothing)?.try_add_scalar(self.label_smoothing / classes as f64)?
        } else {
            target.clone()
        };
        let mut terms = log_probs.try_mul(&target)?;
        if let Some(w) = &self.weight {
            terms = terms.try_mul(&class_weight_view(OP, w, log_probs, class_dim as usize)?)?;
        }
        let per_sample = terms.try_sum(&[class_dim], false)?.try_neg()?;
        reduce(per_sample, self.reduction)
    }
}

/// `weight` (`[C]`) shaped to broadcast along `class_dim` of `like`.
fn class_weight_view(op: &str, weight: &Tensor, like: &Tensor, class_dim: usize) -> Result<Tensor> {
    check_same_dtype(op, "weight", like, weight)?;
    let classes = like.shape()[class_dim];
    if weight.shape() != [classes] {
        return Err(Error::Msg(format!("{op}: weight must have shape [{classes}] (one per class), got {:?}", weight.shape())));
    }
    let mut view = vec![1isize; like.rank()];
    view[class_dim] = classes as isize;
    weight.try_reshape(&view)
}

/// The shared core of cross entropy and NLL on class-index targets, given log-probabilities.
struct ClassIndexLoss<'a> {
    weight: Option<&'a Tensor>,
    ignore_index: i64,
    label_smoothing: f64,
    reduction: Reduction,
}

impl ClassIndexLoss<'_> {
    fn apply(&self, op: &str, log_probs: &Tensor, target: &Tensor) -> Result<Tensor> {
        if log_probs.rank() == 1 {
            // Unbatched: one sample of C classes and a 0-d target.
            if target.rank() != 0 {
                return Err(Error::Msg(format!("{op}: for input of shape {:?} (one sample) the target must be 0-d, got {:?}", log_probs.shape(), target.shape())));
            }
            let out = self.apply(op, &log_probs.try_unsqueeze(0)?, &target.try_reshape(&[1])?)?;
            return if self.reduction == Reduction::None { out.try_reshape(&[]) } else { Ok(out) };
        }
        if target.dtype() != DType::I64 {
            return Err(Error::Msg(format!("{op}: class-index target must be i64, got {}", target.dtype())));
        }
        let classes = log_probs.shape()[1];
        let mut want: Vec<usize> = log_probs.shape().to_vec();
        want.remove(1);
        if target.shape() != want.as_slice() {
            return Err(Error::Msg(format!(
                "{op}: target must have shape {want:?} (the input's shape {:?} without the class dim), got {:?}",
                log_probs.shape(),
                target.shape()
            )));
        }
        if let Some(w) = self.weight {
            class_weight_view(op, w, log_probs, 1)?;
        }

        // Ignored targets gather class 0 (any valid index) and are masked out.
        let values = target.to_vec::<i64>();
        let mut safe = Vec::with_capacity(values.len());
        let mut keep = Vec::with_capacity(values.len());
        for &t in &values {
            if t == self.ignore_index {
                safe.push(0i64);
                keep.push(0.0f64);
            } else if (0..classes as i64).contains(&t) {
                safe.push(t);
                keep.push(1.0);
            } else {
                return Err(Error::Msg(format!(
                    "{op}: target value {t} is out of range for {classes} classes (expected 0..={} or ignore_index {})",
                    classes - 1,
                    self.ignore_index
                )));
            }
        }
        let device = log_probs.device();
        // On a GPU the picked log-probabilities are a masked sum with a one-hot of the targets
        // (built here, on the host, where the targets were checked), which needs no gather
        // kernel; the gradient flows through the multiply and the sum.
        let one_hot = (device != crate::tensor::Device::Cpu)
            .then(|| -> Result<Tensor> {
                let inner: usize = want[1..].iter().product();
                let mut hot = vec![0.0f64; log_probs.numel()];
                for (i, &t) in safe.iter().enumerate() {
                    hot[(i / inner.max(1)) * classes * inner + t as usize * inner + i % inner.max(1)] = 1.0;
                }
                Tensor::from_vec(hot, log_probs.shape()).try_to_dtype(log_probs.dtype())?.try_to_device(device)
            })
            .transpose()?;
        let safe = Tensor::from_vec(safe, &want).try_to_device(device)?;
        let keep = Tensor::from_vec(keep, &want).try_to_dtype(log_probs.dtype())?.try_to_device(device)?;

        // Per-sample weight: w[target] where kept, 0 where ignored.
        let sample_weight = match self.weight {
            Some(w) => w.try_index_select(0, &safe.try_reshape(&[-1])?)?.try_reshape(&want.iter().map(|&d| d as isize).collect::<Vec<_>>())?.try_mul(&keep)?,
            None => keep.clone(),
        };
        let picked = match &one_hot {
            Some(hot) => log_probs.try_mul(hot)?.try_sum(&[1], false)?,
            None => log_probs.try_gather(1, &safe.try_unsqueeze(1)?)?.try_squeeze(Some(1))?,
        };
        let nll = picked.try_mul(&sample_weight)?.try_neg()?;
        // PyTorch's weighted mean divides by the total weight of the kept targets. When that is
        // 0 (every target ignored, or no samples) the loss is 0/0 = NaN but, as in PyTorch, the
        // gradient is 0 rather than the NaN that differentiating the division would give.
        let denominator = sample_weight.try_sum_all()?;
        let nothing_kept = self.reduction == Reduction::Mean && denominator.try_item::<f64>()? == 0.0;
        let reduce_weighted = |loss: Tensor| -> Result<Tensor> {
            match self.reduction {
                Reduction::Mean if nothing_kept => loss.try_sum_all()?.try_mul_scalar(0.0)?.try_add_scalar(f64::NAN),
                Reduction::Mean => loss.try_sum_all()?.try_div(&denominator),
                Reduction::Sum => loss.try_sum_all(),
                Reduction::None => Ok(loss),
            }
        };
        let nll = reduce_weighted(nll)?;
        if self.label_smoothing == 0.0 {
            return Ok(nll);
        }
        // The uniform part: -Σ_c w_c log p_c per kept sample, with the same denominator.
        let weighted = match self.weight {
            Some(w) => log_probs.try_mul(&class_weight_view(op, w, log_probs, 1)?)?,
            None => log_probs.clone(),
        };
        let smooth = weighted.try_sum(&[1], false)?.try_mul(&keep)?.try_neg()?;
        let smooth = reduce_weighted(smooth)?;
        let eps = self.label_smoothing;
        nll.try_mul_scalar(1.0 - eps)?.try_add(&smooth.try_mul_scalar(eps / classes as f64)?)
    }
}

/// Options for [`nll_loss`]: class weights, an ignored target value and the reduction.
#[derive(Clone, Debug)]
pub struct NllLoss {
    weight: Option<Tensor>,
    ignore_index: i64,
    reduction: Reduction,
}

impl Default for NllLoss {
    fn default() -> Self {
        NllLoss { weight: None, ignore_index: DEFAULT_IGNORE_INDEX, reduction: Reduction::Mean }
    }
}

impl NllLoss {
    pub fn new() -> Self {
        Self::default()
    }
    /// A weight per class (shape `[C]`, the input's dtype).
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Targets equal to this value contribute nothing (default -100).
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// `-w[t] · input[t]` per sample on log-probabilities `[N, C]` (or `[N, C, d1, ..]`, or
    /// `[C]`) and i64 class indices `[N]` (or `[N, d1, ..]`, or `[]`).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "nll_loss";
        check_float(OP, "input (log-probabilities)", input)?;
        if input.rank() == 0 {
            return Err(Error::Msg(format!("{OP}: input must be log-probabilities of shape [N, C], [N, C, d1, ..] or [C], got a 0-d tensor")));
        }
        let opts = ClassIndexLoss { weight: self.weight.as_ref(), ignore_index: self.ignore_index, label_smoothing: 0.0, reduction: self.reduction };
        opts.apply(OP, input, target)
    }
}

/// Options for [`binary_cross_entropy`]: an element weight and the reduction.
#[derive(Clone, Debug, Default)]
pub struct BceLoss {
    weight: Option<Tensor>,
    reduction: Reduction,
}

impl BceLoss {
    pub fn new() -> Self {
        Self::default()
    }
    /// Multiplies each element's loss; must broadcast to the input's shape.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// `-w·(t·log x + (1 - t)·log(1 - x))` on probabilities `x` in [0, 1], each log clamped
    /// at -100 as in PyTorch. Target: the input's shape and dtype.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary_cross_entropy";
        check_pair(OP, input, target)?;
        if let Some(bad) = input.to_vec::<f64>().into_iter().find(|p| !(0.0..=1.0).contains(p)) {
            return Err(Error::Msg(format!("{OP}: input must hold probabilities in [0, 1] (apply sigmoid, or use binary_cross_entropy_with_logits), got {bad}")));
        }
        let log_p = input.try_log()?.try_clamp(Some(-100.0), None)?;
        let log_not_p = input.try_rsub_scalar(1.0)?.try_log()?.try_clamp(Some(-100.0), None)?;
        let not_t = target.try_rsub_scalar(1.0)?;
        let mut loss = target.try_mul(&log_p)?.try_add(&not_t.try_mul(&log_not_p)?)?.try_neg()?;
        if let Some(w) = &self.weight {
            check_broadcasts_to(OP, "weight", input, w)?;
            loss = loss.try_mul(w)?;
        }
        reduce(loss, self.reduction)
    }
}

/// Options for [`binary_cross_entropy_with_logits`]: element weight, positive-class weight and
/// the reduction.
#[derive(Clone, Debug, Default)]
pub struct BceWithLogitsLoss {
    weight: Option<Tensor>,
    pos_weight: Option<Tensor>,
    reduction: Reduction,
}

impl BceWithLogitsLoss {
    pub fn new() -> Self {
        Self::default()
    }
    /// Multiplies each element's loss; must broadcast to the input's shape.
    pub fn weight(mut self, weight: Tensor) -> Self {
        self.weight = Some(weight);
        self
    }
    /// Weight of the positive term, per class (broadcast along the last dim, e.g. `[C]`).
    pub fn pos_weight(mut self, pos_weight: Tensor) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
    /// `-w·(p·t·log σ(x) + (1 - t)·log(1 - σ(x)))`, computed as
    /// `w·((1 - t)·x + (1 + (p - 1)·t)·softplus(-x))`, which stays finite for large |x|.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary_cross_entropy_with_logits";
        check_pair(OP, input, target)?;
        let softplus_neg = input.try_neg()?.try_softplus()?;
        let log_weight = match &self.pos_weight {
            Some(p) => {
                check_broadcasts_to(OP, "pos_weight", input, p)?;
                p.try_sub_scalar(1.0)?.try_mul(target)?.try_add_scalar(1.0)?
            }
            None => Tensor::full(&[], 1.0, input.dtype()).try_to_device(input.device())?,
        };
        let mut loss = target.try_rsub_scalar(1.0)?.try_mul(input)?.try_add(&log_weight.try_mul(&softplus_neg)?)?;
        if let Some(w) = &self.weight {
            check_broadcasts_to(OP, "weight", input, w)?;
            loss = loss.try_mul(w)?;
        }
        reduce(loss, self.reduction)
    }
}

/// Mean squared error (`F.mse_loss`); see [`MseLoss`] for other reductions.
pub fn try_mse_loss(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    MseLoss::new().forward(input, target)
}

/// Mean absolute error (`F.l1_loss`); see [`L1Loss`] for other reductions.
pub fn try_l1_loss(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    L1Loss::new().forward(input, target)
}

/// Mean cross entropy of logits and class indices (`F.cross_entropy`); see
/// [`CrossEntropyLoss`] for weights, ignore_index, label smoothing and reductions.
pub fn try_cross_entropy(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    CrossEntropyLoss::new().forward(input, target)
}

/// Mean negative log likelihood of log-probabilities and class indices (`F.nll_loss`).
pub fn try_nll_loss(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    NllLoss::new().forward(input, target)
}

/// Mean binary cross entropy of probabilities (`F.binary_cross_entropy`).
pub fn try_binary_cross_entropy(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    BceLoss::new().forward(input, target)
}

/// Mean binary cross entropy of logits (`F.binary_cross_entropy_with_logits`).
pub fn try_binary_cross_entropy_with_logits(input: &Tensor, target: &Tensor) -> Result<Tensor> {
    BceWithLogitsLoss::new().forward(input, target)
}

/// [`try_mse_loss`], panicking on bad input.
#[track_caller]
pub fn mse_loss(input: &Tensor, target: &Tensor) -> Tensor {
    ok(try_mse_loss(input, target))
}

/// [`try_l1_loss`], panicking on bad input.
#[track_caller]
pub fn l1_loss(input: &Tensor, target: &Tensor) -> Tensor {
    ok(try_l1_loss(input, target))
}

/// [`try_cross_entropy`], panicking on bad input.
#[track_caller]
pub fn cross_entropy(input: &Tensor, target: &Tensor) -> Tensor {
    ok(try_cross_entropy(input, target))
}

/// [`try_nll_loss`], panicking on bad input.
#[track_caller]
pub fn nll_loss(input: &Tensor, target: &Tensor) -> Tensor {
    ok(try_nll_loss(input, target))
}

/// [`try_binary_cross_entropy`], panicking on bad input.
#[track_caller]
pub fn binary_cross_entropy(input: &Tensor, target: &Tensor) -> Tensor {
    ok(try_binary_cross_entropy(input, target))
}

/// [`try_binary_cross_entropy_with_logits`], panicking on bad input.
#[track_caller]
pub fn binary_cross_entropy_with_logits(input: &Tensor, target: &Tensor) -> Tensor {
    ok(try_binary_cross_entropy_with_logits(input, target))
}
