//! Sentence embeddings as sentence-transformers computes them for models such as
//! all-MiniLM-L6-v2: BERT token states, mean pooling over real tokens, L2 normalisation.

use std::path::Path;

use super::bert::BertModel;
use crate::autograd::no_grad;
use crate::tensor::{DType, Error, Result, Tensor};
use crate::text::Tokenizer;

/// A tokenizer and a BERT encoder from one model directory.
pub struct SentenceEmbedder {
    pub tokenizer: Tokenizer,
    pub model: BertModel,
    pad_id: u32,
}

impl SentenceEmbedder {
    /// Loads `tokenizer.json`, `config.json` and `model.safetensors` from `dir`; texts are
    /// cut to `max_seq_length` tokens (256 for all-MiniLM-L6-v2, from its
    /// `sentence_bert_config.json`, which is read when present).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::Msg(format!("SentenceEmbedder: model directory {} does not exist", dir.display())));
        }
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))?;
        let max_len = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["max_seq_length"].as_u64())
            .unwrap_or(512) as usize;
        tokenizer.set_max_len(max_len)?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(0);
        Ok(SentenceEmbedder { tokenizer, model: BertModel::from_pretrained(dir)?, pad_id })
    }

    /// Unit-length embeddings `[N, hidden]` of `sentences`, encoded as one padded batch.
    pub fn embed(&self, sentences: &[&str]) -> Result<Tensor> {
        let batch = self.tokenizer.encode_batch(sentences, true, self.pad_id)?;
        no_grad(|| {
            let states = self.model.forward(&batch.ids, &batch.attention_mask, Some(&batch.type_ids))?;
            let mask = batch.attention_mask.try_to_dtype(DType::F32)?.try_unsqueeze(-1)?;
            let summed = states.try_mul(&mask)?.try_sum(&[1], false)?;
            let counts = mask.try_sum(&[1], false)?.try_clamp(Some(1e-9), None)?;
            let mean = summed.try_div(&counts)?;
            let norm = mean.try_mul(&mean)?.try_sum(&[-1], true)?.try_sqrt()?.try_clamp(Some(1e-12), None)?;
            mean.try_div(&norm)
        })
    }
}
