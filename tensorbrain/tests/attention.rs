//! `scaled_dot_product_attention`: the tiled kernel and the materialised reference against
//! PyTorch (`tests/parity/generate_attention.py`), against each other on sizes spanning many
//! tiles and on strided views, float64 gradchecks (first and second order) and the errors.
//!
//! Tolerances: f32 outputs and gradients within 2e-5 absolute + 1e-4 relative of PyTorch
//! (sums over up to 150 keys); f64 within 1e-10.

use std::collections::HashMap;

use tensorbrain::autograd::{gradcheck, gradgradcheck, GradcheckOptions};
use tensorbrain::ops::attention::{
    key_padding_to_attn_mask, scaled_dot_product_attention, scaled_dot_product_attention_reference, try_scaled_dot_product_attention,
    AttentionOptions, Causal,
};
use tensorbrain::{DType, Tensor};

fn fixture() -> (HashMap<String, Tensor>, Vec<serde_json::Value>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/parity/fixtures/attention.safetensors");
    let (tensors, meta) = tensorbrain::checkpoint::load_safetensors_with_metadata(std::path::Path::new(path)).expect("attention fixture");
    let cases = serde_json::from_str(&meta["cases"]).expect("cases metadata");
    (tensors, cases)
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f64>(), want.to_vec::<f64>());
    let mut worst = 0.0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs();
        assert!(err <= atol + rtol * b.abs(), "{what}[{i}]: {a} vs PyTorch {b}");
        worst = worst.max(err);
    }
    println!("{what}: max abs error {worst:.2e}");
}

fn options_for(case: &serde_json::Value, tensors: &HashMap<String, Tensor>) -> AttentionOptions {
    let name = case["name"].as_str().unwrap();
    let mut opts = AttentionOptions::new().causal(match case["causal"].as_str().unwrap() {
        "upper_left" => Causal::UpperLeft,
        "lower_right" => Causal::LowerRight,
        _ => Causal::None,
    });
    if let Some(s) = case["scale"].as_f64() {
        opts = opts.scale(s);
    }
    if case["mask"].as_str().unwrap() != "none" {
        opts = opts.mask(&tensors[&format!("{name}/mask")]);
    }
    opts
}

#[test]
fn tiled_and_reference_match_pytorch() {
    let (tensors, cases) = fixture();
    assert!(cases.len() >= 15);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let get = |k: &str| tensors[&format!("{name}/{k}")].clone();
        let opts = options_for(case, &tensors);
        let (atol, rtol) = if case["dtype"] == "f64" { (1e-10, 1e-10) } else { (2e-5, 1e-4) };
        for (path, f) in [
            ("tiled", scaled_dot_product_attention as fn(&Tensor, &Tensor, &Tensor, &AttentionOptions) -> Tensor),
            ("reference", scaled_dot_product_attention_reference),
        ] {
            let leaf = |k: &str| get(k).detach().set_requires_grad(true);
            let (q, k, v) = (leaf("q"), leaf("k"), leaf("v"));
            let out = f(&q, &k, &v, &opts);
            assert_close(&format!("{name} {path} out"), &out, &get("out"), atol, rtol);
            out.backward_with(&get("gout"));
            for (t, g) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
                assert_close(&format!("{name} {path} {g}"), &t.grad().expect("gradient"), &get(g), atol, rtol);
            }
        }
    }
}

/// Random f32 inputs spanning several 64-row tiles, with the query read through a transposed
/// `[B, T, H, D] -> [B, H, T, D]` view: the kernel against the reference, forward and backward.
#[test]
fn tiled_matches_reference_across_tiles_and_views() {
    tensorbrain::manual_seed(7);
    let (b, t, h, d) = (2, 200, 2, 16);
    let q = Tensor::randn(&[b, t, h, d], DType::F32).transpose(1, 2).set_requires_grad(true);
    let k = Tensor::randn(&[b, h, t + 9, d], DType::F32).set_requires_grad(true);
    let v = Tensor::randn(&[b, h, t + 9, 24], DType::F32).set_requires_grad(true);
    let pad = Tensor::from_vec((0..b * (t + 9)).map(|i| (i % (t + 9) >= t + 9 - 20 * (i / (t + 9))) as u8).collect::<Vec<u8>>(), &[b, t + 9]);
    let mask = key_padding_to_attn_mask(&pad).unwrap();
    for causal in [Causal::None, Causal::UpperLeft, Causal::LowerRight] {
        let opts = AttentionOptions::new().mask(&mask).causal(causal);
        let gout = Tensor::randn(&[b, h, t, 24], DType::F32);
        let mut results = Vec::new();
        for f in [scaled_dot_product_attention, scaled_dot_product_attention_reference] {
            let out = f(&q, &k, &v, &opts);
            out.backward_with(&gout);
            results.push([out, q.grad().unwrap(), k.grad().unwrap(), v.grad().unwrap()]);
            [&q, &k, &v].iter().for_each(|x| x.zero_grad());
        }
        for (i, what) in ["out", "dq", "dk", "dv"].iter().enumerate() {
            assert_close(&format!("{causal:?} {what}"), &results[0][i], &results[1][i], 1e-5, 1e-4);
        }
    }
}

#[test]
fn gradcheck_tiled_attention_in_f64() {
    tensorbrain::manual_seed(3);
    let q = Tensor::randn(&[1, 2, 4, 3], DType::F64);
    let k = Tensor::randn(&[1, 2, 5, 3], DType::F64);
    let v = Tensor::randn(&[1, 2, 5, 2], DType::F64);
    let mask = Tensor::from_vec(vec![1u8, 1, 1, 1, 0], &[1, 1, 1, 5]);
    for opts in [AttentionOptions::new(), AttentionOptions::new().is_causal(true).mask(&mask), AttentionOptions::new().causal(Causal::LowerRight).scale(0.7)] {
        let err = gradcheck(|x| try_scaled_dot_product_attention(&x[0], &x[1], &x[2], &opts), &[q.clone(), k.clone(), v.clone()], GradcheckOptions::default())
            .unwrap();
        assert!(err < 1e-6, "{err}");
        // Second order: the backward is itself differentiable.
        let opts2 = GradcheckOptions { atol: 1e-4, rtol: 1e-3, ..Default::default() };
        gradgradcheck(|x| try_scaled_dot_product_attention(&x[0], &x[1], &x[2], &opts), &[q.clone(), k.clone(), v.clone()], opts2).unwrap();
    }
}

#[test]
fn half_precision_computes_in_f32() {
    tensorbrain::manual_seed(1);
    let q = Tensor::randn(&[1, 2, 9, 8], DType::F32);
    let k = Tensor::randn(&[1, 2, 9, 8], DType::F32);
    let v = Tensor::randn(&[1, 2, 9, 8], DType::F32);
    let opts = AttentionOptions::new().is_causal(true);
    let want = scaled_dot_product_attention(&q, &k, &v, &opts);
    let h = |t: &Tensor| t.to_dtype(DType::BF16);
    let got = scaled_dot_product_attention(&h(&q), &h(&k), &h(&v), &opts);
    assert_eq!(got.dtype(), DType::BF16);
    assert_close("bf16", &got, &want, 3e-2, 3e-2);
}

#[test]
fn bad_shapes_are_named() {
    let t = |s: &[usize]| Tensor::zeros(s, DType::F32);
    let opts = AttentionOptions::new();
    let err = |q: &[usize], k: &[usize], v: &[usize], o: &AttentionOptions| try_scaled_dot_product_attention(&t(q), &t(k), &t(v), o).unwrap_err().to_string();
    assert!(err(&[2, 3, 4, 8], &[2, 3, 5, 7], &[2, 3, 5, 8], &opts).contains("same last dim"));
    assert!(err(&[2, 3, 4, 8], &[2, 3, 5, 8], &[2, 3, 6, 8], &opts).contains("same source length"));
    assert!(err(&[2, 3, 4, 8], &[2, 2, 5, 8], &[2, 2, 5, 8], &opts).contains("head dim of key"));
    assert!(err(&[4, 8], &[5, 8], &[5, 8], &opts).contains("rank 4"));
    let m = AttentionOptions::new().mask(&Tensor::zeros(&[3, 5], DType::U8));
    let e = err(&[2, 3, 4, 8], &[2, 3, 5, 8], &[2, 3, 5, 8], &m);
    assert!(e.contains("attn_mask [3, 5] does not broadcast to the attention scores [2, 3, 4, 5]"), "{e}");
}
