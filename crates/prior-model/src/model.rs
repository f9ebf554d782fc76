//! The Burn module of the prior and its one transformer layer.
//!
//! [`CodePrior::layer`] is the only implementation of a transformer layer on tensors: the
//! inference forward pass, the training forward pass (dropout masks drawn on the host) and
//! cached decoding (`prefill`/`step` in `cache.rs`) all run through it. The weights live in
//! Burn's `TransformerEncoder` module so the optimiser, checkpoints and device moves treat
//! them as any other module; its own `forward` is not used (a test checks that ours gives
//! bitwise the same output).

use burn::nn::activation::ActivationConfig;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderLayer,
};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};

use crate::dropout::DropoutMasks;
use crate::{PriorError, PriorShape};

/// GPT-style prior over flattened codes.
#[derive(Module, Debug)]
pub struct CodePrior {
    pub token_emb: Embedding,
    pub pos_emb: Embedding,
    pub level_emb: Embedding,
    /// Each token's frequency row in a time-major grid (see [`PriorShape::rows`]).
    pub row_emb: Option<Embedding>,
    pub dropout: Dropout,
    pub transformer: TransformerEncoder,
    pub ln_f: LayerNorm,
    pub head: Linear,
    /// `true` above the diagonal (= may not attend). A plain tensor field is moved with the
    /// module between devices but is not part of the saved weights.
    pub(crate) causal_mask: Tensor<2, Bool>,
    #[module(skip)]
    shape: PriorShape,
}

/// Keys and values of one layer, preallocated for the whole context: `[B, heads, seq_len, d_k]`.
pub(crate) struct LayerKv {
    pub keys: Tensor<4>,
    pub values: Tensor<4>,
}

/// What a layer does besides its own arithmetic: attention masking, dropout (training) and
/// the key/value cache (decoding).
pub(crate) struct LayerPass<'a> {
    /// `[B, heads, T, T]` causal mask, or `None` when every key may be attended to (a single
    /// query at the newest position).
    pub mask: Option<Tensor<4, Bool>>,
    pub dropout: Option<&'a mut DropoutMasks>,
    /// The layer's cache and the position of the input's first token: the input's keys and
    /// values are written there, and attention covers every cached position up to the last
    /// new one.
    pub cache: Option<(&'a mut LayerKv, usize)>,
}

impl CodePrior {
    /// Builds a randomly initialised prior on `device`.
    pub fn new(shape: PriorShape, device: &Device) -> Result<Self, PriorError> {
        shape.validate()?;
        let h = shape.hidden_size;
        let transformer =
            TransformerEncoderConfig::new(h, 4 * h, shape.num_heads, shape.num_layers)
                .with_dropout(shape.dropout)
                .with_norm_first(true)
                .with_activation(ActivationConfig::Relu)
                .init(device);
        Ok(Self {
            token_emb: EmbeddingConfig::new(shape.codebook_size, h).init(device),
            pos_emb: EmbeddingConfig::new(shape.seq_len, h).init(device),
            level_emb: EmbeddingConfig::new(shape.num_quantizers, h).init(device),
            row_emb: (shape.rows > 0).then(|| EmbeddingConfig::new(shape.rows, h).init(device)),
            dropout: DropoutConfig::new(shape.dropout).init(),
            transformer,
            ln_f: LayerNormConfig::new(h).init(device),
            head: LinearConfig::new(h, shape.codebook_size)
                .with_bias(false)
                .init(device),
            // `tril_mask` marks what lies above the diagonal (what a lower-triangular matrix zeroes).
            causal_mask: Tensor::<2, Bool>::tril_mask([shape.seq_len, shape.seq_len], 0, device),
            shape,
        })
    }

    pub fn shape(&self) -> PriorShape {
        self.shape
    }

    /// Sum of token, position and level embeddings for tokens that start at `start`, after
    /// the embedding dropout of the module (inactive outside autodiff).
    pub(crate) fn embed(&self, tokens: Tensor<2, Int>, start: usize) -> Tensor<3> {
        self.dropout.forward(self.embed_sum(tokens, start))
    }

    /// The causal mask for `b` sequences of `t` tokens, per head: `[b, heads, t, t]`.
    pub(crate) fn attention_mask(&self, b: usize, heads: usize, t: usize) -> Tensor<4, Bool> {
        self.causal_mask
            .clone()
            .slice([0..t, 0..t])
            .unsqueeze::<4>()
            .expand([b, heads, t, t])
    }

    fn embed_sum(&self, tokens: Tensor<2, Int>, start: usize) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let device = tokens.device();
        let positions = Tensor::<1, Int>::arange(start as i64..(start + t) as i64, &device);
        let q = self.shape.num_quantizers as i64;
        let levels = positions.clone().remainder_scalar(q);
        let rows = self.row_emb.as_ref().map(|emb| {
            let row = positions
                .clone()
                .div_scalar(q)
                .remainder_scalar(self.shape.rows as i64);
            emb.weight.val().select(0, row)
        });
        let pos = self.pos_emb.weight.val().select(0, positions);
        let lvl = self.level_emb.weight.val().select(0, levels);
        let added = match rows {
            Some(row) => pos + lvl + row,
            None => pos + lvl,
        };
        self.token_emb.forward(tokens) + added.unsqueeze::<3>()
    }

    /// One pre-norm transformer layer over `x` `[B, T, h]` (`norm_2` before attention and
    /// `norm_1` before the feed-forward, as Burn names them in pre-norm mode). With dropout,
    /// masks are applied at the four places of the reference layer, in this order: attention
    /// weights, after attention, inside and after the feed-forward.
    pub(crate) fn layer(
        &self,
        layer: &TransformerEncoderLayer,
        x: Tensor<3>,
        pass: LayerPass<'_>,
    ) -> Tensor<3> {
        let LayerPass {
            mask,
            mut dropout,
            cache,
        } = pass;
        let [b, t, h] = x.dims();
        let heads = self.shape.num_heads;
        let d_k = h / heads;
        let r = layer.norm_2.forward(x.clone());
        let split = |u: Tensor<3>| u.reshape([b, t, heads, d_k]).swap_dims(1, 2);
        let q = split(layer.mha.query.forward(r.clone()));
        let mut k = split(layer.mha.key.forward(r.clone()));
        let mut v = split(layer.mha.value.forward(r));
        if let Some((kv, pos)) = cache {
            let at = [0..b, 0..heads, pos..pos + t, 0..d_k];
            kv.keys = kv.keys.clone().slice_assign(at.clone(), k);
            kv.values = kv.values.clone().slice_assign(at, v);
            let upto = [0..b, 0..heads, 0..pos + t, 0..d_k];
            k = kv.keys.clone().slice(upto.clone());
            v = kv.values.clone().slice(upto);
        }
        let mut scores = q.matmul(k.swap_dims(2, 3)).div_scalar((d_k as f32).sqrt());
        if let Some(mask) = mask {
            // −∞ rather than the most negative finite value: both give exactly 0 after
            // softmax (the diagonal is never masked), but a finite one takes libm's slow
            // underflow path in every masked exp.
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        let weights = maybe_drop(&mut dropout, softmax(scores, 3));
        let ctx = weights.matmul(v).swap_dims(1, 2).reshape([b, t, h]);
        let x = x + maybe_drop(&mut dropout, layer.mha.output.forward(ctx));
        let r = layer.norm_1.forward(x.clone());
        let inner = maybe_drop(&mut dropout, relu(layer.pwff.linear_inner.forward(r)));
        x + maybe_drop(&mut dropout, layer.pwff.linear_outer.forward(inner))
    }

    /// Logits `[.., K]` of hidden states: final norm and head.
    pub(crate) fn logits(&self, x: Tensor<3>) -> Tensor<3> {
        self.head.forward(self.ln_f.forward(x))
    }

    /// The training forward pass: [`Self::forward`]'s computation with dropout at the five
    /// places of the reference model (embeddings, then four per layer), the masks drawn on
    /// the host from `rng`. Burn's dropout draws every mask element through its tensor RNG,
    /// which was a fifth of the prior's training time; this also ties the masks to the
    /// training seed, so runs and resumed runs repeat exactly.
    pub fn forward_train(
        &self,
        tokens: Tensor<2, Int>,
        rng: &mut impl rand::Rng,
    ) -> Result<Tensor<3>, PriorError> {
        let [b, t] = tokens.dims();
        self.check_len(t)?;
        let mut masks = DropoutMasks::new(self.shape.dropout, rng.next_u64());
        let mask = self.attention_mask(b, self.shape.num_heads, t);
        let mut x = masks.apply(self.embed_sum(tokens, 0));
        for layer in &self.transformer.layers {
            let pass = LayerPass {
                mask: Some(mask.clone()),
                dropout: Some(&mut masks),
                cache: None,
            };
            x = self.layer(layer, x, pass);
        }
        Ok(self.logits(x))
    }

    pub(crate) fn check_len(&self, len: usize) -> Result<(), PriorError> {
        if len == 0 {
            return Err(PriorError::Empty);
        }
        if len > self.shape.seq_len {
            return Err(PriorError::TooLong {
                len,
                seq_len: self.shape.seq_len,
            });
        }
        Ok(())
    }

    /// Mean next-token cross-entropy (nats) of equally long `seqs` under teacher forcing,
    /// and the number of predicted tokens; with `rng` through the training forward pass
    /// (dropout on), else the inference one.
    pub fn next_token_loss(
        &self,
        seqs: &[Vec<i64>],
        dropout_rng: Option<&mut dyn rand::RngCore>,
    ) -> Result<(Tensor<1>, usize), PriorError> {
        let len = seqs.first().map_or(0, Vec::len);
        if len < 2 || seqs.iter().any(|s| s.len() != len) {
            return Err(PriorError::InvalidShape(format!(
                "{} sequences of unequal or too short length for next-token prediction",
                seqs.len()
            )));
        }
        let b = seqs.len();
        // `lazy_device`: reading the device must not initialise a lazy parameter, or the
        // seeded initialisation order (and so the trained model) would change.
        let device = self.head.weight.lazy_device();
        let inputs: Vec<i64> = seqs
            .iter()
            .flat_map(|s| s[..len - 1].iter().copied())
            .collect();
        let targets: Vec<i64> = seqs.iter().flat_map(|s| s[1..].iter().copied()).collect();
        let x = Tensor::<2, Int>::from_data(TensorData::new(inputs, [b, len - 1]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(targets, [b * (len - 1)]), &device);
        let logits = match dropout_rng {
            Some(mut rng) => self.forward_train(x, &mut rng)?,
            None => self.forward(x)?,
        };
        let k = self.shape.codebook_size;
        let ce = CrossEntropyLossConfig::new().init(&device);
        Ok((
            ce.forward(logits.reshape([b * (len - 1), k]), y),
            b * (len - 1),
        ))
    }

    /// Next-token logits `[B, T, K]` for tokens `[B, T]`, `T ≤ seq_len`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>, PriorError> {
        let [b, t] = tokens.dims();
        self.check_len(t)?;
        let mask = self.attention_mask(b, self.shape.num_heads, t);
        let mut x = self.embed(tokens, 0);
        for layer in &self.transformer.layers {
            let pass = LayerPass {
                mask: Some(mask.clone()),
                dropout: None,
                cache: None,
            };
            x = self.layer(layer, x, pass);
        }
        Ok(self.logits(x))
    }
}

/// Applies the next dropout mask when training, else passes `x` through.
fn maybe_drop<const D: usize>(masks: &mut Option<&mut DropoutMasks>, x: Tensor<D>) -> Tensor<D> {
    match masks.as_deref_mut() {
        Some(m) => m.apply(x),
        None => x,
    }
}
