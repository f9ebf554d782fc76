//! How well models fit sounds: the measurements training validates with and
//! `distill evaluate` reports, in one place.

use anyhow::Context;
use audio::mel::MelSpectrogram;
use burn::prelude::*;
use prior_model::{CodePrior, GridShape, TokenOrder};
use vqvae::{ConvVqvae, LevelHealth, codebook_health, reconstruction_loss};

mod fit;
pub mod generation;
pub mod reconstruction;

pub use fit::{EvaluateOptions, FitReport, PriorFit, VqvaeFit, evaluate};

/// Perplexity of a mean cross-entropy in nats, capped (e^20) so an untrained or diverged
/// prior reports a finite number.
pub fn perplexity(nats: f64) -> f64 {
    nats.min(20.0).exp()
}

/// Log-mel batch `[B, 1, n_mels, T]` of equally long chunks (computed in parallel: the
/// STFTs of a batch are independent, and on one thread they kept a core idle while the
/// tensor operations waited for them).
pub fn mel_batch(mel: &MelSpectrogram, chunks: &[&[f32]], device: &Device) -> Tensor<4> {
    use rayon::prelude::*;
    let n_mels = mel.config.n_mels;
    let frames = mel.frames_for(chunks.first().map_or(0, |c| c.len()));
    let mels: Vec<Vec<f32>> = chunks.par_iter().map(|c| mel.log_mel(c)).collect();
    let mut data = Vec::with_capacity(chunks.len() * n_mels * frames);
    for m in mels {
        data.extend(m);
    }
    Tensor::from_data(
        TensorData::new(data, [chunks.len(), 1, n_mels, frames]),
        device,
    )
}

/// Integer tensor contents on the host.
pub fn ints<const D: usize>(t: Tensor<D, Int>, what: &str) -> anyhow::Result<Vec<i64>> {
    t.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| anyhow::anyhow!("reading {what}: {e:?}"))
}

/// Float tensor contents on the host.
pub fn floats<const D: usize>(t: Tensor<D>, what: &str) -> anyhow::Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading {what}: {e:?}"))
}

/// The VQ-VAE on a set of chunks (eval mode).
pub struct VqEval {
    /// Mean multi-scale mel loss per chunk.
    pub loss: f64,
    pub health: Vec<LevelHealth>,
    /// Codes `[N][S·Q]`, flattened.
    pub codes: Vec<i64>,
}

/// Reconstruction loss (the one the model trained on: `log_power_weight` from its config) and
/// codebook health of `model` on `chunks`, `batch` at a time.
pub fn vq_eval(
    model: &ConvVqvae,
    chunks: &[&[f32]],
    mel: &MelSpectrogram,
    batch: usize,
    log_power_weight: f64,
    device: &Device,
) -> anyhow::Result<VqEval> {
    let shape = model.shape();
    let (mut loss_sum, mut n) = (0.0f64, 0usize);
    let mut codes = Vec::new();
    for part in chunks.chunks(batch.max(1)) {
        let x = mel_batch(mel, part, device);
        let out = model.forward(x.clone());
        let l = reconstruction_loss(out.recon, x, log_power_weight as f32).into_scalar::<f32>();
        loss_sum += f64::from(l) * part.len() as f64;
        n += part.len();
        codes.extend(ints(out.indices, "codes")?);
    }
    let health = codebook_health(&codes, shape.num_quantizers, shape.codebook_size);
    Ok(VqEval {
        loss: loss_sum / n.max(1) as f64,
        health,
        codes,
    })
}

/// Code grids of chunks through a frozen VQ-VAE (eval mode, no augmentation), batched: one
/// raster-order grid per chunk, and their shape.
pub fn code_grids(
    model: &ConvVqvae,
    chunks: &[&[f32]],
    mel: &MelSpectrogram,
    batch: usize,
    device: &Device,
) -> anyhow::Result<(Vec<Vec<i64>>, GridShape)> {
    let levels = model.shape().num_quantizers;
    let mut out = Vec::with_capacity(chunks.len());
    let mut shape = GridShape {
        rows: 0,
        steps: 0,
        levels,
    };
    for part in chunks.chunks(batch.max(1)) {
        let (codes, (rows, steps)) = model.codes(mel_batch(mel, part, device));
        shape = GridShape {
            rows,
            steps,
            levels,
        };
        let flat = ints(codes, "codes")?;
        out.extend(flat.chunks(shape.len().max(1)).map(<[i64]>::to_vec));
    }
    Ok((out, shape))
}

/// Windows of `seq_len` tokens starting every `step` tokens.
pub fn windows(stream: &[i64], seq_len: usize, step: usize) -> Vec<Vec<i64>> {
    if stream.len() < seq_len || step == 0 {
        return Vec::new();
    }
    (0..=(stream.len() - seq_len) / step)
        .map(|i| stream[i * step..i * step + seq_len].to_vec())
        .collect()
}

/// The prior's sequences of a set of chunks: in time-major order each file's chunks form one
/// stream cut into windows of `seq_len` tokens every `stride` tokens; in raster order (the
/// reference's) each chunk is one sequence. `files[i]` is the file of `grids[i]`.
pub fn prior_sequences(
    order: TokenOrder,
    files: &[usize],
    grids: &[Vec<i64>],
    shape: GridShape,
    seq_len: usize,
    stride: usize,
) -> anyhow::Result<Vec<Vec<i64>>> {
    if order == TokenOrder::Raster {
        return grids.iter().map(|g| Ok(order.tokens(g, shape)?)).collect();
    }
    let mut ids: Vec<usize> = files.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for f in ids {
        let mine: Vec<&[i64]> = files
            .iter()
            .zip(grids)
            .filter(|(file, _)| **file == f)
            .map(|(_, g)| g.as_slice())
            .collect();
        out.extend(windows(&order.stream(&mine, shape)?, seq_len, stride));
    }
    Ok(out)
}

/// Mean next-token cross-entropy (nats) of `prior` over `seqs` (inference mode).
pub fn prior_cross_entropy(
    prior: &CodePrior,
    seqs: &[Vec<i64>],
    batch: usize,
) -> anyhow::Result<f64> {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for part in seqs.chunks(batch.max(1)) {
        let (loss, count) = prior
            .next_token_loss(part, None)
            .context("scoring the prior")?;
        sum += f64::from(loss.into_scalar::<f32>()) * count as f64;
        n += count;
    }
    Ok(sum / n.max(1) as f64)
}
