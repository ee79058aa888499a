//! A BERT encoder (`transformers.BertModel`) loaded from `config.json` and
//! `model.safetensors`, on the runtime layers: post-norm layers with separate query, key and
//! value projections, exact GELU, and absolute position plus token type embeddings.

use std::collections::HashMap;
use std::path::Path;

use crate::nn::attention::{AttentionMasks, AttentionOptions};
use crate::nn::runtime::{DynEmbedding, DynLayerNorm, DynLinear};
use crate::nn::{join, Module};
use crate::ops::attention::try_scaled_dot_product_attention;
use crate::ops::Generator;
use crate::tensor::{DType, Error, Result, Tensor};

/// The fields of a BERT `config.json` that shape the model.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default = "gelu")]
    pub hidden_act: String,
}

fn gelu() -> String {
    "gelu".into()
}

impl BertConfig {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io { context: format!("reading {}", path.display()), source: e })?;
        let cfg: BertConfig = serde_json::from_str(&text).map_err(|e| Error::Msg(format!("{}: not a BERT config: {e}", path.display())))?;
        if cfg.hidden_act != "gelu" {
            return Err(Error::Msg(format!("{}: hidden_act {:?} is not supported (only \"gelu\")", path.display(), cfg.hidden_act)));
        }
        if cfg.num_attention_heads == 0 || cfg.hidden_size % cfg.num_attention_heads != 0 {
            return Err(Error::Msg(format!("{}: hidden_size {} is not divisible by {} heads", path.display(), cfg.hidden_size, cfg.num_attention_heads)));
        }
        Ok(cfg)
    }
}

struct BertLayer {
    query: DynLinear,
    key: DynLinear,
    value: DynLinear,
    attention_output: DynLinear,
    attention_norm: DynLayerNorm,
    intermediate: DynLinear,
    output: DynLinear,
    output_norm: DynLayerNorm,
}

/// `BertModel` without the pooler: token states `[B, T, hidden]`.
pub struct BertModel {
    config: BertConfig,
    word_embeddings: DynEmbedding,
    position_embeddings: DynEmbedding,
    token_type_embeddings: DynEmbedding,
    embeddings_norm: DynLayerNorm,
    layers: Vec<BertLayer>,
}

impl BertModel {
    /// A randomly initialised model of `config`'s sizes.
    pub fn new(config: BertConfig, gen: &mut Generator) -> Self {
        let (h, eps) = (config.hidden_size, config.layer_norm_eps);
        let layers = (0..config.num_hidden_layers)
            .map(|_| BertLayer {
                query: DynLinear::new(h, h, true, gen),
                key: DynLinear::new(h, h, true, gen),
                value: DynLinear::new(h, h, true, gen),
                attention_output: DynLinear::new(h, h, true, gen),
                attention_norm: DynLayerNorm::new(h, eps),
                intermediate: DynLinear::new(h, config.intermediate_size, true, gen),
                output: DynLinear::new(config.intermediate_size, h, true, gen),
                output_norm: DynLayerNorm::new(h, eps),
            })
            .collect();
        BertModel {
            word_embeddings: DynEmbedding::new(config.vocab_size, h, gen),
            position_embeddings: DynEmbedding::new(config.max_position_embeddings, h, gen),
            token_type_embeddings: DynEmbedding::new(config.type_vocab_size, h, gen),
            embeddings_norm: DynLayerNorm::new(h, eps),
            layers,
            config,
        }
    }

    /// Loads `config.json` and `model.safetensors` from a model directory (Hugging Face
    /// names, with or without a `bert.` prefix; the pooler and `position_ids` are skipped).
    pub fn from_pretrained(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir.join("config.json"))?;
        let weights = dir.join("model.safetensors");
        let tensors = crate::checkpoint::load_safetensors(&weights)?;
        let mut model = BertModel::new(config, &mut Generator::new(0));
        let wanted: std::collections::HashSet<String> = {
            let mut names = std::collections::HashSet::new();
            model.visit_params("", &mut |n, _| {
                names.insert(n.to_string());
            });
            names
        };
        let mut found: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in tensors {
            let name = name.strip_prefix("bert.").unwrap_or(&name).to_string();
            if wanted.contains(&name) {
                found.insert(name, t.try_to_dtype(DType::F32)?);
            }
        }
        crate::nn::ModuleExt::load_state_dict(&mut model, found, &weights.display().to_string())?;
        Ok(model)
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Token states `[B, T, hidden]` for `input_ids` `[B, T]` (i64), `attention_mask`
    /// `[B, T]` (u8, 1 = token, 0 = padding) and optional `token_type_ids`.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, token_type_ids: Option<&Tensor>) -> Result<Tensor> {
        if input_ids.rank() != 2 || attention_mask.shape() != input_ids.shape() {
            return Err(Error::Msg(format!(
                "BertModel: expected input_ids and attention_mask of one shape [batch, len], got {:?} and {:?}",
                input_ids.shape(),
                attention_mask.shape()
            )));
        }
        let (b, t) = (input_ids.shape()[0], input_ids.shape()[1]);
        if t > self.config.max_position_embeddings {
            return Err(Error::Msg(format!("BertModel: {t} tokens exceed max_position_embeddings {}", self.config.max_position_embeddings)));
        }
        let positions = Tensor::arange(0.0, t as f64, 1.0, DType::I64);
        let types = match token_type_ids {
            Some(tt) => tt.clone(),
            None => Tensor::zeros(&[b, t], DType::I64),
        };
        let x = self.word_embeddings.forward(input_ids)?.try_add(&self.position_embeddings.forward(&positions)?)?.try_add(&self.token_type_embeddings.forward(&types)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        let padding = attention_mask.try_eq(&Tensor::zeros(&[], DType::U8))?;
        let opts = AttentionMasks::key_padding(&padding).to_options(b, t)?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x, &opts)?;
        }
        Ok(x)
    }

    fn layer_forward(&self, l: &BertLayer, x: &Tensor, opts: &AttentionOptions) -> Result<Tensor> {
        let (b, t, h) = (x.shape()[0] as isize, x.shape()[1] as isize, self.config.hidden_size as isize);
        let heads = self.config.num_attention_heads as isize;
        let split = |y: Tensor| y.try_reshape(&[b, t, heads, h / heads])?.try_transpose(1, 2);
        let (q, k, v) = (split(l.query.forward(x)?)?, split(l.key.forward(x)?)?, split(l.value.forward(x)?)?);
        let ctx = try_scaled_dot_product_attention(&q, &k, &v, opts)?.try_transpose(1, 2)?.try_reshape(&[b, t, h])?;
        let x = l.attention_norm.forward(&l.attention_output.forward(&ctx)?.try_add(x)?)?;
        let ff = l.output.forward(&l.intermediate.forward(&x)?.try_gelu()?)?;
        l.output_norm.forward(&ff.try_add(&x)?)
    }
}

impl Module for BertModel {
    /// BERT-base sizes (`bert-base-uncased`), randomly initialised.
    fn init_with(gen: &mut Generator) -> Self {
        let config = BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: gelu(),
        };
        BertModel::new(config, gen)
    }

    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        let e = join(prefix, "embeddings");
        self.word_embeddings.visit_params(&join(&e, "word_embeddings"), f);
        self.position_embeddings.visit_params(&join(&e, "position_embeddings"), f);
        self.token_type_embeddings.visit_params(&join(&e, "token_type_embeddings"), f);
        self.embeddings_norm.visit_params(&join(&e, "LayerNorm"), f);
        for (i, l) in self.layers.iter().enumerate() {
            let p = join(prefix, &format!("encoder.layer.{i}"));
            l.query.visit_params(&join(&p, "attention.self.query"), f);
            l.key.visit_params(&join(&p, "attention.self.key"), f);
            l.value.visit_params(&join(&p, "attention.self.value"), f);
            l.attention_output.visit_params(&join(&p, "attention.output.dense"), f);
            l.attention_norm.visit_params(&join(&p, "attention.output.LayerNorm"), f);
            l.intermediate.visit_params(&join(&p, "intermediate.dense"), f);
            l.output.visit_params(&join(&p, "output.dense"), f);
            l.output_norm.visit_params(&join(&p, "output.LayerNorm"), f);
        }
    }

    fn visit_params_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        let e = join(prefix, "embeddings");
        self.word_embeddings.visit_params_mut(&join(&e, "word_embeddings"), f);
        self.position_embeddings.visit_params_mut(&join(&e, "position_embeddings"), f);
        self.token_type_embeddings.visit_params_mut(&join(&e, "token_type_embeddings"), f);
        self.embeddings_norm.visit_params_mut(&join(&e, "LayerNorm"), f);
        for (i, l) in self.layers.iter_mut().enumerate() {
            let p = join(prefix, &format!("encoder.layer.{i}"));
            l.query.visit_params_mut(&join(&p, "attention.self.query"), f);
            l.key.visit_params_mut(&join(&p, "attention.self.key"), f);
            l.value.visit_params_mut(&join(&p, "attention.self.value"), f);
            l.attention_output.visit_params_mut(&join(&p, "attention.output.dense"), f);
            l.attention_norm.visit_params_mut(&join(&p, "attention.output.LayerNorm"), f);
            l.intermediate.visit_params_mut(&join(&p, "intermediate.dense"), f);
            l.output.visit_params_mut(&join(&p, "output.dense"), f);
            l.output_norm.visit_params_mut(&join(&p, "output.LayerNorm"), f);
        }
    }

    fn kind(&self) -> String {
        format!("BertModel({} layers, hidden {})", self.config.num_hidden_layers, self.config.hidden_size)
    }
}
