//! Pretrained models loaded from Hugging Face-format files.

mod bert;
mod sentence;

pub use bert::{BertConfig, BertModel};
pub use sentence::SentenceEmbedder;
