//! `CodePrior`: an autoregressive transformer over flattened residual-VQ codes.
//!
//! Architecture (the reference system's, so its weights load unchanged): summed token,
//! learned absolute position and level embeddings (level = t mod Q), dropout, a pre-norm
//! `TransformerEncoder` with a ReLU feed-forward of width 4h, a causal mask built once at
//! construction, a final LayerNorm and a bias-free linear head.
//!
//! Tokens are the VQ codes of a `[S, Q]` grid flattened position-major with the levels
//! interleaved (`p0q0, p0q1, …, p1q0, …`), see [`flatten_codes`].

use burn::module::Param;
use burn::nn::activation::ActivationConfig;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use rayon::prelude::*;
use weights::{HostTensor, StateDict, WeightsError};

mod cache;
mod host;
pub mod sample;
pub use cache::PriorCache;
pub use host::{HostDecoder, HostState};

/// Errors from building, running or loading a [`CodePrior`].
#[derive(Debug, thiserror::Error)]
pub enum PriorError {
    #[error("sequence of {len} tokens is longer than the prior's context of {seq_len}")]
    TooLong { len: usize, seq_len: usize },
    #[error("empty token sequence")]
    Empty,
    #[error("token sequence length {len} is not a multiple of the level count {levels}")]
    NotMultiple { len: usize, levels: usize },
    #[error("invalid prior shape: {0}")]
    InvalidShape(String),
    #[error("prior weights: {0}")]
    Weights(#[from] WeightsError),
    #[error("cannot read tensor data: {0}")]
    Data(String),
}

/// Everything that determines the prior's tensor shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorShape {
    pub codebook_size: usize,
    pub seq_len: usize,
    pub num_quantizers: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub dropout: f64,
}

impl PriorShape {
    pub fn validate(&self) -> Result<(), PriorError> {
        let bad = |m: String| Err(PriorError::InvalidShape(m));
        for (name, v) in [
            ("codebook_size", self.codebook_size),
            ("seq_len", self.seq_len),
            ("num_quantizers", self.num_quantizers),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(format!(
                "num_heads ({}) must divide hidden_size ({})",
                self.num_heads, self.hidden_size
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }
}

/// GPT-style prior over flattened codes.
#[derive(Module, Debug)]
pub struct CodePrior {
    pub token_emb: Embedding,
    pub pos_emb: Embedding,
    pub level_emb: Embedding,
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

    /// Sum of token, position and level embeddings for tokens that start at `start`.
    fn embed(&self, tokens: Tensor<2, Int>, start: usize) -> Tensor<3> {
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
        let levels = positions
            .clone()
            .remainder_scalar(self.shape.num_quantizers as i64);
        let pos = self.pos_emb.weight.val().select(0, positions);
        let lvl = self.level_emb.weight.val().select(0, levels);
        self.token_emb.forward(tokens) + (pos + lvl).unsqueeze::<3>()
    }

    /// The training forward pass: [`Self::forward`]'s computation (the same pre-norm layers
    /// and weights, dropout at the same five places: embeddings, attention weights, after
    /// attention, inside and after the feed-forward) with the dropout masks drawn on the host
    /// from `rng`. Burn's dropout draws every mask element through its tensor RNG, which
    /// was a fifth of the prior's training time; this also ties the masks to the training
    /// seed, so runs and resumed runs repeat exactly.
    pub fn forward_train(
        &self,
        tokens: Tensor<2, Int>,
        rng: &mut impl rand::Rng,
    ) -> Result<Tensor<3>, PriorError> {
        let [b, t] = tokens.dims();
        self.check_len(t)?;
        let s = self.shape;
        let (h, heads) = (s.hidden_size, s.num_heads);
        let d_k = h / heads;
        let mut masks = DropoutMasks::new(s.dropout, rng.next_u64());
        let mask = self.attention_mask(b, heads, t);
        let mut x = masks.apply(self.embed_sum(tokens, 0));
        for layer in &self.transformer.layers {
            let r = layer.norm_2.forward(x.clone());
            let split = |u: Tensor<3>| u.reshape([b, t, heads, d_k]).swap_dims(1, 2);
            let q = split(layer.mha.query.forward(r.clone()));
            let k = split(layer.mha.key.forward(r.clone()));
            let v = split(layer.mha.value.forward(r));
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .div_scalar((d_k as f32).sqrt())
                // −∞ rather than the layer's most negative finite value: both give exactly 0
                // after softmax (the diagonal is never masked), but a finite one takes libm's
                // slow underflow path in every masked exp.
                .mask_fill(mask.clone(), f32::NEG_INFINITY);
            let weights = masks.apply(softmax(scores, 3));
            let ctx = weights.matmul(v).swap_dims(1, 2).reshape([b, t, h]);
            x = x + masks.apply(layer.mha.output.forward(ctx));
            let r = layer.norm_1.forward(x.clone());
            let inner = masks.apply(relu(layer.pwff.linear_inner.forward(r)));
            x = x + masks.apply(layer.pwff.linear_outer.forward(inner));
        }
        Ok(self.head.forward(self.ln_f.forward(x)))
    }

    fn check_len(&self, len: usize) -> Result<(), PriorError> {
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

    /// Next-token logits `[B, T, K]` for tokens `[B, T]`, `T ≤ seq_len`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>, PriorError> {
        let [b, t] = tokens.dims();
        self.check_len(t)?;
        let x = self.embed(tokens, 0);
        let mask = self
            .causal_mask
            .clone()
            .slice([0..t, 0..t])
            .unsqueeze::<3>()
            .expand([b, t, t]);
        let x = self
            .transformer
            .forward(TransformerEncoderInput::new(x).mask_attn(mask));
        Ok(self.head.forward(self.ln_f.forward(x)))
    }

    /// Loads a reference-system (PyTorch) `prior_state_dict`, or our own copy of it, which
    /// uses the same names and layouts. Sizes come from the tensors; only the head count and
    /// dropout, which no tensor shape reveals, are passed in.
    pub fn from_state_dict(
        dict: &StateDict,
        num_heads: usize,
        dropout: f64,
        device: &Device,
    ) -> Result<Self, PriorError> {
        let shape = infer_shape(dict, num_heads, dropout)?;
        let mut m = Self::new(shape, device)?;
        let h = shape.hidden_size;
        let f = 4 * h;
        let k = shape.codebook_size;
        m.token_emb.weight = param2(dict, "token_emb.weight", [k, h], device)?;
        m.pos_emb.weight = param2(dict, "pos_emb.weight", [shape.seq_len, h], device)?;
        m.level_emb.weight = param2(dict, "level_emb.weight", [shape.num_quantizers, h], device)?;
        for (i, layer) in m.transformer.layers.iter_mut().enumerate() {
            let p = format!("transformer.layers.{i}.");
            let in_w =
                weights::get_f32(dict, &format!("{p}self_attn.in_proj_weight"), &[3 * h, h])?;
            let in_b = weights::get_f32(dict, &format!("{p}self_attn.in_proj_bias"), &[3 * h])?;
            for (j, lin) in [
                &mut layer.mha.query,
                &mut layer.mha.key,
                &mut layer.mha.value,
            ]
            .into_iter()
            .enumerate()
            {
                let rows = &in_w[j * h * h..(j + 1) * h * h];
                lin.weight = linear_weight(rows, h, h, device);
                lin.bias = Some(param1(in_b[j * h..(j + 1) * h].to_vec(), device));
            }
            set_linear(
                &mut layer.mha.output,
                dict,
                &format!("{p}self_attn.out_proj"),
                h,
                h,
                device,
            )?;
            set_linear(
                &mut layer.pwff.linear_inner,
                dict,
                &format!("{p}linear1"),
                h,
                f,
                device,
            )?;
            set_linear(
                &mut layer.pwff.linear_outer,
                dict,
                &format!("{p}linear2"),
                f,
                h,
                device,
            )?;
            // PyTorch's norm1 precedes attention; Burn names that norm `norm_2` in pre-norm mode.
            set_norm(&mut layer.norm_2, dict, &format!("{p}norm1"), h, device)?;
            set_norm(&mut layer.norm_1, dict, &format!("{p}norm2"), h, device)?;
        }
        set_norm(&mut m.ln_f, dict, "ln_f", h, device)?;
        let head = weights::get_f32(dict, "head.weight", &[k, h])?;
        m.head.weight = linear_weight(&head, k, h, device);
        Ok(m)
    }

    /// The weights under the reference system's names and layouts (PyTorch `[out, in]`
    /// Linear weights, packed q/k/v), so one loader serves both file formats.
    pub fn to_state_dict(&self) -> Result<StateDict, PriorError> {
        let mut d = StateDict::new();
        let h = self.shape.hidden_size;
        d.insert(
            "token_emb.weight".into(),
            host(self.token_emb.weight.val())?,
        );
        d.insert("pos_emb.weight".into(), host(self.pos_emb.weight.val())?);
        d.insert(
            "level_emb.weight".into(),
            host(self.level_emb.weight.val())?,
        );
        for (i, layer) in self.transformer.layers.iter().enumerate() {
            let p = format!("transformer.layers.{i}.");
            let mut packed_w = Vec::with_capacity(3 * h * h);
            let mut packed_b = Vec::with_capacity(3 * h);
            for lin in [&layer.mha.query, &layer.mha.key, &layer.mha.value] {
                packed_w.extend(torch_linear_weight(lin)?.1);
                packed_b.extend(bias_values(lin, h)?);
            }
            d.insert(
                format!("{p}self_attn.in_proj_weight"),
                HostTensor::f32(vec![3 * h, h], packed_w),
            );
            d.insert(
                format!("{p}self_attn.in_proj_bias"),
                HostTensor::f32(vec![3 * h], packed_b),
            );
            insert_linear(&mut d, &format!("{p}self_attn.out_proj"), &layer.mha.output)?;
            insert_linear(&mut d, &format!("{p}linear1"), &layer.pwff.linear_inner)?;
            insert_linear(&mut d, &format!("{p}linear2"), &layer.pwff.linear_outer)?;
            insert_norm(&mut d, &format!("{p}norm1"), &layer.norm_2)?;
            insert_norm(&mut d, &format!("{p}norm2"), &layer.norm_1)?;
        }
        insert_norm(&mut d, "ln_f", &self.ln_f)?;
        let (shape, w) = torch_linear_weight(&self.head)?;
        d.insert("head.weight".into(), HostTensor::f32(shape, w));
        Ok(d)
    }
}

/// Inverted dropout with masks from a fast host generator (SplitMix64), seeded once per
/// forward pass.
struct DropoutMasks {
    prob: f64,
    state: u64,
}

impl DropoutMasks {
    fn new(prob: f64, seed: u64) -> Self {
        Self { prob, state: seed }
    }

    /// `n` mask values (`0` or `1 / (1 − prob)`), continuing this generator's stream.
    fn mask(&mut self, n: usize) -> Vec<f32> {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        const PAIRS_PER_TASK: usize = 16 * 1024;
        let keep_bits = ((1.0 / (1.0 - self.prob)) as f32).to_bits();
        // Two 32-bit draws per 64-bit output; an element is dropped when its draw < threshold.
        let threshold = (self.prob * f64::from(u32::MAX)) as u32;
        let base = self.state;
        let mut values = vec![0.0f32; n];
        values
            .par_chunks_mut(2 * PAIRS_PER_TASK)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first_pair = (task * PAIRS_PER_TASK) as u64;
                // Branch-free select: a random keep/drop branch mispredicts a third of the time.
                let pick = |half: u32| {
                    f32::from_bits(keep_bits & 0u32.wrapping_sub(u32::from(half >= threshold)))
                };
                let draw = |j: usize| {
                    let counter = first_pair + j as u64 + 1;
                    Self::mix(base.wrapping_add(counter.wrapping_mul(GAMMA)))
                };
                let full_pairs = chunk.len() / 2;
                let mut pairs = chunk.chunks_exact_mut(2);
                for (j, pair) in pairs.by_ref().enumerate() {
                    let r = draw(j);
                    pair[0] = pick(r as u32);
                    pair[1] = pick((r >> 32) as u32);
                }
                if let [last] = pairs.into_remainder() {
                    *last = pick(draw(full_pairs) as u32);
                }
            });
        self.state = base.wrapping_add((n.div_ceil(2) as u64).wrapping_mul(GAMMA));
        values
    }

    /// SplitMix64 output for a given state: counter-based, so any draw can be computed
    /// without the ones before it (masks are filled in parallel, identically every time).
    fn mix(state: u64) -> u64 {
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Zeroes each element with probability `prob` and scales the rest by `1 / (1 − prob)`.
    fn apply<const D: usize>(&mut self, x: Tensor<D>) -> Tensor<D> {
        if self.prob <= 0.0 {
            return x;
        }
        let shape = x.shape();
        let values = self.mask(shape.num_elements());
        let mask = Tensor::<D>::from_data(TensorData::new(values, shape), &x.device());
        x * mask
    }
}

/// Reads the prior's dimensions from a state dict's tensor shapes.
pub fn infer_shape(
    dict: &StateDict,
    num_heads: usize,
    dropout: f64,
) -> Result<PriorShape, PriorError> {
    let dims2 = |name: &str| -> Result<[usize; 2], PriorError> {
        match weights::shape_of(dict, name)? {
            [a, b] => Ok([*a, *b]),
            other => Err(PriorError::InvalidShape(format!(
                "'{name}' should be a matrix, found shape {other:?}"
            ))),
        }
    };
    let [codebook_size, hidden_size] = dims2("token_emb.weight")?;
    let [seq_len, _] = dims2("pos_emb.weight")?;
    let [num_quantizers, _] = dims2("level_emb.weight")?;
    let num_layers = (0..)
        .take_while(|i| dict.contains_key(&format!("transformer.layers.{i}.linear1.weight")))
        .count();
    let shape = PriorShape {
        codebook_size,
        seq_len,
        num_quantizers,
        hidden_size,
        num_layers,
        num_heads,
        dropout,
    };
    shape.validate()?;
    Ok(shape)
}

fn param1(values: Vec<f32>, device: &Device) -> Param<Tensor<1>> {
    let n = values.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, vec![n]), device))
}

fn param2(
    dict: &StateDict,
    name: &str,
    shape: [usize; 2],
    device: &Device,
) -> Result<Param<Tensor<2>>, PriorError> {
    let v = weights::get_f32(dict, name, &shape)?;
    Ok(Param::from_tensor(Tensor::from_data(
        TensorData::new(v, shape.to_vec()),
        device,
    )))
}

/// Burn stores Linear weights `[in, out]`; PyTorch stores `[out, in]`.
fn linear_weight(torch_rows: &[f32], out: usize, inp: usize, device: &Device) -> Param<Tensor<2>> {
    let t = weights::transpose(torch_rows, out, inp);
    Param::from_tensor(Tensor::from_data(
        TensorData::new(t, vec![inp, out]),
        device,
    ))
}

fn set_linear(
    lin: &mut Linear,
    dict: &StateDict,
    prefix: &str,
    inp: usize,
    out: usize,
    device: &Device,
) -> Result<(), PriorError> {
    let w = weights::get_f32(dict, &format!("{prefix}.weight"), &[out, inp])?;
    lin.weight = linear_weight(&w, out, inp, device);
    let b = weights::get_f32(dict, &format!("{prefix}.bias"), &[out])?;
    lin.bias = Some(param1(b, device));
    Ok(())
}

fn set_norm(
    norm: &mut LayerNorm,
    dict: &StateDict,
    prefix: &str,
    h: usize,
    device: &Device,
) -> Result<(), PriorError> {
    norm.gamma = param1(
        weights::get_f32(dict, &format!("{prefix}.weight"), &[h])?,
        device,
    );
    norm.beta = Some(param1(
        weights::get_f32(dict, &format!("{prefix}.bias"), &[h])?,
        device,
    ));
    Ok(())
}

fn values<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>), PriorError> {
    let data = t.to_data();
    let shape = data.shape().as_slice().to_vec();
    let v = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PriorError::Data(format!("{e:?}")))?;
    Ok((shape, v))
}

fn host<const D: usize>(t: Tensor<D>) -> Result<HostTensor, PriorError> {
    let (shape, v) = values(t)?;
    Ok(HostTensor::f32(shape, v))
}

fn torch_linear_weight(lin: &Linear) -> Result<(Vec<usize>, Vec<f32>), PriorError> {
    let (shape, v) = values(lin.weight.val())?;
    let (inp, out) = (shape[0], shape[1]);
    Ok((vec![out, inp], weights::transpose(&v, inp, out)))
}

fn bias_values(lin: &Linear, n: usize) -> Result<Vec<f32>, PriorError> {
    match &lin.bias {
        Some(b) => Ok(values(b.val())?.1),
        None => Ok(vec![0.0; n]),
    }
}

fn insert_linear(d: &mut StateDict, prefix: &str, lin: &Linear) -> Result<(), PriorError> {
    let (shape, w) = torch_linear_weight(lin)?;
    let out = shape[0];
    d.insert(format!("{prefix}.weight"), HostTensor::f32(shape, w));
    d.insert(
        format!("{prefix}.bias"),
        HostTensor::f32(vec![out], bias_values(lin, out)?),
    );
    Ok(())
}

fn insert_norm(d: &mut StateDict, prefix: &str, norm: &LayerNorm) -> Result<(), PriorError> {
    let gamma = host(norm.gamma.val())?;
    let n = gamma.numel();
    let beta = match &norm.beta {
        Some(b) => host(b.val())?,
        None => HostTensor::f32(vec![n], vec![0.0; n]),
    };
    d.insert(format!("{prefix}.weight"), gamma);
    d.insert(format!("{prefix}.bias"), beta);
    Ok(())
}

/// `[B, S, Q]` codes → `[B, S·Q]` tokens, position-major with levels interleaved.
pub fn flatten_codes(codes: Tensor<3, Int>) -> Tensor<2, Int> {
    let [b, s, q] = codes.dims();
    codes.reshape([b, s * q])
}

/// `[B, S·Q]` tokens → `[B, S, Q]` codes; the exact inverse of [`flatten_codes`].
pub fn unflatten_codes(
    tokens: Tensor<2, Int>,
    num_quantizers: usize,
) -> Result<Tensor<3, Int>, PriorError> {
    let [b, t] = tokens.dims();
    if num_quantizers == 0 || !t.is_multiple_of(num_quantizers) {
        return Err(PriorError::NotMultiple {
            len: t,
            levels: num_quantizers,
        });
    }
    Ok(tokens.reshape([b, t / num_quantizers, num_quantizers]))
}

#[cfg(test)]
mod tests {
    use super::DropoutMasks;

    /// The plain sequential SplitMix64 stream the parallel mask must reproduce.
    fn sequential_mask(prob: f64, seed: u64, n: usize) -> (Vec<f32>, u64) {
        let keep = (1.0 / (1.0 - prob)) as f32;
        let threshold = (prob * f64::from(u32::MAX)) as u32;
        let mut state = seed;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let r = DropoutMasks::mix(state);
            for half in [r as u32, (r >> 32) as u32] {
                if out.len() < n {
                    out.push(if half < threshold { 0.0 } else { keep });
                }
            }
        }
        (out, state)
    }

    #[test]
    fn parallel_masks_equal_the_sequential_stream() {
        // Odd sizes spanning several parallel tasks, drawn back to back as a forward pass does.
        let sizes = [3, 70_001, 65_536 + 1];
        let mut masks = DropoutMasks::new(0.3, 42);
        let mut state = 42;
        for n in sizes {
            let got = masks.mask(n);
            let (want, next) = sequential_mask(0.3, state, n);
            assert_eq!(got, want, "mask of {n} elements");
            state = next;
            assert_eq!(masks.state, state, "stream position after {n} elements");
        }
        let big = DropoutMasks::new(0.3, 7).mask(200_000);
        let dropped = big.iter().filter(|&&v| v == 0.0).count() as f64 / big.len() as f64;
        assert!((dropped - 0.3).abs() < 0.01, "dropped fraction {dropped}");
        assert!(
            big.iter()
                .all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6)
        );
    }
}
