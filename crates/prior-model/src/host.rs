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

use burn::nn::{LayerNorm, Linear};

use crate::state_dict::{bias_values, torch_linear_weight, values};
use crate::{CodePrior, PriorError, PriorShape};

/// A Linear layer's weight as `([out, in], values)`.
fn out_in(lin: &Linear) -> Result<([usize; 2], Vec<f32>), PriorError> {
    let (shape, w) = torch_linear_weight(lin)?;
    Ok(([shape[0], shape[1]], w))
}

/// LayerNorm epsilon of every norm in the prior (Burn's and PyTorch's default, which the
/// model is built with).
const LN_EPS: f32 = 1e-5;

/// Matrix–vector products at least this large (multiply-adds) are split across threads.
const PARALLEL_MACS: usize = 128 * 1024;

/// How the host copy keeps its weight matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostWeights {
    /// As trained: the same logits as the model's forward pass (to float rounding).
    F32,
    /// Rounded to bfloat16 (8 significant bits, f32's range): half the bytes to read per
    /// token, which is what bounds the step time of a prior whose weights outgrow the CPU's
    /// caches. Embeddings, norms and biases stay f32.
    Bf16,
}

impl HostWeights {
    /// The layout generation uses for a prior of `shape`: f32 while its matrices fit a
    /// laptop CPU's caches, bfloat16 above 2^20 matrix weights. Measured interleaved on
    /// 2 cores (8 MB L3), tokens per second bf16 ÷ f32: 0.77–0.82 for 128 × 2 layers (0.4 M
    /// weights: the widening costs more than it saves), 1.04–1.49 for 256 × 2 (1.6 M),
    /// 1.10–1.37 for 256 × 4, 1.40–1.54 for 512 × 6.
    pub fn for_shape(shape: &PriorShape) -> Self {
        if matrix_weights(shape) > BF16_ABOVE_WEIGHTS {
            Self::Bf16
        } else {
            Self::F32
        }
    }
}

/// Matrix weights (attention, feed-forward, output head) above which generation keeps them
/// as bfloat16.
const BF16_ABOVE_WEIGHTS: usize = 1 << 20;

/// The weights of a prior's matrices: per layer query/key/value, output and the two
/// feed-forward matrices (4h wide), plus the output head.
fn matrix_weights(s: &PriorShape) -> usize {
    let h = s.hidden_size;
    s.num_layers * (3 * h * h + h * h + 2 * 4 * h * h) + h * s.codebook_size
}

/// Weight values in one of the [`HostWeights`] layouts.
enum Values {
    F32(Vec<f32>),
    Bf16(Vec<Bf16>),
}

/// A dense `[out, in]` matrix (PyTorch layout: each output is a contiguous row).
struct Dense {
    rows: usize,
    cols: usize,
    weight: Values,
    bias: Option<Vec<f32>>,
}

impl Dense {
    fn new(
        rows: usize,
        cols: usize,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        kind: HostWeights,
    ) -> Self {
        let weight = match kind {
            HostWeights::F32 => Values::F32(weight),
            HostWeights::Bf16 => Values::Bf16(weight.into_iter().map(Bf16::round).collect()),
        };
        Self {
            rows,
            cols,
            weight,
            bias,
        }
    }

    /// `out[i] = W x[i] + b` for `n` row vectors (`x`: `[n][cols]`, `out`: `[n][rows]`).
    /// The rows are split across threads in whole tiles; every output is the same sum
    /// whichever tile or task computed it, so a batch gives exactly the single results.
    fn apply_many(&self, x: &[f32], n: usize, out: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let mut by_row = if n == 1 {
            Vec::new()
        } else {
            vec![0.0f32; rows * n]
        };
        let dest: &mut [f32] = if n == 1 {
            &mut out[..rows]
        } else {
            &mut by_row
        };
        let task_rows = if rows * cols * n >= PARALLEL_MACS {
            // Two tasks per thread, whole tiles each, for balance.
            rows.div_ceil(2 * rayon::current_num_threads())
                .next_multiple_of(TASK_ROWS)
        } else {
            rows
        };
        let task = |(t, o): (usize, &mut [f32])| {
            let span = t * task_rows * cols..(t * task_rows + o.len() / n) * cols;
            match &self.weight {
                Values::F32(w) => products(&w[span], cols, x, n, o),
                Values::Bf16(w) => products(&w[span], cols, x, n, o),
            }
        };
        if task_rows < rows {
            dest.par_chunks_mut(task_rows * n)
                .enumerate()
                .for_each(task);
        } else {
            task((0, dest));
        }
        if n > 1 {
            for (r, vals) in by_row.chunks_exact(n).enumerate() {
                for (i, v) in vals.iter().enumerate() {
                    out[i * rows + r] = *v;
                }
            }
        }
        if let Some(b) = &self.bias {
            for o in out[..n * rows].chunks_exact_mut(rows) {
                o.iter_mut().zip(b).for_each(|(o, b)| *o += b);
            }
        }
    }

    /// `out = W x + b`.
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        self.apply_many(x, 1, out)
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
    /// `[rows][h]`, empty without a row embedding.
    row_emb: Vec<f32>,
    layers: Vec<Layer>,
    final_norm: Norm,
    head: Dense,
}

/// One sequence's decoding state: cached keys and values of every layer.
pub struct HostState {
    /// Per layer, `[heads][seq_len][d_k]` keys then values: each head's keys are
    /// consecutive rows, so its attention scores are one matrix–vector product.
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
    logits: Vec<f32>,
}

/// Work buffers for `n` rows fed at once, `[n][width]`.
struct Work {
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    proj: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f32>,
}

impl Work {
    fn new(n: usize, s: &PriorShape) -> Self {
        let h = s.hidden_size;
        Self {
            x: vec![0.0; n * h],
            normed: vec![0.0; n * h],
            qkv: vec![0.0; n * 3 * h],
            ctx: vec![0.0; n * h],
            proj: vec![0.0; n * h],
            hidden: vec![0.0; n * 4 * h],
            scores: vec![0.0; s.seq_len],
        }
    }
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
    /// Copies `prior`'s weights to the host, read from the module's own parameters.
    pub fn new(prior: &CodePrior) -> Result<Self, PriorError> {
        Self::with_weights(prior, HostWeights::F32)
    }

    /// [`Self::new`] with the weight matrices kept as `kind`.
    pub fn with_weights(prior: &CodePrior, kind: HostWeights) -> Result<Self, PriorError> {
        let shape = prior.shape();
        let h = shape.hidden_size;
        let norm = |n: &LayerNorm| -> Result<Norm, PriorError> {
            Ok(Norm {
                gamma: values(n.gamma.val())?.1,
                beta: match &n.beta {
                    Some(b) => values(b.val())?.1,
                    None => vec![0.0; h],
                },
            })
        };
        // Burn keeps Linear weights as `[in, out]`; rows here are outputs (`[out, in]`).
        let dense = |lin: &Linear| -> Result<Dense, PriorError> {
            let ([rows, cols], w) = out_in(lin)?;
            let bias = match &lin.bias {
                Some(_) => Some(bias_values(lin, rows)?),
                None => None,
            };
            Ok(Dense::new(rows, cols, w, bias, kind))
        };
        let mut layers = Vec::with_capacity(shape.num_layers);
        for layer in &prior.transformer.layers {
            // Query, key and value as one `[3h, h]` matrix: one pass over x for all three.
            let (mut qkv_w, mut qkv_b) = (Vec::with_capacity(3 * h * h), Vec::with_capacity(3 * h));
            for lin in [&layer.mha.query, &layer.mha.key, &layer.mha.value] {
                qkv_w.extend(out_in(lin)?.1);
                qkv_b.extend(bias_values(lin, h)?);
            }
            layers.push(Layer {
                attn_norm: norm(&layer.norm_2)?,
                qkv: Dense::new(3 * h, h, qkv_w, Some(qkv_b), kind),
                out: dense(&layer.mha.output)?,
                ff_norm: norm(&layer.norm_1)?,
                inner: dense(&layer.pwff.linear_inner)?,
                outer: dense(&layer.pwff.linear_outer)?,
            });
        }
        Ok(Self {
            shape,
            token_emb: values(prior.token_emb.weight.val())?.1,
            pos_emb: values(prior.pos_emb.weight.val())?.1,
            level_emb: values(prior.level_emb.weight.val())?.1,
            row_emb: match &prior.row_emb {
                Some(emb) => values(emb.weight.val())?.1,
                None => Vec::new(),
            },
            layers,
            final_norm: norm(&prior.ln_f)?,
            head: dense(&prior.head)?,
        })
    }

    pub fn shape(&self) -> PriorShape {
        self.shape
    }

    /// An empty state with its cache preallocated for the whole context.
    pub fn new_state(&self) -> HostState {
        let s = self.shape;
        let cache = || vec![vec![0.0f32; s.seq_len * s.hidden_size]; s.num_layers];
        HostState {
            keys: cache(),
            values: cache(),
            len: 0,
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

    /// One step of several independent sequences at once (each at its own position): the
    /// weights are read once for all of them. Gives exactly the logits that [`Self::step`]
    /// gives for each sequence alone.
    pub fn step_many(&self, states: &mut [HostState], tokens: &[usize]) -> Result<(), PriorError> {
        if states.len() != tokens.len() {
            return Err(PriorError::InvalidShape(format!(
                "{} tokens for {} sequences",
                tokens.len(),
                states.len()
            )));
        }
        if states.is_empty() {
            return Err(PriorError::Empty);
        }
        let rows: Vec<Row> = states
            .iter()
            .zip(tokens)
            .enumerate()
            .map(|(i, (st, &token))| Row {
                state: i,
                pos: st.len,
                token,
            })
            .collect();
        self.run_rows(states, &rows)?;
        states.iter_mut().for_each(|st| st.len += 1);
        Ok(())
    }

    /// Feeds `tokens` at the next positions (all at once: one pass over the weights, causal
    /// attention among them) and returns the logits after the last one.
    fn feed<'s>(
        &self,
        state: &'s mut HostState,
        tokens: &[usize],
    ) -> Result<&'s [f32], PriorError> {
        if tokens.is_empty() {
            return Err(PriorError::Empty);
        }
        let start = state.len;
        let rows: Vec<Row> = tokens
            .iter()
            .enumerate()
            .map(|(i, &token)| Row {
                state: 0,
                pos: start + i,
                token,
            })
            .collect();
        self.run_rows(std::slice::from_mut(state), &rows)?;
        state.len += tokens.len();
        Ok(&state.logits)
    }

    /// The transformer over `rows` (each a token at a position of one of `states`); rows of
    /// the same state must be consecutive positions in order. Writes every row's keys and
    /// values into its state's cache and the logits of each state's last row into
    /// its `logits`.
    fn run_rows(&self, states: &mut [HostState], rows: &[Row]) -> Result<(), PriorError> {
        let s = self.shape;
        for r in rows {
            if r.pos >= s.seq_len {
                return Err(PriorError::TooLong {
                    len: r.pos + 1,
                    seq_len: s.seq_len,
                });
            }
            if r.token >= s.codebook_size {
                return Err(PriorError::InvalidShape(format!(
                    "token {} is outside the codebook of {}",
                    r.token, s.codebook_size
                )));
            }
        }
        let h = s.hidden_size;
        if 4 * h * h * rows.len() >= PARALLEL_MACS && rayon::current_thread_index().is_none() {
            // The products will be split across threads: run the whole pass on one of the
            // pool's threads, so that each split is a cheap fork within the pool rather
            // than this thread handing work over and sleeping until it is done (measured:
            // a wake-up per product cost as much as the products of a 256-wide step).
            rayon::scope(|_| self.transform(states, rows));
        } else {
            self.transform(states, rows);
        }
        Ok(())
    }

    /// [`Self::run_rows`] after its checks.
    fn transform(&self, states: &mut [HostState], rows: &[Row]) {
        let s = self.shape;
        let n = rows.len();
        let h = s.hidden_size;
        let (heads, d_k) = (s.num_heads, h / s.num_heads);
        let scale = 1.0 / (d_k as f32).sqrt();
        let mut w = Work::new(n, &s);
        for (i, r) in rows.iter().enumerate() {
            let level = r.pos % s.num_quantizers;
            for (j, x) in w.x[i * h..(i + 1) * h].iter_mut().enumerate() {
                *x = self.token_emb[r.token * h + j]
                    + self.pos_emb[r.pos * h + j]
                    + self.level_emb[level * h + j];
            }
            if s.rows > 0 {
                let row = &self.row_emb[(r.pos / s.num_quantizers) % s.rows * h..][..h];
                for (x, e) in w.x[i * h..(i + 1) * h].iter_mut().zip(row) {
                    *x += e;
                }
            }
        }
        for (li, layer) in self.layers.iter().enumerate() {
            layer.attn_norm.apply_many(&w.x, h, &mut w.normed);
            layer.qkv.apply_many(&w.normed, n, &mut w.qkv);
            // Row `pos` of head `head` in a layer's `[heads][seq_len][d_k]` cache.
            let at = |head: usize, pos: usize| (head * s.seq_len + pos) * d_k;
            for (i, r) in rows.iter().enumerate() {
                let kv = &w.qkv[i * 3 * h + h..(i + 1) * 3 * h];
                let st = &mut states[r.state];
                for head in 0..heads {
                    let (dst, src) = (at(head, r.pos), head * d_k);
                    st.keys[li][dst..dst + d_k].copy_from_slice(&kv[src..src + d_k]);
                    st.values[li][dst..dst + d_k].copy_from_slice(&kv[h + src..h + src + d_k]);
                }
            }
            for (i, r) in rows.iter().enumerate() {
                let (keys, values) = (&states[r.state].keys[li], &states[r.state].values[li]);
                let q = &w.qkv[i * 3 * h..i * 3 * h + h];
                for head in 0..heads {
                    let span = head * d_k..(head + 1) * d_k;
                    let scores = &mut w.scores[..=r.pos];
                    let head_keys = &keys[at(head, 0)..at(head, r.pos + 1)];
                    products(head_keys, d_k, &q[span.clone()], 1, scores);
                    scores.iter_mut().for_each(|sc| *sc *= scale);
                    let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let mut total = 0.0f32;
                    for sc in scores.iter_mut() {
                        *sc = (*sc - max).exp();
                        total += *sc;
                    }
                    let ctx = &mut w.ctx[i * h + span.start..i * h + span.end];
                    ctx.iter_mut().for_each(|c| *c = 0.0);
                    for (j, &p) in scores.iter().enumerate() {
                        let weight = p / total;
                        let value = &values[at(head, j)..at(head, j) + d_k];
                        for (c, v) in ctx.iter_mut().zip(value) {
                            *c += weight * v;
                        }
                    }
                }
            }
            layer.out.apply_many(&w.ctx, n, &mut w.proj);
            w.x.iter_mut().zip(&w.proj).for_each(|(x, p)| *x += p);
            layer.ff_norm.apply_many(&w.x, h, &mut w.normed);
            layer.inner.apply_many(&w.normed, n, &mut w.hidden);
            w.hidden.iter_mut().for_each(|v| *v = v.max(0.0));
            layer.outer.apply_many(&w.hidden, n, &mut w.proj);
            w.x.iter_mut().zip(&w.proj).for_each(|(x, p)| *x += p);
        }
        // Logits only for each state's last row.
        for (i, r) in rows.iter().enumerate() {
            if rows.get(i + 1).is_some_and(|next| next.state == r.state) {
                continue;
            }
            let x = &w.x[i * h..(i + 1) * h];
            let normed = &mut w.normed[i * h..(i + 1) * h];
            self.final_norm.apply(x, normed);
            self.head.apply(normed, &mut states[r.state].logits);
        }
    }
}

/// One token to feed: which state, at which position.
struct Row {
    state: usize,
    pos: usize,
    token: usize,
}

/// A weight as stored in a host matrix, widened to f32 for arithmetic.
trait Weight: Copy {
    fn widen(self) -> f32;
}

impl Weight for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
}

/// A bfloat16 value: the upper 16 bits of an f32 (laid out as a `u16`: the AVX2 kernel
/// loads eight at once).
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Bf16(u16);

impl Bf16 {
    /// `v` rounded to the nearest bfloat16 (ties to even).
    fn round(v: f32) -> Self {
        let bits = v.to_bits();
        if v.is_nan() {
            return Self(((bits >> 16) | 0x40) as u16);
        }
        let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
        Self((rounded >> 16) as u16)
    }
}

impl Weight for Bf16 {
    /// Exact: every bfloat16 is an f32.
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits(u32::from(self.0) << 16)
    }
}

/// Lanes of each running sum: one AVX register of f32.
const LANES: usize = 8;
/// A batch's tiles (at least [`TILE_VECTORS`] vectors): each weight chunk is widened once
/// for [`TILE_VECTORS`] vectors, each vector chunk loaded once for [`TILE_ROWS`] rows; twelve
/// running sums, three weight and one vector register fill the sixteen AVX registers.
/// Measured on 2 cores (three interleaved runs): prefills and four-sound steps 5–10 % faster
/// than with 4 × 2 tiles, 4 × 3 slower (its sums spill out of the registers).
const TILE_ROWS: usize = 3;
const TILE_VECTORS: usize = 4;
/// Rows per tile of a single vector (a step of one sound): four independent sums.
const SINGLE_TILE_ROWS: usize = 4;
/// Threads split a product at multiples of every tile height.
const TASK_ROWS: usize = 12;

/// `out[r * n + i] = w[r] · x[i]` for the `[rows][cols]` matrix `w` and `n` vectors
/// `x` (`[n][cols]`).
///
/// Every output is the same sequence of operations however it is computed: per lane `l`,
/// fused multiply-adds over `k ≡ l (mod 8)` in order, the lanes summed pairwise, then the
/// tail — so batched and single products agree to the bit, and (fused multiply-add rounds
/// once on every CPU) so do machines with and without AVX2. With AVX2 the products run
/// in tiles of [`TILE_ROWS`] rows × [`TILE_VECTORS`] vectors whose sums stay in
/// registers: each weight is read once per tile, not once per vector.
fn products<W: Weight>(w: &[W], cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time just above).
        return unsafe { products_avx2(w, cols, x, n, out) };
    }
    products_portable(w, cols, x, n, out)
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    use std::sync::OnceLock;
    static AVX2_FMA: OnceLock<bool> = OnceLock::new();
    *AVX2_FMA.get_or_init(|| {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn products_avx2<W: Weight>(w: &[W], cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    if n < TILE_VECTORS {
        tiles::<W, SINGLE_TILE_ROWS, 1>(w, cols, x, n, out)
    } else {
        tiles::<W, TILE_ROWS, TILE_VECTORS>(w, cols, x, n, out)
    }
}

/// [`products`] in tiles of `R` rows × `V` vectors (single rows and vectors at the edges).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tiles<W: Weight, const R: usize, const V: usize>(
    w: &[W],
    cols: usize,
    x: &[f32],
    n: usize,
    out: &mut [f32],
) {
    let rows = w.len() / cols;
    let mut r = 0;
    while r < rows {
        let full_rows = r + R <= rows;
        let mut i = 0;
        while i < n {
            let full_vectors = i + V <= n;
            let (ws, xs) = (&w[r * cols..], &x[i * cols..]);
            match (full_rows, full_vectors) {
                (true, true) => scatter(&x86::tile::<W, R, V>(ws, xs, cols), out, n, r, i),
                (true, false) => scatter(&x86::tile::<W, R, 1>(ws, xs, cols), out, n, r, i),
                (false, true) => scatter(&x86::tile::<W, 1, V>(ws, xs, cols), out, n, r, i),
                (false, false) => scatter(&x86::tile::<W, 1, 1>(ws, xs, cols), out, n, r, i),
            }
            i += if full_vectors { V } else { 1 };
        }
        r += if full_rows { R } else { 1 };
    }
}

/// Writes a tile's sums (`[R][V]`, rows from `r`, vectors from `i`) into `out` (`[rows][n]`).
#[inline(always)]
fn scatter<const R: usize, const V: usize>(
    sums: &[[f32; V]; R],
    out: &mut [f32],
    n: usize,
    r: usize,
    i: usize,
) {
    for (dr, row) in sums.iter().enumerate() {
        let at = (r + dr) * n + i;
        out[at..at + V].copy_from_slice(row);
    }
}

/// The lanes of one running sum added pairwise, in the order every path uses.
#[inline(always)]
fn lane_sum(a: &[f32; LANES]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Bf16, LANES, Weight, lane_sum};

    /// Rows `0..R` of `w` (each `cols` long) against vectors `0..V` of `x`: the sums of
    /// [`super::dot_portable`], computed with AVX2 fused multiply-adds.
    // Index loops over the constant tile sizes unroll into named registers.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn tile<W: Weight, const R: usize, const V: usize>(
        w: &[W],
        x: &[f32],
        cols: usize,
    ) -> [[f32; V]; R] {
        assert!(w.len() >= R * cols && x.len() >= V * cols);
        let full = cols - cols % LANES;
        // Raw row pointers and plain loops (no closures: a closure would not inherit this
        // function's target features), so that the whole tile lives in registers.
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); V]; R];
        let mut wv = [_mm256_setzero_ps(); R];
        let mut k = 0;
        while k < full {
            for r in 0..R {
                // SAFETY: `r * cols + k + 8 <= R * cols <= w.len()` (asserted above).
                wv[r] = unsafe { load8(wp.add(r * cols + k)) };
            }
            for v in 0..V {
                // SAFETY: as above, for `x`.
                let xv = unsafe { _mm256_loadu_ps(xp.add(v * cols + k)) };
                for r in 0..R {
                    acc[r][v] = _mm256_fmadd_ps(wv[r], xv, acc[r][v]);
                }
            }
            k += LANES;
        }
        let mut sums = [[0.0f32; V]; R];
        let mut lanes = [0.0f32; LANES];
        for r in 0..R {
            for v in 0..V {
                // SAFETY: `lanes` holds 8 f32.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][v]) };
                let mut sum = lane_sum(&lanes);
                for k in full..cols {
                    sum = w[r * cols + k].widen().mul_add(x[v * cols + k], sum);
                }
                sums[r][v] = sum;
            }
        }
        sums
    }

    /// Eight consecutive weights widened to f32.
    ///
    /// # Safety
    /// `p..p + 8` must be readable.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load8<W: Weight>(p: *const W) -> __m256 {
        // SAFETY: the caller guarantees 8 readable values; a weight is an f32 or a `Bf16`
        // (a `u16`), told apart by its size.
        unsafe {
            if size_of::<W>() == size_of::<f32>() {
                _mm256_loadu_ps(p.cast::<f32>())
            } else {
                let half = _mm_loadu_si128(p.cast::<__m128i>());
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(half)))
            }
        }
    }

    const _: () = assert!(size_of::<Bf16>() == 2);
}

/// [`products`] without SIMD intrinsics (the same sums).
fn products_portable<W: Weight>(w: &[W], cols: usize, x: &[f32], n: usize, out: &mut [f32]) {
    for (r, row) in w.chunks_exact(cols).enumerate() {
        for (i, v) in x.chunks_exact(cols).take(n).enumerate() {
            out[r * n + i] = dot_portable(row, v);
        }
    }
}

/// One row times one vector: per lane `l`, fused multiply-adds over `k ≡ l (mod 8)` in
/// order; the lanes summed pairwise; then the tail.
#[inline(always)]
fn dot_portable<W: Weight>(w: &[W], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (cw, cx) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let (tw, tx) = (cw.remainder(), cx.remainder());
    for (a, b) in cw.zip(cx) {
        for l in 0..LANES {
            acc[l] = a[l].widen().mul_add(b[l], acc[l]);
        }
    }
    let mut sum = lane_sum(&acc);
    for (a, b) in tw.iter().zip(tx) {
        sum = a.widen().mul_add(*b, sum);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfloat16_rounds_to_nearest_even_and_widens_exactly() {
        let wide = |v: Bf16| v.widen();
        for v in [0.0f32, 1.0, -2.5, 0.15625, f32::INFINITY, 2f32.powi(100)] {
            // Values with 8 significant bits survive unchanged.
            assert_eq!(wide(Bf16::round(v)), v, "{v}");
        }
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(wide(Bf16::round(1.0 + 1.0 / 256.0)), 1.0);
        // 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
        assert_eq!(wide(Bf16::round(1.0 + 3.0 / 256.0)), 1.0 + 1.0 / 64.0);
        // Just above halfway rounds up.
        assert_eq!(
            wide(Bf16::round(1.0 + 1.0 / 256.0 + 1e-6)),
            1.0 + 1.0 / 128.0
        );
        assert!(wide(Bf16::round(f32::NAN)).is_nan());
        // Half a unit in the last place: relative error at most 2^-8 on ordinary values.
        for i in 1..1000 {
            let v = i as f32 * 0.013_7 - 6.0;
            let r = wide(Bf16::round(v));
            assert!((r - v).abs() <= v.abs() / 256.0, "{v} -> {r}");
        }
        // The bfloat16 dot product is the f32 one over the rounded weights.
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let rounded: Vec<Bf16> = a.iter().map(|&v| Bf16::round(v)).collect();
        let widened: Vec<f32> = rounded.iter().map(|&v| wide(v)).collect();
        assert_eq!(dot_portable(&rounded, &b), dot_portable(&widened, &b));
    }

    /// Every tile shape (full and partial row and vector tiles, a column tail) gives each
    /// output exactly the portable one-row, one-vector sum, for both weight types.
    #[test]
    fn tiled_products_equal_the_portable_sums_bit_for_bit() {
        let value = |i: usize| ((i * 2_654_435_761) % 1000) as f32 / 250.0 - 2.0;
        for (rows, cols, n) in [(9, 37, 5), (4, 16, 3), (1, 8, 1), (7, 64, 2), (12, 3, 4)] {
            let w: Vec<f32> = (0..rows * cols).map(value).collect();
            let x: Vec<f32> = (0..n * cols).map(|i| value(i + 7)).collect();
            let rounded: Vec<Bf16> = w.iter().map(|&v| Bf16::round(v)).collect();
            let mut out = vec![0.0f32; rows * n];
            let mut out_bf16 = vec![0.0f32; rows * n];
            products(&w, cols, &x, n, &mut out);
            products(&rounded, cols, &x, n, &mut out_bf16);
            for r in 0..rows {
                for i in 0..n {
                    let (row, v) = (r * cols..(r + 1) * cols, i * cols..(i + 1) * cols);
                    let expected = dot_portable(&w[row.clone()], &x[v.clone()]);
                    assert_eq!(
                        out[r * n + i].to_bits(),
                        expected.to_bits(),
                        "{rows}x{cols}x{n}"
                    );
                    let expected = dot_portable(&rounded[row], &x[v]);
                    assert_eq!(out_bf16[r * n + i].to_bits(), expected.to_bits());
                }
            }
        }
    }
}
