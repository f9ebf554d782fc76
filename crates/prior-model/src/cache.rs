//! Incremental decoding with a key/value cache.
//!
//! Each new token costs one query row per layer against the cached keys and values, which
//! are preallocated for the whole context. Burn's built-in autoregressive cache recomputes
//! every query row each step, so this runs the prior's own layer ([`CodePrior::layer`])
//! with a cache.

use burn::prelude::*;

use crate::model::{LayerKv, LayerPass};
use crate::{CodePrior, PriorError};

/// Cached keys and values of every layer for a batch of sequences.
pub struct PriorCache {
    layers: Vec<LayerKv>,
    batch: usize,
    /// Tokens already fed.
    len: usize,
}

impl PriorCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl CodePrior {
    /// An empty cache for `batch` sequences of up to `seq_len` tokens.
    pub fn new_cache(&self, batch: usize, device: &Device) -> PriorCache {
        let s = self.shape();
        let d_k = s.hidden_size / s.num_heads;
        let zeros = || Tensor::<4>::zeros([batch, s.num_heads, s.seq_len, d_k], device);
        PriorCache {
            layers: (0..s.num_layers)
                .map(|_| LayerKv {
                    keys: zeros(),
                    values: zeros(),
                })
                .collect(),
            batch,
            len: 0,
        }
    }

    /// Feeds a whole prefix `[B, T]` at once (one pass per layer instead of T steps) into an
    /// empty cache; returns the logits after its last token, `[B, K]`.
    pub fn prefill(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut PriorCache,
    ) -> Result<Tensor<2>, PriorError> {
        let [b, t] = tokens.dims();
        if cache.len != 0 {
            return Err(PriorError::InvalidShape(
                "prefill needs an empty cache".into(),
            ));
        }
        self.check_batch(b, cache)?;
        self.check_len(t)?;
        let mask = self.attention_mask(b, self.shape().num_heads, t);
        self.feed(tokens, cache, Some(mask))
    }

    /// Feeds one token per sequence (`[B]`) at the next position and returns the logits for
    /// the token after it, `[B, K]`. Inference only (no dropout).
    pub fn step(
        &self,
        tokens: Tensor<1, Int>,
        cache: &mut PriorCache,
    ) -> Result<Tensor<2>, PriorError> {
        let seq_len = self.shape().seq_len;
        if cache.len >= seq_len {
            return Err(PriorError::TooLong {
                len: cache.len + 1,
                seq_len,
            });
        }
        let [b] = tokens.dims();
        self.check_batch(b, cache)?;
        // A single query at the newest position may attend to every cached one: no mask.
        self.feed(tokens.reshape([b, 1]), cache, None)
    }

    fn check_batch(&self, b: usize, cache: &PriorCache) -> Result<(), PriorError> {
        if b != cache.batch {
            return Err(PriorError::InvalidShape(format!(
                "{b} sequences for a cache of {}",
                cache.batch
            )));
        }
        Ok(())
    }

    /// Runs `tokens` `[B, T]` at the cache's next positions through every layer; the
    /// logits after the last one, `[B, K]`.
    fn feed(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut PriorCache,
        mask: Option<Tensor<4, Bool>>,
    ) -> Result<Tensor<2>, PriorError> {
        let [b, t] = tokens.dims();
        let pos = cache.len;
        let mut x = self.embed(tokens, pos);
        for (layer, kv) in self.transformer.layers.iter().zip(&mut cache.layers) {
            let pass = LayerPass {
                mask: mask.clone(),
                dropout: None,
                cache: Some((kv, pos)),
            };
            x = self.layer(layer, x, pass);
        }
        cache.len += t;
        let h = self.shape().hidden_size;
        let last = x.slice([0..b, t - 1..t, 0..h]);
        Ok(self.logits(last).reshape([b, self.shape().codebook_size]))
    }
}
