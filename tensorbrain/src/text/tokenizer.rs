//! A thin layer over Hugging Face's `tokenizers`: load a `tokenizer.json`, train a byte-level
//! BPE on a corpus, and turn batches of text into padded id and mask tensors.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::models::TrainerWrapper;
use tokenizers::{AddedToken, TruncationParams};

use crate::tensor::{Error, Result, Tensor};

fn err(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{context}: {e}"))
}

/// A trained tokenizer.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

/// Settings for [`Tokenizer::train_bpe`].
#[derive(Clone, Debug)]
pub struct BpeOptions {
    pub vocab_size: usize,
    /// Merges seen fewer times are not learned.
    pub min_frequency: u64,
    /// Tokens that get the first ids, in order (e.g. `<pad>`, `<s>`, `</s>`, `<unk>`).
    pub special_tokens: Vec<String>,
}

/// A padded batch: `ids` `[B, T]` (i64), `attention_mask` `[B, T]` (u8, 1 for real tokens),
/// `type_ids` `[B, T]` (i64, segment ids) and each sequence's length.
#[derive(Clone, Debug)]
pub struct EncodedBatch {
    pub ids: Tensor,
    pub attention_mask: Tensor,
    pub type_ids: Tensor,
    pub lengths: Vec<usize>,
}

impl EncodedBatch {
    /// The padding mask in `nn.MultiheadAttention`'s convention (1 = padding).
    pub fn key_padding_mask(&self) -> Result<Tensor> {
        self.attention_mask.try_eq(&Tensor::zeros(&[], crate::DType::U8))
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` (the format of Hugging Face's fast tokenizers).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| err(format!("cannot load tokenizer {}", path.display()), e))?;
        Ok(Tokenizer { inner })
    }

    /// Trains a byte-level BPE (GPT-2's scheme: any text round-trips, no unknown tokens) on
    /// `texts`.
    pub fn train_bpe<I, S>(texts: I, opts: &BpeOptions) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let mut inner = tokenizers::Tokenizer::new(BPE::default());
        inner.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials = opts.special_tokens.iter().map(|s| AddedToken::from(s.clone(), true)).collect();
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(opts.vocab_size)
            .min_frequency(opts.min_frequency)
            .special_tokens(specials)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .show_progress(false)
            .build()
            .into();
        inner.train(&mut trainer, texts).map_err(|e| err("BPE training", e))?;
        Ok(Tokenizer { inner })
    }

    /// Writes the tokenizer as `tokenizer.json` (loadable here and by Hugging Face).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.inner.save(path, false).map_err(|e| err(format!("cannot save tokenizer to {}", path.display()), e))
    }

    /// Cuts encodings to `max_len` tokens (special tokens included), as `truncation=True,
    /// max_length=max_len` does.
    pub fn set_max_len(&mut self, max_len: usize) -> Result<()> {
        let params = TruncationParams { max_length: max_len, ..Default::default() };
        self.inner.with_truncation(Some(params)).map_err(|e| err("truncation", e))?;
        Ok(())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of `text` (with the tokenizer's special tokens, e.g. `[CLS] .. [SEP]`, when
    /// `add_special_tokens`).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let e = self.inner.encode(text, add_special_tokens).map_err(|e| err("tokenizer", e))?;
        Ok(e.get_ids().to_vec())
    }

    /// Text from ids, dropping special tokens when asked.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| err("tokenizer", e))
    }

    /// Encodes `texts` and pads them on the right with `pad_id` to the longest one.
    pub fn encode_batch(&self, texts: &[&str], add_special_tokens: bool, pad_id: u32) -> Result<EncodedBatch> {
        let mut plain = self.inner.clone();
        plain.with_padding(None);
        let encodings = plain.encode_batch(texts.to_vec(), add_special_tokens).map_err(|e| err("tokenizer", e))?;
        let len = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let b = encodings.len();
        let (mut ids, mut mask, mut types) = (vec![pad_id as i64; b * len], vec![0u8; b * len], vec![0i64; b * len]);
        let mut lengths = Vec::with_capacity(b);
        for (row, e) in encodings.iter().enumerate() {
            let n = e.get_ids().len();
            lengths.push(n);
            for (j, (&id, &ty)) in e.get_ids().iter().zip(e.get_type_ids()).enumerate() {
                ids[row * len + j] = id as i64;
                types[row * len + j] = ty as i64;
                mask[row * len + j] = 1;
            }
        }
        Ok(EncodedBatch {
            ids: Tensor::from_vec(ids, &[b, len]),
            attention_mask: Tensor::from_vec(mask, &[b, len]),
            type_ids: Tensor::from_vec(types, &[b, len]),
            lengths,
        })
    }

    /// The wrapped `tokenizers::Tokenizer`, for everything else.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
