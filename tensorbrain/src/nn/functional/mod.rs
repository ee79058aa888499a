//! `torch.nn.functional` on runtime tensors: normalisations and embeddings whose sizes and
//! options are values, for code that only knows them at run time. (Activations, pooling,
//! convolutions and padding are methods on [`crate::Tensor`]; losses are in [`crate::nn::loss`].)

mod distance;
mod embedding;
mod norm;

pub use distance::{try_cosine_similarity, try_pairwise_distance};
pub use embedding::{try_embedding, try_embedding_bag, try_one_hot, BagMode, EmbeddingOptions};
pub use norm::{try_batch_norm, try_group_norm, try_instance_norm, try_layer_norm, try_normalize, RunningStats};
