//! Float64 finite-difference checks of the gradients of issue 11's ops (their values and
//! gradients are also checked against PyTorch by tests/parity.rs). Inputs avoid kinks, ties
//! and zeros where the derivative jumps.

use tensorbrain::autograd::{gradcheck, gradgradcheck, GradcheckOptions};
use tensorbrain::nn::functional as nf;
use tensorbrain::nn::loss::{HuberLoss, KlDivLoss, KlReduction, PoissonNllLoss, TripletMarginLoss};
use tensorbrain::ops::{AvgPoolOptions, Conv2dOptions, Interpolation, MaxPoolOptions, PadMode, Padding, ScatterReduce};
use tensorbrain::{Result, Tensor};

/// Deterministic values in roughly [-2, 2], distinct, away from 0.
fn data(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|k| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            let v = -2.0 + 4.0 * u + 1e-3 * k as f64;
            if v.abs() < 0.1 {
                v + 0.3
            } else {
                v
            }
        })
        .collect()
}

fn t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(data(shape.iter().product(), seed), shape)
}

fn positive(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(data(shape.iter().product(), seed).into_iter().map(|v| 0.2 + v.abs()).collect(), shape)
}

fn check(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let opts = GradcheckOptions { eps: 1e-6, atol: 1e-5, rtol: 1e-4 };
    gradcheck(&f, inputs, opts).unwrap_or_else(|e| panic!("{name}: {e}"));
}

#[test]
fn elementwise_math_and_activations() {
    let x = t(&[2, 3], 1);
    let unit = Tensor::from_vec(vec![-0.7, -0.2, 0.1, 0.45, 0.8, 0.3], &[2, 3]);
    check("expm1", |v| v[0].try_expm1(), &[x.clone()]);
    check("exp2", |v| v[0].try_exp2(), &[x.clone()]);
    check("log2", |v| v[0].try_log2(), &[positive(&[2, 3], 2)]);
    check("log10", |v| v[0].try_log10(), &[positive(&[2, 3], 3)]);
    check("tan", |v| v[0].try_tan(), &[unit.clone()]);
    check("atan", |v| v[0].try_atan(), &[x.clone()]);
    check("asin", |v| v[0].try_asin(), &[unit.clone()]);
    check("acos", |v| v[0].try_acos(), &[unit.clone()]);
    check("sinh", |v| v[0].try_sinh(), &[x.clone()]);
    check("atan2", |v| v[0].try_atan2(&v[1]), &[t(&[2, 3], 4), t(&[3], 5)]);
    check("hypot", |v| v[0].try_hypot(&v[1]), &[t(&[2, 3], 6), t(&[2, 3], 7)]);
    check("copysign", |v| v[0].try_copysign(&v[1]), &[t(&[2, 3], 8), t(&[2, 3], 9)]);
    check("remainder", |v| v[0].try_remainder(&v[1]), &[Tensor::from_vec(vec![2.3, -1.7, 0.4], &[3]), Tensor::from_vec(vec![0.9, 0.8, -1.1], &[3])]);
    check("fmod", |v| v[0].try_fmod(&v[1]), &[Tensor::from_vec(vec![2.3, -1.7, 0.4], &[3]), Tensor::from_vec(vec![0.9, 0.8, -1.1], &[3])]);
    for (name, f) in [
        ("selu", Tensor::try_selu as fn(&Tensor) -> Result<Tensor>),
        ("mish", Tensor::try_mish),
        ("hardswish", Tensor::try_hardswish),
        ("hardsigmoid", Tensor::try_hardsigmoid),
        ("logsigmoid", Tensor::try_logsigmoid),
        ("softsign", Tensor::try_softsign),
        ("relu6", Tensor::try_relu6),
    ] {
        check(name, |v| f(&v[0]), &[x.clone()]);
    }
    check("celu", |v| v[0].try_celu(0.7), &[x.clone()]);
    check("hardtanh", |v| v[0].try_hardtanh(-1.0, 1.5), &[x.clone()]);
    check("softplus_with", |v| v[0].try_softplus_with(2.0, 3.0), &[x.clone()]);
    gradgradcheck(|v| v[0].try_mish(), &[x.clone()], GradcheckOptions::default()).expect("mish second derivative");
    gradgradcheck(|v| v[0].try_atan2(&v[1]), &[t(&[3], 10), t(&[3], 11)], GradcheckOptions::default()).expect("atan2 second derivative");
}

#[test]
fn scans_sorts_and_norms() {
    let x = t(&[3, 4], 20);
    check("cumsum", |v| v[0].try_cumsum(1), &[x.clone()]);
    check("cumprod", |v| v[0].try_cumprod(0), &[x.clone()]);
    check("cumprod with a zero", |v| v[0].try_cumprod(0), &[Tensor::from_vec(vec![1.5, 0.0, -2.0, 0.7], &[4])]);
    check("logcumsumexp", |v| v[0].try_logcumsumexp(-1), &[x.clone()]);
    check("sort", |v| Ok(v[0].try_sort(1, true)?.0), &[x.clone()]);
    check("topk", |v| Ok(v[0].try_topk(2, 0, false)?.0), &[x.clone()]);
    check("median_dim", |v| Ok(v[0].try_median_dim(1, false)?.0), &[x.clone()]);
    check("median", |v| v[0].try_median(), &[x.clone()]);
    for ord in [2.0, 1.0, 3.0, 0.5, f64::INFINITY] {
        check(&format!("vector_norm {ord}"), |v| v[0].try_vector_norm(ord, &[1], false), &[x.clone()]);
    }
    check("nansum", |v| v[0].try_nansum(&[0], true), &[x.clone()]);
    gradgradcheck(|v| v[0].try_logcumsumexp(1), &[t(&[2, 3], 21)], GradcheckOptions::default()).expect("logcumsumexp second derivative");
    gradgradcheck(|v| v[0].try_cumprod(1), &[t(&[2, 3], 22)], GradcheckOptions::default()).expect("cumprod second derivative");
}

#[test]
fn products_shapes_and_indexing() {
    check("einsum bmm", |v| Tensor::try_einsum("bij,bjk->bik", &[&v[0], &v[1]]), &[t(&[2, 3, 4], 30), t(&[2, 4, 2], 31)]);
    check("einsum diag+chain", |v| Tensor::try_einsum("ii,ij,j->", &[&v[0], &v[1], &v[2]]), &[t(&[3, 3], 32), t(&[3, 2], 33), t(&[2], 34)]);
    check("addmm", |v| v[0].try_addmm(&v[1], &v[2], 0.5, 2.0), &[t(&[3], 35), t(&[2, 4], 36), t(&[4, 3], 37)]);
    check("tensordot", |v| v[0].try_tensordot(&v[1], &[0, 2], &[1, 0]), &[t(&[2, 3, 4], 38), t(&[4, 2, 5], 39)]);
    let x = t(&[2, 3, 4], 40);
    check("flip", |v| v[0].try_flip(&[0, 2]), &[x.clone()]);
    check("roll", |v| v[0].try_roll(&[2, -1], &[2, 1]), &[x.clone()]);
    check("repeat", |v| v[0].try_repeat(&[2, 1, 1, 2]), &[x.clone()]);
    check("repeat_interleave", |v| v[0].try_repeat_interleave(2, Some(1)), &[x.clone()]);
    check("diagonal", |v| v[0].try_diagonal(1, 1, 2), &[x.clone()]);
    check("diag_embed", |v| v[0].try_diag_embed(-1, 0, 2), &[t(&[2, 3], 41)]);
    check("tril", |v| v[0].try_tril(0), &[x.clone()]);
    for mode in [PadMode::Reflect, PadMode::Replicate, PadMode::Circular] {
        check(&format!("pad {mode:?}"), |v| v[0].try_pad_mode(&[2, 1, 1, 2], mode), &[t(&[1, 2, 3, 3], 42)]);
    }
    let idx = Tensor::from_vec(vec![0i64, 2, 0, 1, 1, 1], &[2, 3]);
    // Distinct indices per row: with duplicates PyTorch leaves which write wins (and so the
    // derivative) unspecified.
    check("scatter", |v| v[0].try_scatter(1, &Tensor::from_vec(vec![2i64, 0, 1, 2], &[2, 2]), &v[1]), &[t(&[2, 3], 43), t(&[2, 2], 44)]);
    for reduce in [ScatterReduce::Sum, ScatterReduce::Mean, ScatterReduce::Amax, ScatterReduce::Prod] {
        for include_self in [true, false] {
            check(&format!("scatter_reduce {reduce:?} {include_self}"), |v| v[0].try_scatter_reduce(1, &idx, &v[1], reduce, include_self), &[t(&[2, 3], 45), t(&[2, 3], 46)]);
        }
    }
    let rows = Tensor::from_vec(vec![2i64, 0, -1], &[3]);
    check("index", |v| v[0].try_index(&[&rows]), &[t(&[4, 2], 47)]);
    check("index_put accumulate", |v| v[0].try_index_put(&[&rows], &v[1], true), &[t(&[4, 2], 48), t(&[3, 2], 49)]);
    check("index_put", |v| v[0].try_index_put(&[&rows], &v[1], false), &[t(&[4, 2], 50), t(&[3, 2], 51)]);
    let mask = Tensor::from_vec(vec![true, false, true], &[3]);
    check("masked_select", |v| v[0].try_masked_select(&mask), &[t(&[2, 3], 52)]);
    check("take_along_dim", |v| v[0].try_take_along_dim(&Tensor::from_vec(vec![1i64, 0], &[1, 2]), Some(0)), &[t(&[2, 2], 53)]);
}

#[test]
fn convolution_pooling_and_interpolation() {
    let x = t(&[1, 2, 5, 6], 60);
    check("conv1d", |v| v[0].try_conv1d(&v[1], Some(&v[2]), 2, 1, 2, 2), &[t(&[1, 4, 9], 61), t(&[2, 2, 3], 62), t(&[2], 63)]);
    check("conv2d same reflect", |v| v[0].try_conv2d_with(&v[1], None, &Conv2dOptions::new().padding(Padding::Same).padding_mode(PadMode::Reflect)), &[x.clone(), t(&[3, 2, 2, 3], 64)]);
    check("conv_transpose2d", |v| v[0].try_conv_transpose2d(&v[1], Some(&v[2]), [2, 1], [1, 0], [1, 0], 2, [1, 2]), &[t(&[1, 4, 3, 3], 65), t(&[4, 1, 3, 2], 66), t(&[2], 67)]);
    check("unfold", |v| v[0].try_unfold([2, 3], [1, 1], [1, 0], [2, 1]), &[x.clone()]);
    check("fold", |v| v[0].try_fold([4, 5], [2, 2], [1, 1], [0, 0], [1, 1]), &[t(&[1, 8, 12], 68)]);
    check("max_pool2d ceil dilation", |v| Ok(v[0].try_max_pool2d_with(&MaxPoolOptions::new([2, 2]).stride([2, 2]).dilation([2, 1]).ceil_mode(true))?.0), &[x.clone()]);
    check("avg_pool2d ceil divisor", |v| v[0].try_avg_pool2d_with(&AvgPoolOptions::new([3, 2]).stride([2, 2]).padding([1, 1]).ceil_mode(true).divisor_override(5)), &[x.clone()]);
    check("adaptive_max_pool2d", |v| Ok(v[0].try_adaptive_max_pool2d([3, 4])?.0), &[x.clone()]);
    check("interpolate nearest", |v| v[0].try_interpolate(Some(&[7, 4]), None, Interpolation::Nearest), &[x.clone()]);
    check("interpolate bilinear", |v| v[0].try_interpolate(Some(&[7, 4]), None, Interpolation::Linear { align_corners: false }), &[x.clone()]);
    gradgradcheck(|v| v[0].try_conv_transpose2d(&v[1], None, [2, 2], [0, 0], [0, 0], 1, [1, 1]), &[t(&[1, 1, 2, 2], 69), t(&[1, 1, 2, 2], 70)], GradcheckOptions::default())
        .expect("conv_transpose2d second derivative");
}

#[test]
fn functional_norms_embeddings_and_losses() {
    let x = t(&[2, 4, 3], 80);
    check("layer_norm", |v| nf::try_layer_norm(&v[0], &[4, 3], Some(&v[1]), Some(&v[2]), 1e-5), &[x.clone(), t(&[4, 3], 81), t(&[4, 3], 82)]);
    check("group_norm", |v| nf::try_group_norm(&v[0], 2, Some(&v[1]), Some(&v[2]), 1e-5), &[x.clone(), t(&[4], 83), t(&[4], 84)]);
    check("instance_norm", |v| nf::try_instance_norm(&v[0], None, None, None, true, 0.1, 1e-5), &[x.clone()]);
    check("batch_norm", |v| nf::try_batch_norm(&v[0], None, Some(&v[1]), None, true, 0.1, 1e-5), &[x.clone(), t(&[4], 85)]);
    check("normalize", |v| nf::try_normalize(&v[0], 2.0, 1, 1e-12), &[x.clone()]);
    check("cosine_similarity", |v| nf::try_cosine_similarity(&v[0], &v[1], 1, 1e-8), &[t(&[3, 4], 86), t(&[3, 4], 87)]);
    let ids = Tensor::from_vec(vec![0i64, 2, 2, 3], &[2, 2]);
    // The padding row's gradient is 0 by definition (not its derivative: the row is looked
    // up), so finite differences check the other rows, with the padding row held fixed...
    let padding_row = t(&[1, 3], 94);
    let table = |others: &Tensor| -> Result<Tensor> { Tensor::try_cat(&[&others.try_narrow(0, 0, 2)?, &padding_row, &others.try_narrow(0, 2, 1)?], 0) };
    let padded = nf::EmbeddingOptions { padding_idx: Some(2), ..Default::default() };
    check("embedding padding", |v| nf::try_embedding(&ids, &table(&v[0])?, &padded), &[t(&[3, 3], 88)]);
    // ...and the padding row gets exactly 0.
    let w = t(&[4, 3], 95).set_requires_grad(true);
    let g = tensorbrain::autograd::grad(&nf::try_embedding(&ids, &w, &padded).unwrap().sum_all(), &[w.clone()], None, false).unwrap()[0].clone().unwrap();
    assert_eq!(g.narrow(0, 2, 1).to_vec::<f64>(), [0.0; 3], "no gradient for the padding row");
    assert_eq!(g.narrow(0, 3, 1).to_vec::<f64>(), [1.0; 3], "row 3 is looked up once");
    for mode in [nf::BagMode::Sum, nf::BagMode::Mean, nf::BagMode::Max] {
        check(&format!("embedding_bag {mode:?}"), |v| nf::try_embedding_bag(&ids, &v[0], None, mode, None, None), &[t(&[4, 3], 89)]);
    }
    let (a, b) = (t(&[3, 4], 90), t(&[3, 4], 91));
    check("huber", |v| HuberLoss::new().delta(0.8).forward(&v[0], &v[1]), &[a.clone(), b.clone()]);
    check("kl_div", |v| KlDivLoss::new().reduction(KlReduction::BatchMean).forward(&v[0].try_log_softmax(1)?, &v[1].try_softmax(1)?), &[a.clone(), b.clone()]);
    check("poisson_nll full", |v| PoissonNllLoss::new().full(true).forward(&v[0], &positive(&[3, 4], 92).try_mul_scalar(2.0)?), &[a.clone()]);
    check("triplet swap", |v| TripletMarginLoss::new().margin(3.0).swap(true).forward(&v[0], &v[1], &v[2]), &[a, b, t(&[3, 4], 93)]);
}
