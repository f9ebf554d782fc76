//! How well models fit sounds: the measurements training validates with and
//! `distill evaluate` reports, in one place.

use anyhow::{Context, bail};
use audio::chunk::CHUNK_SAMPLES;
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
///
/// With `audio` (each chunk's samples of the file's audio, out of [`CHUNK_SAMPLES`]) a
/// time-major stream stops at the time step where its file's audio ends instead of running
/// on through the zero padding of the last chunk — but never short of one window: a sound
/// shorter than the prior's context keeps its padding, as a window must be full.
pub fn prior_sequences(
    order: TokenOrder,
    files: &[usize],
    grids: &[Vec<i64>],
    shape: GridShape,
    seq_len: usize,
    stride: usize,
    audio: Option<&[usize]>,
) -> anyhow::Result<Vec<Vec<i64>>> {
    if order == TokenOrder::Raster {
        return grids.iter().map(|g| Ok(order.tokens(g, shape)?)).collect();
    }
    Ok(
        prior_sequences_by_file(order, files, grids, shape, seq_len, stride, audio)?
            .into_iter()
            .flatten()
            .collect(),
    )
}

/// [`prior_sequences`] grouped by file (files in ascending order, a file without a window
/// left out): one group per file, in raster order one sequence per chunk.
pub fn prior_sequences_by_file(
    order: TokenOrder,
    files: &[usize],
    grids: &[Vec<i64>],
    shape: GridShape,
    seq_len: usize,
    stride: usize,
    audio: Option<&[usize]>,
) -> anyhow::Result<Vec<Vec<Vec<i64>>>> {
    if let Some(a) = audio
        && a.len() != grids.len()
    {
        bail!("{} chunk lengths for {} code grids", a.len(), grids.len());
    }
    let mut ids: Vec<usize> = files.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for f in ids {
        let mine: Vec<usize> = (0..grids.len().min(files.len()))
            .filter(|&i| files[i] == f)
            .collect();
        if order == TokenOrder::Raster {
            let chunks = mine
                .iter()
                .map(|&i| Ok(order.tokens(&grids[i], shape)?))
                .collect::<anyhow::Result<Vec<_>>>()?;
            out.push(chunks);
            continue;
        }
        let refs: Vec<&[i64]> = mine.iter().map(|&i| grids[i].as_slice()).collect();
        let mut stream = order.stream(&refs, shape)?;
        if let Some(a) = audio {
            // The step holding the last audio sample ends the file's stream.
            let end_step = mine
                .iter()
                .enumerate()
                .filter(|(_, i)| a[**i] > 0)
                .map(|(j, i)| j * shape.steps + (a[*i] * shape.steps).div_ceil(CHUNK_SAMPLES))
                .max()
                .unwrap_or(0);
            let keep = (end_step * shape.tokens_per_step()).max(seq_len);
            stream.truncate(keep);
        }
        let mine = windows(&stream, seq_len, stride);
        if !mine.is_empty() {
            out.push(mine);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Grid of 1 row, 4 steps, 2 levels; every code names its file, chunk and step.
    const SHAPE: GridShape = GridShape {
        rows: 1,
        steps: 4,
        levels: 2,
    };

    fn grid(file: i64, chunk: i64) -> Vec<i64> {
        (0..8).map(|i| file * 100 + chunk * 10 + i / 2).collect()
    }

    #[test]
    fn sequences_group_by_file_and_flatten_to_the_same_windows() {
        let files = [1, 0, 1, 1];
        let grids = [grid(1, 0), grid(0, 0), grid(1, 1), grid(1, 2)];
        for order in [TokenOrder::TimeMajor, TokenOrder::Raster] {
            let groups =
                prior_sequences_by_file(order, &files, &grids, SHAPE, 8, 2, None).expect("groups");
            let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
            // Time-major: file 0's 4 steps → 1 window, file 1's 12 → 9; raster: per chunk.
            let expected = if order == TokenOrder::Raster {
                [1, 3]
            } else {
                [1, 9]
            };
            assert_eq!(sizes, expected, "{order:?}");
            assert!(groups[0].iter().flatten().all(|&c| c < 100), "file 0 first");
            assert!(groups[1].iter().flatten().all(|&c| c >= 100), "then file 1");
            if order == TokenOrder::TimeMajor {
                let flat =
                    prior_sequences(order, &files, &grids, SHAPE, 8, 2, None).expect("sequences");
                assert_eq!(groups.concat(), flat);
            }
        }
    }

    #[test]
    fn a_trimmed_stream_stops_where_the_audio_ends_but_fills_one_window() {
        // File 0: 2.3 chunks of audio; file 1: a quarter chunk, shorter than a window.
        let files = [0, 0, 0, 1];
        let grids = [grid(0, 0), grid(0, 1), grid(0, 2), grid(1, 0)];
        let audio = [
            CHUNK_SAMPLES,
            CHUNK_SAMPLES,
            CHUNK_SAMPLES * 3 / 10,
            CHUNK_SAMPLES / 4,
        ];
        let order = TokenOrder::TimeMajor;
        let kept = prior_sequences(order, &files, &grids, SHAPE, 8, 2, None).expect("sequences");
        let trimmed =
            prior_sequences(order, &files, &grids, SHAPE, 8, 2, Some(&audio)).expect("sequences");
        // Untrimmed: 12 steps of file 0 → 9 windows, file 1 → 1.
        assert_eq!(kept.len(), 10);
        // Trimmed: file 0 ends in chunk 2's second step (0.3 of 4 steps, rounded up) → 10
        // steps → 7 windows; file 1 keeps its one (padded) window.
        assert_eq!(trimmed.len(), 8);
        let last_of_file0 = &trimmed[6];
        assert_eq!(
            last_of_file0[6..],
            [21, 21],
            "ends on the step holding the last sample"
        );
        assert_eq!(trimmed[7], kept[9], "a short sound keeps its full window");
        assert!(trimmed.iter().all(|w| w.len() == 8));
        // Raster order (the reference's one sequence per chunk) ignores the trim.
        let raster = prior_sequences(
            TokenOrder::Raster,
            &files,
            &grids,
            SHAPE,
            8,
            8,
            Some(&audio[..2]),
        )
        .expect("raster");
        assert_eq!(raster.len(), 4);
        assert!(
            prior_sequences(order, &files, &grids, SHAPE, 8, 2, Some(&audio[..2])).is_err(),
            "lengths must match the grids"
        );
    }
}
