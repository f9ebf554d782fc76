//! Single-token decoding on the host CPU, over a copy of a [`CodePrior`]'s weights.
//!
//! One new token is a chain of matrix–vector products over small matrices (128–2048 wide).
//! Through a tensor backend each of those is a separate dispatched operation with its own
//! allocation, which costs far more than the arithmetic (measured: ~20 µs per 128×128
//! product on the CPU backends, for 16 k multiply-adds). Here the whole step is plain loops
//! over weights laid out for it, with a preallocated key/value cache per sequence. It is
//! the same computation as [`CodePrior::step`] (parity-tested against the full forward
//! pass); GPU backends keep using that one.

use rayon::prelude::*;

use crate::{CodePrior, PriorError, PriorShape};

/// LayerNorm epsilon of every norm in the prior (Burn's and PyTorch's default, which the
/// model is built with).
const LN_EPS: f32 = 1e-5;

/// Matrix–vector products at least this large (multiply-adds) are split across threads.
const PARALLEL_MACS: usize = 128 * 1024;

/// A dense `[out, in]` matrix (PyTorch layout: each output is a contiguous row).
struct Dense {
    rows: usize,
    cols: usize,
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Dense {
    fn new(rows: usize, cols: usize, weight: Vec<f32>, bias: Option<Vec<f32>>) -> Self {
        Self {
            rows,
            cols,
            weight,
            bias,
        }
    }

    /// `out[i] = W x[i] + b` for `n` row vectors (`x`: `[n][cols]`, `out`: `[n][rows]`):
    /// each weight row is read once for all of them.
    fn apply_many(&self, x: &[f32], n: usize, out: &mut [f32]) {
        if n == 1 {
            return self.apply(x, out);
        }
        let mut by_row = vec![0.0f32; self.rows * n];
        let row = |(r, o): (usize, &mut [f32])| {
            let w = &self.weight[r * self.cols..(r + 1) * self.cols];
            let b = self.bias.as_ref().map_or(0.0, |b| b[r]);
            for (i, v) in o.iter_mut().enumerate() {
                *v = dot(w, &x[i * self.cols..(i + 1) * self.cols]) + b;
            }
        };
        if self.rows * self.cols * n >= PARALLEL_MACS {
            by_row.par_chunks_mut(n).enumerate().for_each(row);
        } else {
            by_row.chunks_mut(n).enumerate().for_each(row);
        }
        for (r, vals) in by_row.chunks_exact(n).enumerate() {
            for (i, v) in vals.iter().enumerate() {
                out[i * self.rows + r] = *v;
            }
        }
    }

    /// `out = W x + b`.
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        let row = |(o, r): (&mut f32, usize)| {
            *o = dot(&self.weight[r * self.cols..(r + 1) * self.cols], x)
                + self.bias.as_ref().map_or(0.0, |b| b[r]);
        };
        if self.rows * self.cols >= PARALLEL_MACS {
            out.par_iter_mut()
                .zip(0..self.rows)
                .with_min_len(64)
                .for_each(row);
        } else {
            out.iter_mut().zip(0..self.rows).for_each(row);
        }
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    /// Normalises each `width`-long row of `x`.
    fn apply_many(&self, x: &[f32], width: usize, out: &mut [f32]) {
        for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
            self.apply(xr, or);
        }
    }

    fn apply(&self, x: &[f32], out: &mut [f32]) {
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + LN_EPS).sqrt();
        for (((o, v), g), b) in out.iter_mut().zip(x).zip(&self.gamma).zip(&self.beta) {
            *o = (v - mean) * inv * g + b;
        }
    }
}

struct Layer {
    attn_norm: Norm,
    /// Packed query, key and value projections, `[3h, h]`.
    qkv: Dense,
    out: Dense,
    ff_norm: Norm,
    inner: Dense,
    outer: Dense,
}

/// The prior's weights, laid out for single-token steps.
pub struct HostDecoder {
    shape: PriorShape,
    token_emb: Vec<f32>,
    pos_emb: Vec<f32>,
    level_emb: Vec<f32>,
    layers: Vec<Layer>,
    final_norm: Norm,
    head: Dense,
}

/// One sequence's decoding state: cached keys/values of every layer and work buffers.
pub struct HostState {
    /// Per layer, `[seq_len][h]` keys then values (heads side by side in each row).
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
    /// Work buffers, `[tokens fed at once][width]`.
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    proj: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
    logits: Vec<f32>,
}

impl HostState {
    /// Tokens already fed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Logits after the last fed token (empty before the first).
    pub fn logits(&self) -> &[f32] {
        if self.len == 0 { &[] } else { &self.logits }
    }
}

impl HostDecoder {
    /// Copies `prior`'s weights to the host.
    pub fn new(prior: &CodePrior) -> Result<Self, PriorError> {
        let shape = prior.shape();
        let dict = prior.to_state_dict()?;
        let (h, k) = (shape.hidden_size, shape.codebook_size);
        let get = |name: &str, dims: &[usize]| weights::get_f32(&dict, name, dims);
        let norm = |prefix: &str| -> Result<Norm, PriorError> {
            Ok(Norm {
                gamma: get(&format!("{prefix}.weight"), &[h])?,
                beta: get(&format!("{prefix}.bias"), &[h])?,
            })
        };
        let dense = |prefix: &str, rows: usize, cols: usize| -> Result<Dense, PriorError> {
            Ok(Dense::new(
                rows,
                cols,
                get(&format!("{prefix}.weight"), &[rows, cols])?,
                Some(get(&format!("{prefix}.bias"), &[rows])?),
            ))
        };
        let mut layers = Vec::with_capacity(shape.num_layers);
        for i in 0..shape.num_layers {
            let p = format!("transformer.layers.{i}.");
            layers.push(Layer {
                attn_norm: norm(&format!("{p}norm1"))?,
                qkv: Dense::new(
                    3 * h,
                    h,
                    get(&format!("{p}self_attn.in_proj_weight"), &[3 * h, h])?,
                    Some(get(&format!("{p}self_attn.in_proj_bias"), &[3 * h])?),
                ),
                out: dense(&format!("{p}self_attn.out_proj"), h, h)?,
                ff_norm: norm(&format!("{p}norm2"))?,
                inner: dense(&format!("{p}linear1"), 4 * h, h)?,
                outer: dense(&format!("{p}linear2"), h, 4 * h)?,
            });
        }
        Ok(Self {
            shape,
            token_emb: get("token_emb.weight", &[k, h])?,
            pos_emb: get("pos_emb.weight", &[shape.seq_len, h])?,
            level_emb: get("level_emb.weight", &[shape.num_quantizers, h])?,
            layers,
            final_norm: norm("ln_f")?,
            head: Dense::new(k, h, get("head.weight", &[k, h])?, None),
        })
    }

    pub fn shape(&self) -> PriorShape {
        self.shape
    }

    /// An empty state with its cache preallocated for the whole context.
    pub fn new_state(&self) -> HostState {
        let s = self.shape;
        let h = s.hidden_size;
        let cache = || vec![vec![0.0f32; s.seq_len * h]; s.num_layers];
        HostState {
            keys: cache(),
            values: cache(),
            len: 0,
            x: vec![0.0; h],
            normed: vec![0.0; h],
            qkv: vec![0.0; 3 * h],
            ctx: vec![0.0; h],
            proj: vec![0.0; h],
            hidden: vec![0.0; 4 * h],
            scores: vec![0.0; s.seq_len],
            logits: vec![0.0; s.codebook_size],
        }
    }

    /// Feeds one token at the next position and returns the logits of the token after it.
    pub fn step<'s>(
        &self,
        state: &'s mut HostState,
        token: usize,
    ) -> Result<&'s [f32], PriorError> {
        self.feed(state, &[token])
    }

    /// Feeds a whole prefix into an empty state; returns the logits after its last token.
    pub fn prefill<'s>(
        &self,
        state: &'s mut HostState,
        tokens: &[usize],
    ) -> Result<&'s [f32], PriorError> {
        if !state.is_empty() {
            return Err(PriorError::InvalidShape(
                "prefill needs an empty state".into(),
            ));
        }
        self.feed(state, tokens)
    }

    /// Feeds `tokens` at the next positions (all at once: one pass over the weights, causal
    /// attention among them) and returns the logits after the last one.
    fn feed<'s>(
        &self,
        state: &'s mut HostState,
        tokens: &[usize],
    ) -> Result<&'s [f32], PriorError> {
        let s = self.shape;
        let n = tokens.len();
        let start = state.len;
        if n == 0 {
            return Err(PriorError::Empty);
        }
        if start + n > s.seq_len {
            return Err(PriorError::TooLong {
                len: start + n,
                seq_len: s.seq_len,
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t >= s.codebook_size) {
            return Err(PriorError::InvalidShape(format!(
                "token {bad} is outside the codebook of {}",
                s.codebook_size
            )));
        }
        let h = s.hidden_size;
        let (heads, d_k) = (s.num_heads, h / s.num_heads);
        let scale = 1.0 / (d_k as f32).sqrt();
        for (buf, width) in [
            (&mut state.x, h),
            (&mut state.normed, h),
            (&mut state.qkv, 3 * h),
            (&mut state.ctx, h),
            (&mut state.proj, h),
            (&mut state.hidden, 4 * h),
        ] {
            buf.resize(n * width, 0.0);
        }
        for (i, &token) in tokens.iter().enumerate() {
            let pos = start + i;
            let level = pos % s.num_quantizers;
            for (j, x) in state.x[i * h..(i + 1) * h].iter_mut().enumerate() {
                *x = self.token_emb[token * h + j]
                    + self.pos_emb[pos * h + j]
                    + self.level_emb[level * h + j];
            }
        }
        for (li, layer) in self.layers.iter().enumerate() {
            layer.attn_norm.apply_many(&state.x, h, &mut state.normed);
            layer.qkv.apply_many(&state.normed, n, &mut state.qkv);
            for i in 0..n {
                let kv = &state.qkv[i * 3 * h + h..(i + 1) * 3 * h];
                let pos = start + i;
                state.keys[li][pos * h..(pos + 1) * h].copy_from_slice(&kv[..h]);
                state.values[li][pos * h..(pos + 1) * h].copy_from_slice(&kv[h..]);
            }
            let (keys, values) = (&state.keys[li], &state.values[li]);
            for i in 0..n {
                let pos = start + i;
                let q = &state.qkv[i * 3 * h..i * 3 * h + h];
                for head in 0..heads {
                    let span = head * d_k..(head + 1) * d_k;
                    let scores = &mut state.scores[..=pos];
                    for (j, sc) in scores.iter_mut().enumerate() {
                        let key = &keys[j * h + span.start..j * h + span.end];
                        *sc = dot(&q[span.clone()], key) * scale;
                    }
                    let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let mut total = 0.0f32;
                    for sc in scores.iter_mut() {
                        *sc = (*sc - max).exp();
                        total += *sc;
                    }
                    let ctx = &mut state.ctx[i * h + span.start..i * h + span.end];
                    ctx.iter_mut().for_each(|c| *c = 0.0);
                    for (j, &p) in scores.iter().enumerate() {
                        let w = p / total;
                        let value = &values[j * h + span.start..j * h + span.end];
                        for (c, v) in ctx.iter_mut().zip(value) {
                            *c += w * v;
                        }
                    }
                }
            }
            layer.out.apply_many(&state.ctx, n, &mut state.proj);
            state
                .x
                .iter_mut()
                .zip(&state.proj)
                .for_each(|(x, p)| *x += p);
            layer.ff_norm.apply_many(&state.x, h, &mut state.normed);
            layer.inner.apply_many(&state.normed, n, &mut state.hidden);
            state.hidden.iter_mut().for_each(|v| *v = v.max(0.0));
            layer.outer.apply_many(&state.hidden, n, &mut state.proj);
            state
                .x
                .iter_mut()
                .zip(&state.proj)
                .for_each(|(x, p)| *x += p);
        }
        // Only the last token's logits are needed.
        let last = (n - 1) * h..n * h;
        self.final_norm
            .apply(&state.x[last.clone()], &mut state.normed[last.clone()]);
        self.head.apply(&state.normed[last], &mut state.logits);
        state.len += n;
        Ok(&state.logits)
    }
}

/// Dot product with sixteen independent accumulators, so the compiler can vectorise it
/// and keep several additions in flight (a single running float sum cannot be reordered).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
