//! The dispatcher for the fixtures of `generate_ops.py` (issue 11: dtypes and promotion, the
//! edge cases, and the ops added with them), kept apart from `parity.rs`'s own table. Each arm
//! maps a fixture's `op` and `args` onto the public API, so it doubles as a table of PyTorch
//! equivalents.

use tensorbrain::nn::functional as nf;
use tensorbrain::nn::loss::{CosineEmbeddingLoss, HuberLoss, KlDivLoss, KlReduction, MarginRankingLoss, PoissonNllLoss, SmoothL1Loss, SoftMarginLoss, TripletMarginLoss};
use tensorbrain::nn::Reduction;
use tensorbrain::ops::{AvgPoolOptions, ConvOptions, Interpolation, MaxPoolOptions, PadMode, Padding, ScatterReduce};
use tensorbrain::{Error, Result, Scalar, Tensor};

use super::Args;

impl Args<'_> {
    /// A number argument typed as PyTorch saw it: JSON `2` is an integer, `2.0` a float.
    fn scalar(&self, k: &str) -> Scalar {
        let v = self.get(k);
        if let Some(b) = v.as_bool() {
            Scalar::Bool(b)
        } else if let Some(i) = v.as_i64() {
            Scalar::Int(i)
        } else {
            Scalar::Float(v.as_f64().unwrap_or_else(|| panic!("fixture: arg {k:?} is not a number")))
        }
    }

    fn has(&self, k: &str) -> bool {
        self.0.get(k).is_some_and(|v| !v.is_null())
    }

    fn str(&self, k: &str) -> &str {
        self.get(k).as_str().unwrap_or_else(|| panic!("fixture: arg {k:?} is not a string"))
    }

    /// A norm order: a number, or "inf" / "-inf".
    fn ord(&self, k: &str) -> f64 {
        match self.get(k).as_str() {
            Some("inf") => f64::INFINITY,
            Some("-inf") => f64::NEG_INFINITY,
            Some(other) => panic!("fixture: bad order {other:?}"),
            None => self.f64(k),
        }
    }
}

fn pad_mode(a: &Args) -> PadMode {
    match a.str("mode") {
        "reflect" => PadMode::Reflect,
        "replicate" => PadMode::Replicate,
        "circular" => PadMode::Circular,
        "constant" => PadMode::Constant(a.f64("value")),
        other => panic!("fixture: unknown pad mode {other:?}"),
    }
}

fn conv_padding<const N: usize>(a: &Args) -> Padding<N> {
    match a.get("padding").as_str() {
        Some("same") => Padding::Same,
        Some("valid") => Padding::Valid,
        Some(other) => panic!("fixture: unknown padding {other:?}"),
        None => Padding::Explicit(a.usizes("padding").try_into().expect("one padding per spatial dim")),
    }
}

fn conv_options<const N: usize>(a: &Args) -> ConvOptions<N> {
    let arr = |k: &str| -> [usize; N] { a.usizes(k).try_into().expect("one value per spatial dim") };
    let mode = match a.str("mode") {
        "zeros" => PadMode::Constant(0.0),
        "reflect" => PadMode::Reflect,
        "replicate" => PadMode::Replicate,
        "circular" => PadMode::Circular,
        other => panic!("fixture: unknown padding mode {other:?}"),
    };
    ConvOptions::new().stride(arr("stride")).dilation(arr("dilation")).groups(a.usize("groups")).padding(conv_padding(a)).padding_mode(mode)
}

fn max_pool<const N: usize>(a: &Args) -> MaxPoolOptions<N> {
    let arr = |k: &str| -> [usize; N] { a.usizes(k).try_into().expect("one value per spatial dim") };
    MaxPoolOptions::new(arr("kernel_size")).stride(arr("stride")).padding(arr("padding")).dilation(arr("dilation")).ceil_mode(a.bool("ceil_mode"))
}

fn avg_pool<const N: usize>(a: &Args) -> AvgPoolOptions<N> {
    let arr = |k: &str| -> [usize; N] { a.usizes(k).try_into().expect("one value per spatial dim") };
    let mut o = AvgPoolOptions::new(arr("kernel_size")).stride(arr("stride")).padding(arr("padding")).ceil_mode(a.bool("ceil_mode")).count_include_pad(a.bool("count_include_pad"));
    if a.has("divisor_override") {
        o = o.divisor_override(a.usize("divisor_override"));
    }
    o
}

fn interpolation(a: &Args) -> Interpolation {
    match a.str("mode") {
        "nearest" => Interpolation::Nearest,
        "nearest-exact" => Interpolation::NearestExact,
        "linear" | "bilinear" => Interpolation::Linear { align_corners: a.bool("align_corners") },
        other => panic!("fixture: unknown mode {other:?}"),
    }
}

fn reduction(a: &Args) -> Reduction {
    match a.str("reduction") {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "none" => Reduction::None,
        other => panic!("fixture: unknown reduction {other:?}"),
    }
}

fn scatter_reduce(a: &Args) -> ScatterReduce {
    match a.str("reduce") {
        "sum" => ScatterReduce::Sum,
        "prod" => ScatterReduce::Prod,
        "mean" => ScatterReduce::Mean,
        "amax" => ScatterReduce::Amax,
        "amin" => ScatterReduce::Amin,
        other => panic!("fixture: unknown reduce {other:?}"),
    }
}

/// Picks output `a.index` of a multi-output op (`"index"` defaults to 0).
fn pick(a: &Args, outs: (Tensor, Tensor)) -> Tensor {
    if a.has("index") && a.usize("index") == 1 {
        outs.1
    } else {
        outs.0
    }
}

pub(super) fn dispatch(op: &str, a: &Args, x: &[Tensor]) -> Result<Tensor> {
    match op {
        // dtypes and promotion
        "sub_scalar" => x[0].try_sub_scalar(a.scalar("value")),
        "rsub_scalar" => x[0].try_rsub_scalar(a.scalar("value")),
        "div_scalar" => x[0].try_div_scalar(a.scalar("value")),
        "add_scalar_typed" => x[0].try_add_scalar(a.scalar("value")),
        "mul_scalar_typed" => x[0].try_mul_scalar(a.scalar("value")),
        "pow_scalar_typed" => x[0].try_pow_scalar(a.scalar("value")),
        "where_scalar" => Tensor::try_where_scalar(&x[0], &x[1], a.scalar("value")),
        "logical_and" => x[0].try_logical_and(&x[1]),
        "logical_or" => x[0].try_logical_or(&x[1]),
        "logical_xor" => x[0].try_logical_xor(&x[1]),
        "logical_not" => x[0].try_logical_not(),
        "isnan" => x[0].try_isnan(),
        "isinf" => x[0].try_isinf(),
        "isfinite" => x[0].try_isfinite(),
        "to_dtype_any" => x[0].try_to_dtype(a.dtype("dtype")),

        // elementwise math
        "expm1" => x[0].try_expm1(),
        "exp2" => x[0].try_exp2(),
        "log2" => x[0].try_log2(),
        "log10" => x[0].try_log10(),
        "tan" => x[0].try_tan(),
        "atan" => x[0].try_atan(),
        "asin" => x[0].try_asin(),
        "acos" => x[0].try_acos(),
        "sinh" => x[0].try_sinh(),
        "cosh" => x[0].try_cosh(),
        "sign" => x[0].try_sign(),
        "floor" => x[0].try_floor(),
        "ceil" => x[0].try_ceil(),
        "round" => x[0].try_round(),
        "trunc" => x[0].try_trunc(),
        "atan2" => x[0].try_atan2(&x[1]),
        "remainder" => x[0].try_remainder(&x[1]),
        "fmod" => x[0].try_fmod(&x[1]),
        "floor_divide" => x[0].try_floor_divide(&x[1]),
        "div_trunc" => x[0].try_div_trunc(&x[1]),
        "hypot" => x[0].try_hypot(&x[1]),
        "copysign" => x[0].try_copysign(&x[1]),

        // activations
        "hardtanh" => x[0].try_hardtanh(a.f64("min_val"), a.f64("max_val")),
        "relu6" => x[0].try_relu6(),
        "selu" => x[0].try_selu(),
        "celu" => x[0].try_celu(a.f64("alpha")),
        "mish" => x[0].try_mish(),
        "hardswish" => x[0].try_hardswish(),
        "hardsigmoid" => x[0].try_hardsigmoid(),
        "logsigmoid" => x[0].try_logsigmoid(),
        "softsign" => x[0].try_softsign(),
        "softplus_with" => x[0].try_softplus_with(a.f64("beta"), a.f64("threshold")),

        // scans, order statistics, norms and the remaining reductions
        "cumsum" => x[0].try_cumsum(a.int("dim")),
        "cumprod" => x[0].try_cumprod(a.int("dim")),
        "logcumsumexp" => x[0].try_logcumsumexp(a.int("dim")),
        "sort" => Ok(pick(a, x[0].try_sort(a.int("dim"), a.bool("descending"))?)),
        "argsort" => x[0].try_argsort(a.int("dim"), a.bool("descending")),
        "topk" => Ok(pick(a, x[0].try_topk(a.usize("k"), a.int("dim"), a.bool("largest"))?)),
        "kthvalue" => Ok(pick(a, x[0].try_kthvalue(a.usize("k"), a.int("dim"), a.bool("keepdim"))?)),
        "median_dim" => Ok(pick(a, x[0].try_median_dim(a.int("dim"), a.bool("keepdim"))?)),
        "median" => x[0].try_median(),
        "vector_norm" => x[0].try_vector_norm(a.ord("ord"), &a.ints("dims"), a.bool("keepdim")),
        "aminmax" => Ok(pick(a, x[0].try_aminmax(a.opt_int("dim"), a.bool("keepdim"))?)),
        "nansum" => x[0].try_nansum(&a.ints("dims"), a.bool("keepdim")),
        "count_nonzero" => x[0].try_count_nonzero(&a.ints("dims")),
        "all" => x[0].try_all(&a.ints("dims"), a.bool("keepdim")),
        "any" => x[0].try_any(&a.ints("dims"), a.bool("keepdim")),

        // products
        "einsum" => Tensor::try_einsum(a.str("equation"), &x.iter().collect::<Vec<_>>()),
        "addmm" => x[0].try_addmm(&x[1], &x[2], a.f64("beta"), a.f64("alpha")),
        "baddbmm" => x[0].try_baddbmm(&x[1], &x[2], a.f64("beta"), a.f64("alpha")),
        "addmv" => x[0].try_addmv(&x[1], &x[2], a.f64("beta"), a.f64("alpha")),
        "outer" => x[0].try_outer(&x[1]),
        "dot" => x[0].try_dot(&x[1]),
        "mv" => x[0].try_mv(&x[1]),
        "tensordot" => x[0].try_tensordot(&x[1], &a.ints("dims_self"), &a.ints("dims_other")),
        "tensordot_n" => x[0].try_tensordot_n(&x[1], a.usize("n")),

        // shape ops
        "flip" => x[0].try_flip(&a.ints("dims")),
        "roll" => x[0].try_roll(&a.ints("shifts"), &a.ints("dims")),
        "repeat" => x[0].try_repeat(&a.usizes("repeats")),
        "tile" => x[0].try_tile(&a.usizes("reps")),
        "repeat_interleave" => x[0].try_repeat_interleave(a.usize("repeats"), a.opt_int("dim")),
        "repeat_interleave_counts" => x[0].try_repeat_interleave_counts(&x[1], a.int("dim")),
        "pad_mode" => x[0].try_pad_mode(&a.usizes("pad"), pad_mode(a)),
        "tril" => x[0].try_tril(a.int("diagonal")),
        "triu" => x[0].try_triu(a.int("diagonal")),
        "movedim" => x[0].try_movedim(&a.ints("source"), &a.ints("destination")),
        "diagonal" => x[0].try_diagonal(a.int("offset"), a.int("dim1"), a.int("dim2")),
        "diag_embed" => x[0].try_diag_embed(a.int("offset"), a.int("dim1"), a.int("dim2")),
        "select" => x[0].try_select(a.int("dim"), a.int("index")),
        "unbind" => Ok(x[0].try_unbind(a.int("dim"))?[a.usize("index")].clone()),

        // indexing
        "scatter" => x[0].try_scatter(a.int("dim"), &x[1], &x[2]),
        "scatter_value" => x[0].try_scatter_value(a.int("dim"), &x[1], a.f64("value")),
        "scatter_reduce" => x[0].try_scatter_reduce(a.int("dim"), &x[1], &x[2], scatter_reduce(a), a.bool("include_self")),
        "index" => x[0].try_index(&x[1..].iter().collect::<Vec<_>>()),
        "index_put" => x[0].try_index_put(&x[1..x.len() - 1].iter().collect::<Vec<_>>(), &x[x.len() - 1], a.bool("accumulate")),
        "index_copy" => x[0].try_index_copy(a.int("dim"), &x[1], &x[2]),
        "index_fill" => x[0].try_index_fill(a.int("dim"), &x[1], a.f64("value")),
        "index_add_scaled" => x[0].try_index_add_scaled(a.int("dim"), &x[1], &x[2], a.f64("alpha")),
        "masked_select" => x[0].try_masked_select(&x[1]),
        "take_along_dim" => x[0].try_take_along_dim(&x[1], a.opt_int("dim")),

        // convolution, pooling, interpolation
        "conv1d" => x[0].try_conv1d(&x[1], x.get(2), a.usize("stride"), a.usize("padding"), a.usize("dilation"), a.usize("groups")),
        "conv1d_with" => x[0].try_conv1d_with(&x[1], x.get(2), &conv_options(a)),
        "conv2d_with" => x[0].try_conv2d_with(&x[1], x.get(2), &conv_options(a)),
        "conv_transpose2d" => x[0].try_conv_transpose2d(&x[1], x.get(2), a.pair("stride"), a.pair("padding"), a.pair("output_padding"), a.usize("groups"), a.pair("dilation")),
        "conv_transpose1d" => x[0].try_conv_transpose1d(&x[1], x.get(2), a.usize("stride"), a.usize("padding"), a.usize("output_padding"), a.usize("groups"), a.usize("dilation")),
        "unfold" => x[0].try_unfold(a.pair("kernel_size"), a.pair("dilation"), a.pair("padding"), a.pair("stride")),
        "fold" => x[0].try_fold(a.pair("output_size"), a.pair("kernel_size"), a.pair("dilation"), a.pair("padding"), a.pair("stride")),
        "max_pool2d_with" => Ok(pick(a, x[0].try_max_pool2d_with(&max_pool(a))?)),
        "avg_pool2d_with" => x[0].try_avg_pool2d_with(&avg_pool(a)),
        "adaptive_max_pool2d" => Ok(pick(a, x[0].try_adaptive_max_pool2d(a.pair("output_size"))?)),
        "max_pool1d_with" => Ok(pick(a, x[0].try_max_pool1d_with(&max_pool(a))?)),
        "avg_pool1d_with" => x[0].try_avg_pool1d_with(&avg_pool(a)),
        "interpolate" => {
            let size = a.has("size").then(|| a.usizes("size"));
            let scale: Option<Vec<f64>> = a.has("scale_factor").then(|| a.get("scale_factor").as_array().expect("list").iter().map(|v| v.as_f64().expect("number")).collect());
            x[0].try_interpolate(size.as_deref(), scale.as_deref(), interpolation(a))
        }

        // nn.functional on runtime tensors
        "layer_norm" => {
            let (w, b) = if a.bool("affine") { (x.get(1), x.get(2)) } else { (None, None) };
            nf::try_layer_norm(&x[0], &a.usizes("normalized_shape"), w, b, a.f64("eps"))
        }
        "group_norm" => {
            let (w, b) = if a.bool("affine") { (x.get(1), x.get(2)) } else { (None, None) };
            nf::try_group_norm(&x[0], a.usize("num_groups"), w, b, a.f64("eps"))
        }
        "instance_norm" => {
            let (w, b) = if a.bool("affine") { (x.get(1), x.get(2)) } else { (None, None) };
            let running = a.bool("running").then(|| nf::RunningStats { mean: &x[1], var: &x[2] });
            nf::try_instance_norm(&x[0], running, w, b, !a.bool("running"), 0.1, a.f64("eps"))
        }
        "batch_norm" => {
            let (w, b) = if a.bool("affine") { (x.get(1), x.get(2)) } else { (None, None) };
            let running = a.bool("running").then(|| nf::RunningStats { mean: &x[3], var: &x[4] });
            nf::try_batch_norm(&x[0], running, w, b, a.bool("training"), a.f64("momentum"), a.f64("eps"))
        }
        "normalize" => nf::try_normalize(&x[0], a.f64("p"), a.int("dim"), a.f64("eps")),
        "embedding" => {
            let o = nf::EmbeddingOptions { padding_idx: a.has("padding_idx").then(|| a.int("padding_idx") as i64), max_norm: a.opt_f64("max_norm"), norm_type: None };
            nf::try_embedding(&x[0], &x[1], &o)
        }
        "one_hot" => nf::try_one_hot(&x[0], a.has("num_classes").then(|| a.usize("num_classes"))),
        "embedding_bag" => {
            let mode = match a.str("mode") {
                "sum" => nf::BagMode::Sum,
                "mean" => nf::BagMode::Mean,
                _ => nf::BagMode::Max,
            };
            let offsets = a.bool("offsets").then(|| &x[2]);
            let weights = a.bool("weights").then(|| &x[3]);
            nf::try_embedding_bag(&x[0], &x[1], offsets, mode, weights, a.has("padding_idx").then(|| a.int("padding_idx") as i64))
        }

        // losses
        "smooth_l1_loss" => SmoothL1Loss::new().beta(a.f64("beta")).reduction(reduction(a)).forward(&x[0], &x[1]),
        "huber_loss" => HuberLoss::new().delta(a.f64("delta")).reduction(reduction(a)).forward(&x[0], &x[1]),
        "kl_div" => {
            let r = match a.str("reduction") {
                "batchmean" => KlReduction::BatchMean,
                "mean" => KlReduction::Mean,
                "sum" => KlReduction::Sum,
                _ => KlReduction::None,
            };
            KlDivLoss::new().reduction(r).log_target(a.bool("log_target")).forward(&x[0], &x[1])
        }
        "cosine_embedding_loss" => CosineEmbeddingLoss::new().margin(a.f64("margin")).reduction(reduction(a)).forward(&x[0], &x[1], &x[2]),
        "margin_ranking_loss" => MarginRankingLoss::new().margin(a.f64("margin")).reduction(reduction(a)).forward(&x[0], &x[1], &x[2]),
        "poisson_nll_loss" => PoissonNllLoss::new().log_input(a.bool("log_input")).full(a.bool("full")).reduction(reduction(a)).forward(&x[0], &x[1]),
        "soft_margin_loss" => SoftMarginLoss::new().reduction(reduction(a)).forward(&x[0], &x[1]),
        "triplet_margin_loss" => TripletMarginLoss::new().margin(a.f64("margin")).p(a.f64("p")).swap(a.bool("swap")).reduction(reduction(a)).forward(&x[0], &x[1], &x[2]),
        "cosine_similarity" => nf::try_cosine_similarity(&x[0], &x[1], a.int("dim"), a.f64("eps")),
        "pairwise_distance" => nf::try_pairwise_distance(&x[0], &x[1], a.f64("p"), a.f64("eps"), a.bool("keepdim")),

        other => Err(Error::Msg(format!("parity harness: unknown op {other:?} (add it to dispatch)"))),
    }
}
