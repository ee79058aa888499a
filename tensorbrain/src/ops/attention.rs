//! Scaled dot-product attention (`F.scaled_dot_product_attention`): the tiled kernel from
//! `tensorbrain_kernels::attention`, which never forms the `L x S` score matrix, and the plain
//! matmul-softmax-matmul reference it is tested against.
//!
//! Layouts are PyTorch's: `q: [B, H, L, E]`, `k: [B, H, S, E]`, `v: [B, H, S, Ev]` (or the same
//! without the head dim), giving `[B, H, L, Ev]`. A boolean (bool or u8) mask is true where a key takes
//! part; a float mask is added to the scores; either broadcasts to `[B, H, L, S]`, so a key
//! padding mask is `[B, 1, 1, S]` and is never expanded in memory. Batch and head dims of `k`
//! and `v` may be 1 and broadcast (multi-query attention).
//!
//! A row whose keys are all masked out gives zeros (PyTorch's math backend since 2.5 does the
//! same), with zero gradients. The mask is a constant: it gets no gradient.

use tensorbrain_kernels::attention::{attention_backward, attention_forward, AttentionFloat, AttentionInputs, AttentionShape, View4};

use super::binary::check_same;
use crate::autograd::{is_grad_enabled, record};
use crate::tensor::{DType, Element, Error, Layout, Result, Tensor};

const OP: &str = "scaled_dot_product_attention";

/// Which causal mask applies, as PyTorch's `CausalVariant`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Causal {
    #[default]
    None,
    /// Query `i` sees keys `0..=i` (PyTorch's `is_causal=True`).
    UpperLeft,
    /// Query `i` sees keys `0..=i + (S - L)`: the last query sees every key, as a decoder
    /// step over a KV cache needs.
    LowerRight,
}

impl Causal {
    /// The kernel's diagonal offset for `l` queries and `s` keys.
    fn offset(self, l: usize, s: usize) -> Option<isize> {
        match self {
            Causal::None => None,
            Causal::UpperLeft => Some(0),
            Causal::LowerRight => Some(s as isize - l as isize),
        }
    }
}

/// The optional arguments of [`scaled_dot_product_attention`]. Unlike PyTorch, a mask and a
/// causal variant may be given together: both apply.
#[derive(Clone, Debug, Default)]
pub struct AttentionOptions {
    /// Boolean (bool or u8, true = attend) or additive float mask broadcastable to `[B, H, L, S]`.
    pub attn_mask: Option<Tensor>,
    pub causal: Causal,
    /// Multiplies `q kᵀ`; `None` means `1 / sqrt(E)`.
    pub scale: Option<f64>,
    /// Dropout on the attention probabilities (the materialised path runs when it is > 0).
    pub dropout_p: f64,
}

impl AttentionOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn mask(mut self, mask: &Tensor) -> Self {
        self.attn_mask = Some(mask.clone());
        self
    }

    /// PyTorch's `is_causal=True`.
    pub fn is_causal(mut self, on: bool) -> Self {
        self.causal = if on { Causal::UpperLeft } else { Causal::None };
        self
    }

    pub fn causal(mut self, causal: Causal) -> Self {
        self.causal = causal;
        self
    }

    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = Some(scale);
        self
    }

    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout_p = p;
        self
    }
}

/// `softmax(q kᵀ · scale + mask) v` without materialising the scores; see the module docs.
#[track_caller]
pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, options: &AttentionOptions) -> Tensor {
    super::ok(try_scaled_dot_product_attention(q, k, v, options))
}

/// The materialised matmul-softmax-matmul path (the reference for the tiled kernel).
#[track_caller]
pub fn scaled_dot_product_attention_reference(q: &Tensor, k: &Tensor, v: &Tensor, options: &AttentionOptions) -> Tensor {
    super::ok(try_scaled_dot_product_attention_reference(q, k, v, options))
}

/// A `[B, S]` key padding mask (true or 1 = padding, as `nn.MultiheadAttention` takes it) as
/// the boolean attention mask `[B, 1, 1, S]` (true = attend) that [`AttentionOptions::mask`]
/// takes.
pub fn key_padding_to_attn_mask(key_padding_mask: &Tensor) -> Result<Tensor> {
    if key_padding_mask.rank() != 2 {
        return Err(Error::invalid("key_padding_mask", key_padding_mask.shape(), "expected a [batch, source_len] mask"));
    }
    let pad = key_padding_mask.try_to_dtype(DType::F64)?;
    let attend = pad.try_eq(&Tensor::zeros(&[], DType::F64).try_on(pad.device())?)?;
    let s = key_padding_mask.shape();
    attend.try_reshape(&[s[0] as isize, 1, 1, s[1] as isize])
}

/// The operands, checked and seen as 4-D `[B, H, L, E]`.
struct Plan {
    shape: AttentionShape,
    q: Layout,
    k: Layout,
    v: Layout,
    /// The mask as an additive tensor of the operands' dtype, and its broadcast 4-D layout.
    mask: Option<(Tensor, Layout)>,
    scale: f64,
    causal: Option<isize>,
    /// `[B, H, L, Ev]`, or `[B, L, Ev]` for 3-D operands.
    out_shape: Vec<usize>,
}

/// A 3-D `[B, L, E]` layout as `[B, 1, L, E]`.
fn as_4d(l: &Layout) -> Layout {
    if l.rank() == 4 {
        return l.clone();
    }
    Layout {
        shape: [l.shape[0], 1, l.shape[1], l.shape[2]].into_iter().collect(),
        strides: [l.strides[0], 0, l.strides[1], l.strides[2]].into_iter().collect(),
        offset: l.offset,
    }
}

fn plan(q: &Tensor, k: &Tensor, v: &Tensor, options: &AttentionOptions) -> Result<Plan> {
    check_same(OP, q, k)?;
    check_same(OP, q, v)?;
    let rank = q.rank();
    if !(rank == 3 || rank == 4) || k.rank() != rank || v.rank() != rank {
        return Err(Error::Msg(format!(
            "{OP}: expected query, key and value of rank 4 [batch, heads, len, dim] (or 3 [batch, len, dim]), got {:?}, {:?} and {:?}",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    let (ql, kl, vl) = (as_4d(q.layout()), as_4d(k.layout()), as_4d(v.layout()));
    let [b, h, l, e] = [ql.shape[0], ql.shape[1], ql.shape[2], ql.shape[3]];
    let (s, ek, sv, ev) = (kl.shape[2], kl.shape[3], vl.shape[2], vl.shape[3]);
    if ek != e {
        return Err(Error::Msg(format!("{OP}: query {:?} and key {:?} must have the same last dim (embedding per head), got {e} and {ek}", q.shape(), k.shape())));
    }
    if sv != s {
        return Err(Error::Msg(format!("{OP}: key {:?} and value {:?} must have the same source length (dim -2), got {s} and {sv}", k.shape(), v.shape())));
    }
    for (name, t, lt) in [("key", k, &kl), ("value", v, &vl)] {
        for (d, what) in [(0, "batch"), (1, "head")] {
            if lt.shape[d] != ql.shape[d] && lt.shape[d] != 1 {
                return Err(Error::Msg(format!(
                    "{OP}: the {what} dim of {name} {:?} is {} but the query {:?} has {}; it must match or be 1",
                    t.shape(),
                    lt.shape[d],
                    q.shape(),
                    ql.shape[d]
                )));
            }
        }
    }
    let full = |l: &Layout, last: usize| l.broadcast_to(&[b, h, s, last]);
    let (kl, vl) = (full(&kl, e), full(&vl, ev));
    let out_shape = if rank == 4 { vec![b, h, l, ev] } else { vec![b, l, ev] };
    let mask = match &options.attn_mask {
        None => None,
        Some(m) => Some(additive_mask(m, q, &out_shape[..rank - 1], [b, h, l, s])?),
    };
    if options.dropout_p < 0.0 || options.dropout_p >= 1.0 {
        return Err(Error::Msg(format!("{OP}: dropout_p must be in [0, 1), got {}", options.dropout_p)));
    }
    let scale = options.scale.unwrap_or(1.0 / (e as f64).sqrt());
    let shape = AttentionShape { batch: b, heads: h, lq: l, lk: s, d: e, dv: ev };
    Ok(Plan { shape, q: ql, k: kl, v: vl, mask, scale, causal: options.causal.offset(l, s), out_shape })
}

/// The mask as an additive float tensor of `q`'s dtype with a layout broadcast to
/// `[B, H, L, S]` (`lead` is the output's leading dims, for messages and 3-D operands).
fn additive_mask(m: &Tensor, q: &Tensor, lead: &[usize], [b, h, l, s]: [usize; 4]) -> Result<(Tensor, Layout)> {
    let target: Vec<usize> = if q.rank() == 4 { vec![b, h, l, s] } else { vec![b, l, s] };
    let fits = m.rank() <= target.len() && m.shape().iter().rev().zip(target.iter().rev()).all(|(&d, &t)| d == t || d == 1);
    if !fits {
        return Err(Error::Msg(format!(
            "{OP}: attn_mask {:?} does not broadcast to the attention scores {target:?} (leading dims {lead:?}, {l} queries, {s} keys)",
            m.shape()
        )));
    }
    let additive = if matches!(m.dtype(), DType::Bool | DType::U8) {
        let hidden = m.try_eq(&Tensor::zeros(&[], m.dtype()).try_on(m.device())?)?;
        Tensor::try_zeros_on(m.shape(), q.dtype(), m.device())?.try_masked_fill(&hidden, f64::NEG_INFINITY)?
    } else if m.dtype().is_float() {
        m.detach().try_to_dtype(q.dtype())?.try_contiguous()?
    } else {
        return Err(Error::DType { op: OP, got: m.dtype(), expected: "bool or u8 (true = attend) or a float dtype (added to the scores) for attn_mask" });
    };
    let layout = as_4d(&additive.layout().broadcast_to(&target));
    Ok((additive, layout))
}

fn view4(l: &Layout) -> View4 {
    View4 { offset: l.offset, strides: [l.strides[0], l.strides[1], l.strides[2], l.strides[3]] }
}

/// Runs `f` with the kernel's view of the operands.
fn with_inputs<T: AttentionFloat + Element, R>(p: &Plan, q: &Tensor, k: &Tensor, v: &Tensor, f: impl FnOnce(&AttentionInputs<T>) -> R) -> Result<R> {
    let (sq, sk, sv) = (q.storage(), k.storage(), v.storage());
    let mask_storage = p.mask.as_ref().map(|(m, _)| m.storage());
    let mask = match (&p.mask, &mask_storage) {
        (Some((_, l)), Some(s)) => Some((s.cpu()?.as_slice::<T>(), view4(l))),
        _ => None,
    };
    let inputs = AttentionInputs {
        shape: p.shape,
        q: sq.cpu()?.as_slice::<T>(),
        q_view: view4(&p.q),
        k: sk.cpu()?.as_slice::<T>(),
        k_view: view4(&p.k),
        v: sv.cpu()?.as_slice::<T>(),
        v_view: view4(&p.v),
        mask,
        scale: <T as Element>::from_f64(p.scale),
        causal: p.causal,
    };
    Ok(f(&inputs))
}

/// The fallible form of [`scaled_dot_product_attention`].
pub fn try_scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, options: &AttentionOptions) -> Result<Tensor> {
    if matches!(q.dtype(), DType::F16 | DType::BF16) {
        // Computed in f32, as PyTorch's CPU kernels do for half types.
        check_same(OP, q, k)?;
        check_same(OP, q, v)?;
        let up = |t: &Tensor| t.try_to_dtype(DType::F32);
        return try_scaled_dot_product_attention(&up(q)?, &up(k)?, &up(v)?, options)?.try_to_dtype(q.dtype());
    }
    let p = plan(q, k, v, options)?;
    // The tiled kernel reads host memory; on a GPU the materialised form runs, with tensor ops
    // (matmul, softmax) that have device kernels.
    if options.dropout_p > 0.0 || super::on_device(q) {
        return reference(q, k, v, &p, options.dropout_p);
    }
    let grad = crate::autograd::needs_grad(&[q, k, v]);
    let (out, lse) = match q.dtype() {
        DType::F32 => forward::<f32>(&p, q, k, v, grad)?,
        DType::F64 => forward::<f64>(&p, q, k, v, grad)?,
        other => return Err(Error::DType { op: OP, got: other, expected: "a floating-point dtype (f32, f64, f16, bf16)" }),
    };
    let (qc, kc, vc, saved_out) = (q.clone(), k.clone(), v.clone(), out.detach());
    let shapes = (q.shape().to_vec(), k.shape().to_vec(), v.shape().to_vec());
    Ok(record(OP, out, &[q, k, v], move |g, _| {
        if is_grad_enabled() {
            // Double backward: the same gradient written with recorded ops.
            return reference_backward(&qc, &kc, &vc, &p, g, &shapes);
        }
        let lse = lse.as_ref().expect("saved when a gradient was needed");
        let g = g.try_contiguous()?;
        let (dq, dk, dv) = match qc.dtype() {
            DType::F32 => backward::<f32>(&p, &qc, &kc, &vc, &saved_out, &g, lse)?,
            _ => backward::<f64>(&p, &qc, &kc, &vc, &saved_out, &g, lse)?,
        };
        Ok(vec![Some(dq.sum_to_shape(&shapes.0)?), Some(dk.sum_to_shape(&shapes.1)?), Some(dv.sum_to_shape(&shapes.2)?)])
    }))
}

fn forward<T: AttentionFloat + Element>(p: &Plan, q: &Tensor, k: &Tensor, v: &Tensor, keep_lse: bool) -> Result<(Tensor, Option<Tensor>)> {
    let AttentionShape { batch, heads, lq, dv, .. } = p.shape;
    let mut out = vec![T::zero(); batch * heads * lq * dv];
    let mut lse = keep_lse.then(|| vec![T::zero(); batch * heads * lq]);
    with_inputs::<T, _>(p, q, k, v, |x| attention_forward(x, &mut out, lse.as_deref_mut()))?;
    let out = Tensor::from_storage(T::wrap(out), &p.out_shape);
    Ok((out, lse.map(|l| Tensor::from_storage(T::wrap(l), &[batch, heads, lq]))))
}

/// The kernel's gradients, each `[B, H, len, dim]` over the broadcast operands (3-D operands
/// get theirs back as 3-D; broadcast dims are summed by the caller).
fn backward<T: AttentionFloat + Element>(p: &Plan, q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor, g: &Tensor, lse: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let AttentionShape { batch, heads, lq, lk, d, dv: e } = p.shape;
    let mut dq = vec![T::zero(); batch * heads * lq * d];
    let mut dk = vec![T::zero(); batch * heads * lk * d];
    let mut dv = vec![T::zero(); batch * heads * lk * e];
    out.with_contiguous::<T, _>(|o| {
        g.with_contiguous::<T, _>(|go| {
            lse.with_contiguous::<T, _>(|l| with_inputs::<T, _>(p, q, k, v, |x| attention_backward(x, o, go, l, &mut dq, &mut dk, &mut dv)))
        })
    })????;
    let shape = |len: usize, dim: usize| if q.rank() == 4 { vec![batch, heads, len, dim] } else { vec![batch, len, dim] };
    Ok((
        Tensor::from_storage(T::wrap(dq), &shape(lq, d)),
        Tensor::from_storage(T::wrap(dk), &shape(lk, d)),
        Tensor::from_storage(T::wrap(dv), &shape(lk, e)),
    ))
}

/// The fallible form of [`scaled_dot_product_attention_reference`].
pub fn try_scaled_dot_product_attention_reference(q: &Tensor, k: &Tensor, v: &Tensor, options: &AttentionOptions) -> Result<Tensor> {
    let p = plan(q, k, v, options)?;
    reference(q, k, v, &p, options.dropout_p)
}

/// The scores `q kᵀ · scale + mask` with causally hidden keys at −∞, `[B, H, L, S]` (or 3-D),
/// and a mask of the rows that see no key at all (`None` when every row sees one).
fn masked_scores(q: &Tensor, k: &Tensor, p: &Plan) -> Result<(Tensor, Option<Tensor>)> {
    let AttentionShape { lq, lk, .. } = p.shape;
    let mut s = q.try_matmul(&k.try_transpose(-1, -2)?)?.try_mul_scalar(p.scale)?;
    if let Some((m, _)) = &p.mask {
        s = s.try_add(m)?;
    }
    if let Some(off) = p.causal {
        let i = Tensor::arange(0.0, lq as f64, 1.0, DType::F64).try_reshape(&[lq as isize, 1])?;
        let j = Tensor::arange(0.0, lk as f64, 1.0, DType::F64).try_reshape(&[1, lk as isize])?;
        let hidden = j.try_gt(&i.try_add_scalar(off as f64)?)?.try_on(s.device())?;
        s = s.try_masked_fill(&hidden, f64::NEG_INFINITY)?;
    }
    let none_visible = crate::autograd::no_grad(|| -> Result<Tensor> {
        let visible = s.try_gt(&Tensor::full(&[], f64::NEG_INFINITY, s.dtype()).try_on(s.device())?)?.try_to_dtype(DType::F64)?;
        visible.try_sum(&[-1], true)?.try_eq(&Tensor::zeros(&[], DType::F64).try_on(s.device())?)
    })?;
    let any_empty = none_visible.to_vec::<bool>().iter().any(|&x| x);
    if any_empty {
        // Rows with no visible key: scores 0 (not −∞, so softmax stays finite), output 0.
        s = s.try_masked_fill(&none_visible, 0.0)?;
        Ok((s, Some(none_visible)))
    } else {
        Ok((s, None))
    }
}

/// Attention probabilities `softmax(scores)`, zero on rows with no visible key.
fn probabilities(q: &Tensor, k: &Tensor, p: &Plan) -> Result<Tensor> {
    let (s, empty) = masked_scores(q, k, p)?;
    let probs = s.try_softmax(-1)?;
    match empty {
        Some(e) => probs.try_masked_fill(&e, 0.0),
        None => Ok(probs),
    }
}

fn reference(q: &Tensor, k: &Tensor, v: &Tensor, p: &Plan, dropout_p: f64) -> Result<Tensor> {
    let mut probs = probabilities(q, k, p)?;
    if dropout_p > 0.0 {
        let keep = Tensor::rand(probs.shape(), probs.dtype()).try_ge(&Tensor::full(&[], dropout_p, probs.dtype()))?.try_to_dtype(probs.dtype())?;
        let keep = keep.try_on(probs.device())?;
        probs = probs.try_mul(&keep)?.try_mul_scalar(1.0 / (1.0 - dropout_p))?;
    }
    probs.try_matmul(v)
}

/// The gradients of attention written with recorded ops (for double backward):
/// `dV = Pᵀ g`, `dS = P ∘ (g Vᵀ - rowsum(P ∘ g Vᵀ))`, `dQ = scale dS K`, `dK = scale dSᵀ Q`.
fn reference_backward(q: &Tensor, k: &Tensor, v: &Tensor, p: &Plan, g: &Tensor, shapes: &(Vec<usize>, Vec<usize>, Vec<usize>)) -> Result<Vec<Option<Tensor>>> {
    let probs = probabilities(q, k, p)?;
    let dv = probs.try_transpose(-1, -2)?.try_matmul(g)?;
    let dp = g.try_matmul(&v.try_transpose(-1, -2)?)?;
    let delta = dp.try_mul(&probs)?.try_sum(&[-1], true)?;
    let ds = probs.try_mul(&dp.try_sub(&delta)?)?.try_mul_scalar(p.scale)?;
    let dq = ds.try_matmul(k)?;
    let dk = ds.try_transpose(-1, -2)?.try_matmul(q)?;
    Ok(vec![Some(dq.sum_to_shape(&shapes.0)?), Some(dk.sum_to_shape(&shapes.1)?), Some(dv.sum_to_shape(&shapes.2)?)])
}
