//! Residual vector quantisation with EMA codebooks (vector-quantize-pytorch semantics).
//!
//! Each level quantises what the previous levels left over (Euclidean nearest code, lowest
//! index on ties). Training behaviour: k-means initialisation on the first batch, EMA
//! codebook updates with Laplace-smoothed counts, dead-code restart from batch vectors, and a
//! commitment loss. Gradients reach the encoder through a straight-through estimator
//! (the reference used the "rotation trick"; straight-through is the classic VQ-VAE choice and
//! needs no extra state). Codebook statistics are module state saved with the model, never
//! touched by the optimiser (`require_grad = false`).

use burn::module::Param;
use burn::prelude::*;
use rand::Rng;
use rand::rngs::StdRng;
use weights::StateDict;

use crate::VqvaeError;
use crate::state_dict::{host, replace, tensor};

/// Laplace smoothing of the EMA counts.
const EPS: f32 = 1e-5;

/// One level's codebook and its EMA statistics.
#[derive(Module, Debug)]
pub struct Codebook {
    /// `[K, D]` code vectors.
    pub embed: Param<Tensor<2>>,
    /// `[K, D]` EMA of the summed vectors assigned to each code.
    pub embed_avg: Param<Tensor<2>>,
    /// `[K]` EMA of assignment counts.
    pub cluster_size: Param<Tensor<1>>,
    /// `[1]`: 1 once k-means initialisation has run.
    pub initted: Param<Tensor<1>>,
}

fn buffer<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t).set_require_grad(false)
}

impl Codebook {
    fn new(k: usize, d: usize, device: &Device) -> Self {
        Self {
            embed: buffer(Tensor::random(
                [k, d],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                device,
            )),
            embed_avg: buffer(Tensor::zeros([k, d], device)),
            cluster_size: buffer(Tensor::zeros([k], device)),
            initted: buffer(Tensor::zeros([1], device)),
        }
    }

    /// Nearest code per row of `x [N, D]`.
    fn nearest(&self, x: Tensor<2>) -> Tensor<1, Int> {
        let e = self.embed.val();
        let x2 = x.clone().powi_scalar(2).sum_dim(1); // [N, 1]
        let e2 = e.clone().powi_scalar(2).sum_dim(1).transpose(); // [1, K]
        let dist = x2 + e2 - x.matmul(e.transpose()).mul_scalar(2.0);
        dist.argmin(1).squeeze_dim(1)
    }
}

/// Host copy of a codebook's state, for the training-time updates.
struct HostCodebook {
    k: usize,
    d: usize,
    embed: Vec<f32>,
    embed_avg: Vec<f32>,
    cluster_size: Vec<f32>,
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// Index of the nearest code of each row of `x`. Rows are independent, so they are spread over
/// the CPU's threads (a profile of VQ-VAE training had this loop on one core at 5–12 % of the
/// time); each row's arithmetic is unchanged, so the result is the same as a serial loop's.
fn nearest_host(x: &[f32], embed: &[f32], d: usize) -> Vec<usize> {
    use rayon::prelude::*;
    let k = embed.len() / d;
    x.par_chunks_exact(d)
        .with_min_len(64)
        .map(|v| {
            let mut best = (f32::INFINITY, 0usize);
            for c in 0..k {
                let e = &embed[c * d..(c + 1) * d];
                let dist: f32 = v.iter().zip(e).map(|(a, b)| (a - b) * (a - b)).sum();
                if dist < best.0 {
                    best = (dist, c);
                }
            }
            best.1
        })
        .collect()
}

/// Lloyd's k-means with `iters` iterations from k-means++ seeds (each next seed drawn with
/// probability proportional to its squared distance from the seeds so far; uniform seeds,
/// as the reference drew them, often put two codes on one cluster and none on another, and
/// Lloyd's iterations do not undo that). Returns centres `[k, d]` and the cluster sizes.
pub fn kmeans(
    x: &[f32],
    d: usize,
    k: usize,
    iters: usize,
    rng: &mut StdRng,
) -> (Vec<f32>, Vec<f32>) {
    let n = x.len() / d;
    let mut centres = vec![0.0f32; k * d];
    if n == 0 {
        return (centres, vec![0.0; k]);
    }
    let point = |i: usize| &x[i * d..(i + 1) * d];
    let dist2 = |a: &[f32], b: &[f32]| -> f64 {
        a.iter().zip(b).map(|(p, q)| f64::from(p - q).powi(2)).sum()
    };
    let first = rng.random_range(0..n);
    centres[..d].copy_from_slice(point(first));
    let mut nearest: Vec<f64> = (0..n).map(|i| dist2(point(i), point(first))).collect();
    for c in 1..k {
        let total: f64 = nearest.iter().sum();
        let src = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            nearest
                .iter()
                .position(|&w| {
                    target -= w;
                    target <= 0.0
                })
                .unwrap_or(n - 1)
        } else {
            // Every point already sits on a seed (fewer distinct points than codes).
            rng.random_range(0..n)
        };
        centres[c * d..(c + 1) * d].copy_from_slice(point(src));
        for (i, w) in nearest.iter_mut().enumerate() {
            *w = w.min(dist2(point(i), point(src)));
        }
    }
    let mut counts = vec![0.0f32; k];
    for _ in 0..iters {
        let assign = nearest_host(x, &centres, d);
        let mut sums = vec![0.0f32; k * d];
        counts.iter_mut().for_each(|c| *c = 0.0);
        for (i, &a) in assign.iter().enumerate() {
            counts[a] += 1.0;
            for j in 0..d {
                sums[a * d + j] += x[i * d + j];
            }
        }
        for c in 0..k {
            // Empty clusters keep their centre.
            if counts[c] > 0.0 {
                for j in 0..d {
                    centres[c * d + j] = sums[c * d + j] / counts[c];
                }
            }
        }
    }
    (centres, counts)
}

impl HostCodebook {
    /// EMA update from vectors `x` and their assignments.
    fn ema_update(&mut self, x: &[f32], assign: &[usize], decay: f32) {
        let (k, d) = (self.k, self.d);
        let mut counts = vec![0.0f32; k];
        let mut sums = vec![0.0f32; k * d];
        for (i, &a) in assign.iter().enumerate() {
            counts[a] += 1.0;
            for j in 0..d {
                sums[a * d + j] += x[i * d + j];
            }
        }
        for (size, n) in self.cluster_size.iter_mut().zip(&counts) {
            *size = *size * decay + n * (1.0 - decay);
        }
        for (a, s) in self.embed_avg.iter_mut().zip(&sums) {
            *a = *a * decay + s * (1.0 - decay);
        }
        let total: f32 = self.cluster_size.iter().sum();
        for c in 0..k {
            let smoothed = (self.cluster_size[c] + EPS) / (total + k as f32 * EPS) * total;
            for j in 0..d {
                self.embed[c * d + j] = self.embed_avg[c * d + j] / smoothed.max(1e-12);
            }
        }
    }

    /// Codes whose EMA count fell below `threshold` restart at batch vectors, chosen as
    /// `restart` says. `dist` holds each vector's squared distance to the code it was
    /// assigned (used by [`CodeRestart::Farthest`]). Returns how many were restarted.
    fn restart_dead(
        &mut self,
        x: &[f32],
        dist: &[f32],
        threshold: f32,
        restart: CodeRestart,
        rng: &mut StdRng,
    ) -> usize {
        let n = x.len() / self.d;
        if n == 0 || threshold <= 0.0 {
            return 0;
        }
        let d = self.d;
        // Distances still unexplained by the codes restarted so far (k-means++ seeding: a
        // vector next to a fresh code stops attracting the next one).
        let mut open: Vec<f32> = dist.to_vec();
        let mut restarted = 0;
        for c in 0..self.k {
            if self.cluster_size[c] < threshold {
                let src = match restart {
                    CodeRestart::Random => rng.random_range(0..n),
                    CodeRestart::Farthest => {
                        weighted_index(&open, rng).unwrap_or_else(|| rng.random_range(0..n))
                    }
                };
                let v = x[src * d..(src + 1) * d].to_vec();
                if restart == CodeRestart::Farthest {
                    for (i, o) in open.iter_mut().enumerate() {
                        let e: f32 = x[i * d..(i + 1) * d]
                            .iter()
                            .zip(&v)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum();
                        *o = o.min(e);
                    }
                }
                self.embed[c * d..(c + 1) * d].copy_from_slice(&v);
                for (a, x) in self.embed_avg[c * d..(c + 1) * d].iter_mut().zip(&v) {
                    *a = x * threshold;
                }
                self.cluster_size[c] = threshold;
                restarted += 1;
            }
        }
        restarted
    }
}

/// An index drawn with probability proportional to its weight; `None` when every weight is
/// zero (all vectors already sit on a code).
fn weighted_index(weights: &[f32], rng: &mut StdRng) -> Option<usize> {
    let total: f64 = weights.iter().map(|&w| f64::from(w.max(0.0))).sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let mut target = rng.random_range(0.0..total);
    for (i, &w) in weights.iter().enumerate() {
        let w = f64::from(w.max(0.0));
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    weights.iter().rposition(|&w| w > 0.0)
}

/// Where a dead code restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeRestart {
    /// At a uniformly drawn batch vector (vector-quantize-pytorch, the reference system).
    #[default]
    Random,
    /// At a batch vector drawn with probability proportional to its squared distance from
    /// the codebook (k-means++ seeding): codes go where the codebook fits worst, instead of
    /// onto more copies of the most common vector (silence) in a small batch.
    Farthest,
}

/// Training-time settings of the quantiser.
#[derive(Debug, Clone, Copy)]
pub struct RvqTraining {
    pub decay: f32,
    pub commitment_weight: f32,
    pub dead_code_threshold: f32,
    pub kmeans_iters: usize,
    pub restart: CodeRestart,
}

/// What the quantiser returns.
#[derive(Debug, Clone)]
pub struct RvqOutput {
    /// Sum of the chosen codes `[N, D]` (straight-through in training).
    pub quantized: Tensor<2>,
    /// `[N, Q]`
    pub indices: Tensor<2, Int>,
    /// Weighted commitment loss, `[1]` (zero outside training).
    pub commit_loss: Tensor<1>,
    /// Codes restarted per level during this call.
    pub restarted: Vec<usize>,
}

/// Codes chosen for a training batch by [`ResidualVq::assign_train`].
#[derive(Debug, Clone)]
pub struct Assignment {
    n: usize,
    d: usize,
    /// Per level, the chosen code vectors `[N, D]` row-major.
    chosen: Vec<Vec<f32>>,
    /// Per level, the chosen code per row.
    indices: Vec<Vec<i64>>,
    restarted: Vec<usize>,
    commitment_weight: f32,
    /// Per row, how many levels the decoder is given (quantiser dropout); empty: all.
    kept: Vec<usize>,
}

/// Levels each of `chunks` training chunks hands the decoder under quantiser dropout: with
/// probability `p` a uniform draw from `1..=levels`, otherwise all of them (SoundStream's
/// scheme, per example), so the decoder learns to make the most of the coarse levels alone.
/// Draws nothing from `rng` when `p` is 0, so runs without dropout are unchanged.
pub fn draw_kept_levels(chunks: usize, levels: usize, p: f64, rng: &mut StdRng) -> Vec<usize> {
    if p.is_nan() || p <= 0.0 || levels < 2 {
        return vec![levels; chunks];
    }
    (0..chunks)
        .map(|_| match rng.random_bool(p.min(1.0)) {
            true => rng.random_range(1..=levels),
            false => levels,
        })
        .collect()
}

impl Assignment {
    /// Hands the decoder only the first `per_chunk[c]` levels of chunk `c`'s rows (the batch's
    /// rows are chunk-major, an equal number per chunk). Codebooks and codes are unchanged:
    /// every level was still assigned and updated on the whole residual chain.
    pub fn keep_levels(&mut self, per_chunk: &[usize]) -> Result<(), VqvaeError> {
        let chunks = per_chunk.len();
        if chunks == 0 || !self.n.is_multiple_of(chunks) {
            return Err(VqvaeError::InvalidShape(format!(
                "{} rows cannot be split evenly into {chunks} chunks",
                self.n
            )));
        }
        let rows = self.n / chunks;
        self.kept = per_chunk
            .iter()
            .flat_map(|&k| std::iter::repeat_n(k, rows))
            .collect();
        Ok(())
    }

    /// Straight-through output and commitment loss for `rows` of the batch, given those
    /// rows' encoder output `x` (`[rows, D]`). The loss is weighted by the rows' share of
    /// the batch, so the parts of a batch add up to the whole batch's loss.
    pub fn output(&self, x: Tensor<2>, rows: std::ops::Range<usize>) -> RvqOutput {
        let device = x.device();
        let (d, m) = (self.d, rows.len());
        let mut residual = x.clone();
        let mut total: Option<Tensor<2>> = None;
        let mut loss: Option<Tensor<1>> = None;
        for (level, chosen) in self.chosen.iter().enumerate() {
            let part = chosen[rows.start * d..rows.end * d].to_vec();
            let q = Tensor::<2>::from_data(TensorData::new(part, [m, d]), &device);
            // The commitment term covers every level: the codes were all assigned.
            let level_loss = (q.clone() - residual.clone()).powi_scalar(2).mean();
            loss = Some(match loss {
                Some(l) => l + level_loss,
                None => level_loss,
            });
            residual = residual - q.clone();
            let q = match self.kept.get(rows.clone()) {
                Some(kept) if kept.iter().any(|&k| k <= level) => {
                    let mask: Vec<f32> = kept.iter().map(|&k| f32::from(k > level)).collect();
                    q * Tensor::<2>::from_data(TensorData::new(mask, [m, 1]), &device)
                }
                _ => q,
            };
            total = Some(match total {
                Some(t) => t + q,
                None => q,
            });
        }
        let indices: Vec<Tensor<2, Int>> = self
            .indices
            .iter()
            .map(|level| {
                let idx = level[rows.clone()].to_vec();
                Tensor::<2, Int>::from_data(TensorData::new(idx, [m, 1]), &device)
            })
            .collect();
        let total = total.unwrap_or_else(|| x.zeros_like());
        // Straight-through: forward value is the quantised sum, gradient flows to `x`.
        let quantized = x.clone() + (total - x).detach();
        let mut commit = loss
            .map(|l| l.mul_scalar(self.commitment_weight))
            .unwrap_or_else(|| Tensor::zeros([1], &device));
        if m != self.n {
            commit = commit.mul_scalar(m as f32 / self.n.max(1) as f32);
        }
        RvqOutput {
            quantized,
            indices: Tensor::cat(indices, 1),
            commit_loss: commit,
            restarted: self.restarted.clone(),
        }
    }
}

#[derive(Module, Debug)]
pub struct ResidualVq {
    pub levels: Vec<Codebook>,
}

impl ResidualVq {
    pub fn new(num_quantizers: usize, codebook_size: usize, dim: usize, device: &Device) -> Self {
        Self {
            levels: (0..num_quantizers)
                .map(|_| Codebook::new(codebook_size, dim, device))
                .collect(),
        }
    }

    /// Eval-mode quantisation of `x [N, D]`: no statistics change, zero loss.
    pub fn forward(&self, x: Tensor<2>) -> RvqOutput {
        self.forward_levels(x, self.levels.len())
    }

    /// [`forward`](Self::forward) with only the first `levels` levels (all of them when
    /// `levels` is larger): the same codes at those levels, the rest never chosen.
    pub fn forward_levels(&self, x: Tensor<2>, levels: usize) -> RvqOutput {
        let device = x.device();
        let mut residual = x;
        let mut total: Option<Tensor<2>> = None;
        let mut indices = Vec::with_capacity(self.levels.len());
        for cb in self.levels.iter().take(levels.max(1)) {
            let idx = cb.nearest(residual.clone());
            let q = cb.embed.val().select(0, idx.clone());
            residual = residual - q.clone();
            total = Some(match total {
                Some(t) => t + q,
                None => q,
            });
            indices.push(idx.unsqueeze_dim::<2>(1));
        }
        let used = indices.len();
        RvqOutput {
            quantized: total.unwrap_or_else(|| residual.zeros_like()),
            indices: Tensor::cat(indices, 1),
            commit_loss: Tensor::zeros([1], &device),
            restarted: vec![0; used],
        }
    }

    /// Codes only, `[N, Q]`.
    pub fn encode(&self, x: Tensor<2>) -> Tensor<2, Int> {
        self.forward(x).indices
    }

    /// Training-mode quantisation: k-means init on the first call, EMA updates and dead-code
    /// restarts after assignment, commitment loss, straight-through output.
    pub fn forward_train(
        &mut self,
        x: Tensor<2>,
        cfg: &RvqTraining,
        rng: &mut StdRng,
    ) -> RvqOutput {
        let [n, d] = x.dims();
        let assignment = self.assign_train(&to_vec(x.clone().detach()), d, cfg, rng, &x.device());
        assignment.output(x, 0..n)
    }

    /// The host half of [`forward_train`](Self::forward_train) for a whole batch `x`
    /// (`[N, D]` row-major): k-means init on the first call, nearest codes per level, EMA
    /// updates and dead-code restarts. A batch whose encoder ran in parts is assigned here
    /// at once, so the codebooks learn from the whole batch; [`Assignment::output`] then
    /// gives each part its differentiable output.
    pub fn assign_train(
        &mut self,
        x: &[f32],
        d: usize,
        cfg: &RvqTraining,
        rng: &mut StdRng,
        device: &Device,
    ) -> Assignment {
        let n = x.len() / d.max(1);
        let mut r_host = x.to_vec();
        let mut chosen_levels = Vec::with_capacity(self.levels.len());
        let mut indices = Vec::with_capacity(self.levels.len());
        let mut restarted = Vec::with_capacity(self.levels.len());
        for cb in &mut self.levels {
            let k = cb.embed.shape().dims::<2>()[0];
            let mut state = HostCodebook {
                k,
                d,
                embed: to_vec(cb.embed.val()),
                embed_avg: to_vec(cb.embed_avg.val()),
                cluster_size: to_vec(cb.cluster_size.val()),
            };
            if to_vec(cb.initted.val()).first().copied().unwrap_or(0.0) < 0.5 {
                let (centres, counts) = kmeans(&r_host, d, k, cfg.kmeans_iters, rng);
                // Running sums consistent with the counts, so the first EMA step keeps the
                // centres (vector-quantize-pytorch stores the bare centres here, which drags
                // every code toward the origin on the first update).
                state.embed_avg = centres
                    .chunks_exact(d)
                    .zip(&counts)
                    .flat_map(|(c, &n)| c.iter().map(move |v| v * n))
                    .collect();
                state.embed = centres;
                state.cluster_size = counts;
                cb.initted = buffer(Tensor::ones([1], device));
            }
            let assign = nearest_host(&r_host, &state.embed, d);
            let chosen: Vec<f32> = assign
                .iter()
                .flat_map(|&a| state.embed[a * d..(a + 1) * d].iter().copied())
                .collect();
            // Only the farthest-vector restart reads the assignment distances.
            let dist: Vec<f32> = if cfg.restart == CodeRestart::Farthest {
                r_host
                    .chunks_exact(d)
                    .zip(chosen.chunks_exact(d))
                    .map(|(a, b)| a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum())
                    .collect()
            } else {
                Vec::new()
            };
            state.ema_update(&r_host, &assign, cfg.decay);
            restarted.push(state.restart_dead(
                &r_host,
                &dist,
                cfg.dead_code_threshold,
                cfg.restart,
                rng,
            ));
            cb.embed = buffer(Tensor::from_data(
                TensorData::new(state.embed, [k, d]),
                device,
            ));
            cb.embed_avg = buffer(Tensor::from_data(
                TensorData::new(state.embed_avg, [k, d]),
                device,
            ));
            cb.cluster_size = buffer(Tensor::from_data(
                TensorData::new(state.cluster_size, [k]),
                device,
            ));
            indices.push(assign.iter().map(|&a| a as i64).collect::<Vec<_>>());
            for (r, c) in r_host.iter_mut().zip(&chosen) {
                *r -= c;
            }
            chosen_levels.push(chosen);
        }
        Assignment {
            n,
            d,
            chosen: chosen_levels,
            indices,
            restarted,
            commitment_weight: cfg.commitment_weight,
            kept: Vec::new(),
        }
    }
    /// Sum of the codes `indices [N, Q]` → `[N, D]`.
    pub fn decode(&self, indices: Tensor<2, Int>) -> Result<Tensor<2>, VqvaeError> {
        let [n, q] = indices.dims();
        if q != self.levels.len() {
            return Err(VqvaeError::InvalidShape(format!(
                "{q} code levels given, the model has {}",
                self.levels.len()
            )));
        }
        let k = self
            .levels
            .first()
            .map(|c| c.embed.shape().dims::<2>()[0])
            .unwrap_or(0) as i64;
        let max = indices.clone().max().into_scalar::<i64>();
        let min = indices.clone().min().into_scalar::<i64>();
        if n > 0 && (min < 0 || max >= k) {
            return Err(VqvaeError::InvalidShape(format!(
                "code values must be in 0..{k}, found {min}..={max}"
            )));
        }
        let mut total: Option<Tensor<2>> = None;
        for (l, cb) in self.levels.iter().enumerate() {
            let idx = indices.clone().slice([0..n, l..l + 1]).squeeze_dim(1);
            let v = cb.embed.val().select(0, idx);
            total = Some(match total {
                Some(t) => t + v,
                None => v,
            });
        }
        total.ok_or_else(|| VqvaeError::InvalidShape("no quantizer levels".into()))
    }

    pub(crate) fn load_state(
        &mut self,
        dict: &StateDict,
        prefix: &str,
        device: &Device,
    ) -> Result<(), VqvaeError> {
        for (i, cb) in self.levels.iter_mut().enumerate() {
            let p = format!("{prefix}.{i}._codebook");
            // The reference stores one head: [1, K, D] and [1, K].
            let embed: Tensor<3> = tensor(dict, &format!("{p}.embed"), device)?;
            replace(&mut cb.embed, embed.squeeze_dim(0), &format!("{p}.embed"))?;
            let avg: Tensor<3> = tensor(dict, &format!("{p}.embed_avg"), device)?;
            replace(
                &mut cb.embed_avg,
                avg.squeeze_dim(0),
                &format!("{p}.embed_avg"),
            )?;
            let size: Tensor<2> = tensor(dict, &format!("{p}.cluster_size"), device)?;
            replace(
                &mut cb.cluster_size,
                size.squeeze_dim(0),
                &format!("{p}.cluster_size"),
            )?;
            let initted = dict
                .get(&format!("{p}.initted"))
                .map(|t| t.to_f32().first().copied().unwrap_or(0.0))
                .unwrap_or(1.0);
            cb.initted = buffer(Tensor::from_data(
                TensorData::new(vec![initted], [1]),
                device,
            ));
        }
        Ok(())
    }

    pub(crate) fn save_state(&self, d: &mut StateDict, prefix: &str) -> Result<(), VqvaeError> {
        for (i, cb) in self.levels.iter().enumerate() {
            let p = format!("{prefix}.{i}._codebook");
            let mut embed = host(cb.embed.val())?;
            embed.shape.insert(0, 1);
            d.insert(format!("{p}.embed"), embed);
            let mut avg = host(cb.embed_avg.val())?;
            avg.shape.insert(0, 1);
            d.insert(format!("{p}.embed_avg"), avg);
            let mut size = host(cb.cluster_size.val())?;
            size.shape.insert(0, 1);
            d.insert(format!("{p}.cluster_size"), size);
            let initted = to_vec(cb.initted.val()).first().copied().unwrap_or(0.0) > 0.5;
            d.insert(
                format!("{p}.initted"),
                weights::HostTensor {
                    shape: vec![],
                    data: weights::HostData::Bool(vec![initted]),
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// One live code at the origin and one dead code; a batch of 99 vectors on the live code
    /// and one far away.
    fn one_dead_code() -> (HostCodebook, Vec<f32>, Vec<f32>) {
        let d = 2;
        let book = HostCodebook {
            k: 2,
            d,
            embed: vec![0.0, 0.0, 50.0, 50.0],
            embed_avg: vec![0.0, 0.0, 0.0, 0.0],
            cluster_size: vec![99.0, 0.0],
        };
        let mut x = vec![0.0f32; 99 * d];
        x.extend([10.0, -10.0]);
        let dist: Vec<f32> = x
            .chunks_exact(d)
            .map(|v| v.iter().map(|a| a * a).sum())
            .collect();
        (book, x, dist)
    }

    #[test]
    fn a_dead_code_restarts_where_the_codebook_fits_worst() {
        for seed in 0..20 {
            let (mut book, x, dist) = one_dead_code();
            let mut rng = StdRng::seed_from_u64(seed);
            let n = book.restart_dead(&x, &dist, 1.0, CodeRestart::Farthest, &mut rng);
            assert_eq!(n, 1);
            assert_eq!(&book.embed[2..], &[10.0, -10.0], "seed {seed}");
            assert_eq!(&book.embed[..2], &[0.0, 0.0], "the live code stays");
            assert_eq!(book.cluster_size[1], 1.0);
        }
        // The reference's uniform draw mostly lands on the common vector.
        let on_common = (0..20)
            .filter(|&seed| {
                let (mut book, x, dist) = one_dead_code();
                let mut rng = StdRng::seed_from_u64(seed);
                book.restart_dead(&x, &dist, 1.0, CodeRestart::Random, &mut rng);
                book.embed[2..] == [0.0, 0.0]
            })
            .count();
        assert!(on_common >= 15, "{on_common} of 20");
    }

    #[test]
    fn restarted_codes_spread_over_distinct_far_vectors() {
        // Three dead codes, two far vectors: the first two restarts take one each (a vector
        // next to a fresh code stops attracting the next); the third finds nothing left
        // unexplained and falls back to a uniform draw.
        let d = 1;
        let mut book = HostCodebook {
            k: 4,
            d,
            embed: vec![0.0; 4],
            embed_avg: vec![0.0; 4],
            cluster_size: vec![10.0, 0.0, 0.0, 0.0],
        };
        let x = vec![0.0, 0.0, 5.0, -7.0];
        let dist = vec![0.0, 0.0, 25.0, 49.0];
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(
            book.restart_dead(&x, &dist, 0.5, CodeRestart::Farthest, &mut rng),
            3
        );
        let mut first_two = book.embed[1..3].to_vec();
        first_two.sort_by(f32::total_cmp);
        assert_eq!(first_two, vec![-7.0, 5.0]);
        assert!(x.contains(&book.embed[3]));
    }

    #[test]
    fn weighted_index_follows_the_weights() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(weighted_index(&[0.0, 0.0], &mut rng), None);
        assert_eq!(weighted_index(&[], &mut rng), None);
        assert_eq!(weighted_index(&[0.0, 3.0, 0.0], &mut rng), Some(1));
        let ones = (0..4000)
            .filter(|_| weighted_index(&[1.0, 3.0], &mut rng) == Some(1))
            .count();
        assert!((2800..3200).contains(&ones), "{ones}");
    }
}
