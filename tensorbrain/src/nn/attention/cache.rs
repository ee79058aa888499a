//! Key/value caches for incremental decoding: each step appends the new positions' keys and
//! values (or, for latent attention, the compressed latent and the RoPE key) instead of
//! recomputing them for the whole prefix.

use crate::tensor::{Error, Result, Tensor};

/// The cached tensors of one attention layer, each growing along its own time dim
/// (multi-head attention: keys and values `[B, H, T, Dh]`; latent attention: the latent
/// `[B, T, r]` and the RoPE key `[B, T, dr]`).
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    entries: Vec<(Tensor, usize)>,
}

impl LayerCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cached positions (0 before the first step).
    pub fn len(&self) -> usize {
        self.entries.first().map_or(0, |(t, d)| t.shape()[*d])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `new` to entry `slot` along `time_dim`, returning the whole entry.
    pub fn append(&mut self, slot: usize, new: &Tensor, time_dim: usize) -> Result<Tensor> {
        if slot > self.entries.len() {
            return Err(Error::Msg(format!("KV cache: slot {slot} written before slot {}", self.entries.len())));
        }
        let new = new.detach();
        if slot == self.entries.len() {
            self.entries.push((new.try_contiguous()?, time_dim));
        } else {
            let (old, d) = &self.entries[slot];
            let joined = Tensor::try_cat(&[old, &new], *d as isize)?;
            self.entries[slot] = (joined, *d);
        }
        Ok(self.entries[slot].0.clone())
    }

    /// Entry `slot`, if written.
    pub fn get(&self, slot: usize) -> Option<&Tensor> {
        self.entries.get(slot).map(|(t, _)| t)
    }

    /// Keeps batch rows `indices` (i64, 1-D), in that order: beam search reorders the cache
    /// after choosing which hypotheses continue.
    pub fn reorder(&mut self, indices: &Tensor) -> Result<()> {
        for (t, _) in &mut self.entries {
            *t = t.try_index_select(0, indices)?;
        }
        Ok(())
    }

    /// Floats held per cached position per batch row.
    pub fn floats_per_token(&self) -> usize {
        self.entries.iter().map(|(t, d)| t.numel() / (t.shape()[0].max(1) * t.shape()[*d].max(1))).sum()
    }
}

/// One [`LayerCache`] per attention layer of a decoder.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        KvCache { layers: vec![LayerCache::new(); layers] }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reorder(&mut self, indices: &Tensor) -> Result<()> {
        self.layers.iter_mut().try_for_each(|l| l.reorder(indices))
    }

    /// Floats per position per sequence over all layers (the KV cache size per token).
    pub fn floats_per_token(&self) -> usize {
        self.layers.iter().map(LayerCache::floats_per_token).sum()
    }
}
