//! Runtime transformer layers against PyTorch (`tests/parity/generate_transformer.py`): each
//! layer loads PyTorch's state dict by PyTorch's names (which checks the names both ways:
//! nothing missing, nothing unexpected), then its output and the gradients of its inputs and
//! every parameter are compared. Plus: incremental decoding over KV caches equals the full
//! causal forward (multi-head and latent attention, the decoder stack), RoPE gradchecks and
//! its relative-position property, and the KV cache sizes.
//!
//! Tolerances: 2e-5 absolute + 1e-4 relative (f32; layer norms and softmax sums).

use std::collections::HashMap;

use tensorbrain::autograd::{gradcheck, GradcheckOptions};
use tensorbrain::nn::attention::{
    AttentionMasks, Causal, LayerCache, MlaConfig, MultiHeadLatentAttention, MultiheadAttention, MultiheadAttentionOptions, RopeStyle,
    RotaryEmbedding,
};
use tensorbrain::nn::transformer::{Activation, TransformerConfig, TransformerDecoder, TransformerDecoderLayer, TransformerEncoderLayer};
use tensorbrain::nn::{Module, ModuleExt};
use tensorbrain::{DType, Generator, Tensor};

struct Fixture {
    tensors: HashMap<String, Tensor>,
    cases: Vec<serde_json::Value>,
}

impl Fixture {
    fn load() -> Fixture {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/parity/fixtures/transformer.safetensors");
        let (tensors, meta) = tensorbrain::checkpoint::load_safetensors_with_metadata(std::path::Path::new(path)).expect("transformer fixture");
        Fixture { tensors, cases: serde_json::from_str(&meta["cases"]).unwrap() }
    }

    fn case(&self, name: &str) -> &serde_json::Value {
        self.cases.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no case {name}"))
    }

    fn get(&self, key: &str) -> Option<Tensor> {
        self.tensors.get(key).map(|t| t.detach())
    }

    /// The case's PyTorch state dict, names without the case prefix.
    fn params(&self, case: &str) -> HashMap<String, Tensor> {
        let prefix = format!("{case}/param/");
        self.tensors.iter().filter_map(|(k, v)| k.strip_prefix(&prefix).map(|n| (n.to_string(), v.detach()))).collect()
    }

    fn input(&self, case: &str, name: &str) -> Tensor {
        self.get(&format!("{case}/in/{name}")).unwrap().set_requires_grad(true)
    }

    fn mask(&self, case: &str, name: &str) -> Option<Tensor> {
        self.get(&format!("{case}/mask/{name}"))
    }

    /// Loads the state dict, runs `forward`, and compares the output and all gradients.
    fn check<M: Module>(&self, case: &str, layer: &mut M, inputs: &[(&str, &Tensor)], out: impl Fn(&M) -> Tensor) {
        layer.load_state_dict(self.params(case), case).unwrap_or_else(|e| panic!("{e}"));
        let y = out(layer);
        assert_close(&format!("{case} out"), &y, &self.get(&format!("{case}/out")).unwrap());
        y.backward_with(&self.get(&format!("{case}/gout")).unwrap());
        for (name, t) in inputs {
            assert_close(&format!("{case} grad {name}"), &t.grad().expect("input gradient"), &self.get(&format!("{case}/grad/in/{name}")).unwrap());
        }
        for (name, p) in layer.named_parameters() {
            let want = self.get(&format!("{case}/grad/param/{name}")).unwrap_or_else(|| panic!("{case}: PyTorch has no gradient for {name}"));
            assert_close(&format!("{case} grad {name}"), &p.grad().expect("parameter gradient"), &want);
        }
    }
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let mut worst = 0.0f64;
    for (i, (a, b)) in got.to_vec::<f64>().iter().zip(want.to_vec::<f64>()).enumerate() {
        let err = (a - b).abs();
        assert!(err <= 2e-5 + 1e-4 * b.abs(), "{what}[{i}]: {a} vs PyTorch {b}");
        worst = worst.max(err);
    }
    println!("{what}: max abs error {worst:.2e}");
}

fn config(case: &serde_json::Value) -> TransformerConfig {
    let activation = if case["activation"] == "gelu" { Activation::Gelu } else { Activation::Relu };
    TransformerConfig::new(16, case["nhead"].as_u64().unwrap() as usize)
        .dim_feedforward(case["dim_feedforward"].as_u64().unwrap() as usize)
        .dropout(0.0)
        .activation(activation)
        .norm_first(case["norm_first"].as_bool().unwrap())
}

fn mla_config() -> MlaConfig {
    MlaConfig { kv_lora_rank: 8, qk_nope_head_dim: 4, qk_rope_head_dim: 4, v_head_dim: 6, ..MlaConfig::for_width(16, 4) }
}

#[test]
fn multihead_attention_matches_pytorch() {
    let fx = Fixture::load();
    let mut gen = Generator::new(0);
    let case = "mha_self";
    let mut mha = MultiheadAttention::new(16, 4, MultiheadAttentionOptions::default(), &mut gen).unwrap();
    let x = fx.input(case, "x");
    let (kpm, am) = (fx.mask(case, "key_padding").unwrap(), fx.mask(case, "attn").unwrap());
    let masks = AttentionMasks { key_padding_mask: Some(&kpm), attn_mask: Some(&am), causal: Causal::None };
    fx.check(case, &mut mha, &[("x", &x)], |m| m.forward_self(&x, &masks).unwrap());

    let case = "mha_cross_kdim";
    let opts = MultiheadAttentionOptions { kdim: Some(12), vdim: Some(10), ..Default::default() };
    let mut cross = MultiheadAttention::new(16, 2, opts, &mut gen).unwrap();
    let (q, k, v) = (fx.input(case, "x"), fx.input(case, "key"), fx.input(case, "value"));
    let kpm = fx.mask(case, "key_padding").unwrap();
    fx.check(case, &mut cross, &[("x", &q), ("key", &k), ("value", &v)], |m| m.forward(&q, &k, &v, &AttentionMasks::key_padding(&kpm)).unwrap());
}

#[test]
fn encoder_layers_match_pytorch() {
    let fx = Fixture::load();
    for case in ["encoder_post_relu", "encoder_pre_gelu"] {
        let mut layer = TransformerEncoderLayer::new(&config(fx.case(case)), &mut Generator::new(0)).unwrap();
        let x = fx.input(case, "x");
        let (kpm, am) = (fx.mask(case, "key_padding"), fx.mask(case, "attn"));
        let masks = AttentionMasks { key_padding_mask: kpm.as_ref(), attn_mask: am.as_ref(), causal: Causal::None };
        fx.check(case, &mut layer, &[("x", &x)], |l| l.forward(&x, &masks).unwrap());
    }
}

#[test]
fn decoder_layers_match_pytorch() {
    let fx = Fixture::load();
    for case in ["decoder_post_relu", "decoder_pre_gelu"] {
        let mut layer = TransformerDecoderLayer::new(&config(fx.case(case)), &mut Generator::new(0)).unwrap();
        let (x, mem) = (fx.input(case, "x"), fx.input(case, "memory"));
        let mkpm = fx.mask(case, "memory_key_padding").unwrap();
        // The fixture's tgt_mask is the causal mask; the layer takes it without a tensor.
        fx.check(case, &mut layer, &[("x", &x), ("memory", &mem)], |l| l.forward(&x, &mem, &AttentionMasks::causal(), &AttentionMasks::key_padding(&mkpm)).unwrap());
    }
}

#[test]
fn latent_attention_and_rope_match_pytorch() {
    let fx = Fixture::load();
    let case = "mla_causal";
    let mut mla = MultiHeadLatentAttention::new(mla_config(), &mut Generator::new(0)).unwrap();
    let x = fx.input(case, "x");
    fx.check(case, &mut mla, &[("x", &x)], |m| m.forward(&x, &AttentionMasks::causal()).unwrap());

    let x = fx.input("rope_offset3", "x");
    let y = RotaryEmbedding::new(8, 10000.0, RopeStyle::Half).unwrap().forward(&x, 3).unwrap();
    assert_close("rope out", &y, &fx.get("rope_offset3/out").unwrap());
    y.backward_with(&fx.get("rope_offset3/gout").unwrap());
    assert_close("rope grad", &x.grad().unwrap(), &fx.get("rope_offset3/grad/in/x").unwrap());
}

/// Feeding positions one at a time through the cache gives the full causal forward.
#[test]
fn cached_decoding_equals_the_full_forward() {
    tensorbrain::manual_seed(5);
    let mut gen = Generator::new(1);
    let x = Tensor::randn(&[2, 7, 16], DType::F32);
    let mut mha = MultiheadAttention::new(16, 4, MultiheadAttentionOptions::default(), &mut gen).unwrap();
    let mut mla = MultiHeadLatentAttention::new(MlaConfig { q_lora_rank: Some(6), ..mla_config() }, &mut gen).unwrap();
    mha.eval();
    mla.eval();
    type Step<'a> = Box<dyn Fn(&Tensor, &mut LayerCache) -> Tensor + 'a>;
    let runs: [(&str, Tensor, Step); 2] = [
        ("mha", mha.forward_self(&x, &AttentionMasks::causal()).unwrap(), Box::new(|t, c| mha.forward_cached(t, c, &AttentionMasks::causal()).unwrap())),
        ("mla", mla.forward(&x, &AttentionMasks::causal()).unwrap(), Box::new(|t, c| mla.forward_cached(t, c, &AttentionMasks::causal()).unwrap())),
    ];
    for (name, full, step) in runs {
        let mut cache = LayerCache::new();
        // A 3-token prompt, then one token at a time.
        let mut parts = vec![step(&x.narrow(1, 0, 3), &mut cache)];
        for t in 3..7 {
            parts.push(step(&x.narrow(1, t, 1), &mut cache));
        }
        assert_eq!(cache.len(), 7);
        let stepped = Tensor::cat(&parts.iter().collect::<Vec<_>>(), 1);
        assert_close(&format!("{name} cached"), &stepped, &full);
    }
    // What each cache holds per token: keys and values of every head, or latent + RoPE key.
    assert_eq!(mha.cache_floats_per_token(), 32);
    assert_eq!(mla.cache_floats_per_token(), 8 + 4);
}

#[test]
fn decoder_stack_decodes_incrementally() {
    tensorbrain::manual_seed(9);
    let mut gen = Generator::new(2);
    for cfg in [TransformerConfig::new(16, 4).dim_feedforward(24).dropout(0.0), TransformerConfig::new(16, 4).dim_feedforward(24).norm_first(true).latent_attention(mla_config())] {
        let mut dec = TransformerDecoder::new(&cfg, 2, cfg.norm_first, &mut gen).unwrap();
        dec.eval();
        let (tgt, mem) = (Tensor::randn(&[3, 5, 16], DType::F32), Tensor::randn(&[3, 4, 16], DType::F32));
        let pad = Tensor::from_vec(vec![0u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1], &[3, 4]);
        let mem_masks = AttentionMasks::key_padding(&pad);
        let full = dec.forward(&tgt, &mem, &AttentionMasks::causal(), &mem_masks).unwrap();
        let kv = dec.memory_kv(&mem).unwrap();
        let mut cache = dec.new_cache();
        let steps: Vec<Tensor> = (0..5).map(|t| dec.forward_cached(&tgt.narrow(1, t, 1), &kv, &mut cache, &AttentionMasks::causal(), &mem_masks).unwrap()).collect();
        assert_close("decoder cached", &Tensor::cat(&steps.iter().collect::<Vec<_>>(), 1), &full);
        assert_eq!(cache.floats_per_token(), dec.cache_floats_per_token());
    }
}

#[test]
fn rope_gradcheck_and_relative_positions() {
    for style in [RopeStyle::Half, RopeStyle::Interleaved] {
        let rope = RotaryEmbedding::new(6, 100.0, style).unwrap();
        tensorbrain::manual_seed(4);
        let x = Tensor::randn(&[2, 3, 6], DType::F64);
        gradcheck(|v| rope.forward(&v[0], 2), &[x], GradcheckOptions::default()).unwrap();
        // <rope(q, p), rope(k, p')> depends only on p - p'.
        let (q, k) = (Tensor::randn(&[1, 6], DType::F64), Tensor::randn(&[1, 6], DType::F64));
        let dot = |p: usize, pk: usize| rope.forward(&q, p).unwrap().mul(&rope.forward(&k, pk).unwrap()).sum_all().item::<f64>();
        assert!((dot(5, 2) - dot(13, 10)).abs() < 1e-10, "{style:?}");
        assert!((dot(5, 2) - dot(5, 4)).abs() > 1e-6, "{style:?}: positions must matter");
    }
}

#[test]
fn configuration_errors_name_the_sizes() {
    let mut gen = Generator::new(0);
    let e = MultiheadAttention::new(10, 3, MultiheadAttentionOptions::default(), &mut gen).err().unwrap().to_string();
    assert!(e.contains("embed_dim (10) must be divisible by num_heads (3)"), "{e}");
    let mha = MultiheadAttention::new(8, 2, MultiheadAttentionOptions::default(), &mut gen).unwrap();
    let e = mha.forward_self(&Tensor::zeros(&[2, 3, 6], DType::F32), &AttentionMasks::none()).unwrap_err().to_string();
    assert!(e.contains("expected query [batch, len, 8], got [2, 3, 6]"), "{e}");
    let pad = Tensor::zeros(&[2, 4], DType::U8);
    let e = mha.forward_self(&Tensor::zeros(&[2, 3, 8], DType::F32), &AttentionMasks::key_padding(&pad)).unwrap_err().to_string();
    assert!(e.contains("key_padding_mask must be [batch, source_len] = [2, 3], got [2, 4]"), "{e}");
    let names: Vec<String> = mha.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]);
}
