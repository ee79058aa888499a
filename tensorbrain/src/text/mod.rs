//! Text: tokenizers (Hugging Face's `tokenizers` crate) and the translation metrics.

mod tokenizer;

pub use tokenizer::{BpeOptions, EncodedBatch, Tokenizer};
pub mod metrics;
