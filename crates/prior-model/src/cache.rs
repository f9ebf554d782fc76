//! Incremental decoding with a key/value cache.
//!
//! Each new token costs one query row per layer against the cached keys and values, which
//! are preallocated for the whole context. Burn's built-in autoregressive cache recomputes
//! every query row each step, so this is our own single-query path over the same
//! `TransformerEncoder` weights (pre-norm: `norm_2` before attention, `norm_1` before the
//! feed-forward, as Burn names them).

use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::{CodePrior, PriorError};

struct LayerCache {
    keys: Tensor<4>,
    values: Tensor<4>,
}

/// Cached keys and values of every layer for a batch of sequences.
pub struct PriorCache {
    layers: Vec<LayerCache>,
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
                .map(|_| LayerCache {
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
        let s = self.shape();
        let [b, t] = tokens.dims();
        if cache.len != 0 {
            return Err(PriorError::InvalidShape(
                "prefill needs an empty cache".into(),
            ));
        }
        if b != cache.batch {
            return Err(PriorError::InvalidShape(format!(
                "{b} sequences for a cache of {}",
                cache.batch
            )));
        }
        if t == 0 {
            return Err(PriorError::Empty);
        }
        if t > s.seq_len {
            return Err(PriorError::TooLong {
                len: t,
                seq_len: s.seq_len,
            });
        }
        let (h, heads) = (s.hidden_size, s.num_heads);
        let d_k = h / heads;
        let scale = 1.0 / (d_k as f64).sqrt();
        let mask = self.attention_mask(b, heads, t);
        let mut x = self.embed(tokens, 0); // [B, T, h]
        for (layer, lc) in self.transformer.layers.iter().zip(&mut cache.layers) {
            let r = layer.norm_2.forward(x.clone());
            let split = |u: Tensor<3>| u.reshape([b, t, heads, d_k]).swap_dims(1, 2); // [B, H, T, d_k]
            let q = split(layer.mha.query.forward(r.clone()));
            let k = split(layer.mha.key.forward(r.clone()));
            let v = split(layer.mha.value.forward(r));
            let at = [0..b, 0..heads, 0..t, 0..d_k];
            lc.keys = lc.keys.clone().slice_assign(at.clone(), k.clone());
            lc.values = lc.values.clone().slice_assign(at, v.clone());
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .mul_scalar(scale)
                .mask_fill(mask.clone(), f32::NEG_INFINITY);
            let ctx = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b, t, h]);
            x = x + layer.mha.output.forward(ctx);
            let r = layer.norm_1.forward(x.clone());
            x = x.clone() + layer.pwff.forward(r);
        }
        cache.len = t;
        let last = x.slice([0..b, t - 1..t, 0..h]);
        let logits = self.head.forward(self.ln_f.forward(last));
        Ok(logits.reshape([b, s.codebook_size]))
    }

    /// Feeds one token per sequence (`[B]`) at the next position and returns the logits for
    /// the token after it, `[B, K]`. Inference only (no dropout).
    pub fn step(
        &self,
        tokens: Tensor<1, Int>,
        cache: &mut PriorCache,
    ) -> Result<Tensor<2>, PriorError> {
        let s = self.shape();
        let pos = cache.len;
        if pos >= s.seq_len {
            return Err(PriorError::TooLong {
                len: pos + 1,
                seq_len: s.seq_len,
            });
        }
        let [b] = tokens.dims();
        if b != cache.batch {
            return Err(PriorError::InvalidShape(format!(
                "{b} tokens for a cache of {} sequences",
                cache.batch
            )));
        }
        let (h, heads) = (s.hidden_size, s.num_heads);
        let d_k = h / heads;
        let scale = 1.0 / (d_k as f64).sqrt();
        let mut x = self.embed(tokens.reshape([b, 1]), pos); // [B, 1, h]
        for (layer, lc) in self.transformer.layers.iter().zip(&mut cache.layers) {
            let r = layer.norm_2.forward(x.clone());
            let split = |t: Tensor<3>| t.reshape([b, 1, heads, d_k]).swap_dims(1, 2); // [B, H, 1, d_k]
            let q = split(layer.mha.query.forward(r.clone()));
            let k = split(layer.mha.key.forward(r.clone()));
            let v = split(layer.mha.value.forward(r));
            let at = [0..b, 0..heads, pos..pos + 1, 0..d_k];
            lc.keys = lc.keys.clone().slice_assign(at.clone(), k);
            lc.values = lc.values.clone().slice_assign(at, v);
            let upto = [0..b, 0..heads, 0..pos + 1, 0..d_k];
            let keys = lc.keys.clone().slice(upto.clone());
            let values = lc.values.clone().slice(upto);
            let scores = q.matmul(keys.swap_dims(2, 3)).mul_scalar(scale);
            let ctx = softmax(scores, 3).matmul(values); // [B, H, 1, d_k]
            let ctx = ctx.swap_dims(1, 2).reshape([b, 1, h]);
            x = x + layer.mha.output.forward(ctx);
            let r = layer.norm_1.forward(x.clone());
            x = x.clone() + layer.pwff.forward(r);
        }
        cache.len += 1;
        let logits = self.head.forward(self.ln_f.forward(x));
        Ok(logits.reshape([b, s.codebook_size]))
    }
}
