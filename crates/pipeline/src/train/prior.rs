//! Stage 2: the prior, trained on codes of the frozen VQ-VAE in time-major order.

use audio::mel::MelSpectrogram;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamWConfig;
use burn::prelude::*;
use prior_config::PriorConfig;
use prior_model::{CodePrior, PriorShape};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use vqvae::ConvVqvae;
use weights::StateDict;

use super::checkpoint::StageCheckpoint;
use super::data::{Chunk, Dataset, mel_batch};
use super::optim::{assign_param_ids, cosine_lr, descend};
use super::{EpochReport, Hooks, Reporter, StageOutcome, epoch_seed};

/// Time steps of the code grid per 1 s chunk and frequency rows (128 mels / 16).
pub struct GridGeometry {
    pub rows: usize,
    pub steps_per_chunk: usize,
    pub levels: usize,
}

impl GridGeometry {
    /// Tokens per time step: every row and level of one column of the grid.
    pub fn tokens_per_step(&self) -> usize {
        self.rows * self.levels
    }
}

/// Codes of every chunk through the frozen VQ-VAE (eval mode, no augmentation), batched:
/// `[N][S·Q]` in the VQ-VAE's raster order.
pub fn extract_code_sequences(
    model: &ConvVqvae,
    chunks: &[&[f32]],
    mel: &MelSpectrogram,
    batch: usize,
    device: &Device,
) -> (Vec<Vec<i64>>, (usize, usize)) {
    let mut out = Vec::with_capacity(chunks.len());
    let mut grid = (0, 0);
    for part in chunks.chunks(batch.max(1)) {
        let (codes, g) = model.codes(mel_batch(mel, part, device));
        grid = g;
        let flat = codes
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap_or_default();
        let per = flat.len() / part.len().max(1);
        out.extend(flat.chunks(per.max(1)).map(<[i64]>::to_vec));
    }
    (out, grid)
}

/// A file's chunks as one time-major token stream: for each time step, rows low to high,
/// levels in order. Consecutive chunks continue the same stream, so a window can cross a
/// chunk boundary and generation can continue a sequence.
pub fn time_major_stream(chunk_codes: &[&Vec<i64>], g: &GridGeometry) -> Vec<i64> {
    let w = g.steps_per_chunk;
    let mut out = Vec::with_capacity(chunk_codes.len() * w * g.tokens_per_step());
    for codes in chunk_codes {
        for t in 0..w {
            for h in 0..g.rows {
                let p = h * w + t;
                out.extend_from_slice(&codes[p * g.levels..(p + 1) * g.levels]);
            }
        }
    }
    out
}

/// Windows of `seq_len` tokens starting at every time step.
pub fn windows(stream: &[i64], seq_len: usize, step: usize) -> Vec<Vec<i64>> {
    if stream.len() < seq_len {
        return Vec::new();
    }
    (0..=(stream.len() - seq_len) / step)
        .map(|i| stream[i * step..i * step + seq_len].to_vec())
        .collect()
}

/// Windows of every file's time-major stream, starting every `stride` tokens.
fn streams(
    data: &Dataset,
    which: &[Chunk],
    codes: &[Vec<i64>],
    g: &GridGeometry,
    seq_len: usize,
    stride: usize,
) -> Vec<Vec<i64>> {
    let mut out = Vec::new();
    for f in 0..data.files.len() {
        let mine: Vec<&Vec<i64>> = which
            .iter()
            .zip(codes)
            .filter(|(c, _)| c.file == f)
            .map(|(_, codes)| codes)
            .collect();
        if !mine.is_empty() {
            out.extend(windows(&time_major_stream(&mine, g), seq_len, stride));
        }
    }
    out
}

pub struct PriorResult {
    pub completed: bool,
    pub best: StateDict,
    pub shape: PriorShape,
    pub outcome: StageOutcome,
    pub first_token_distribution: Vec<f64>,
    pub train_sequences: usize,
    pub val_sequences: usize,
}

/// Mean next-token cross-entropy (nats) of `prior` over `seqs`.
pub fn evaluate(
    prior: &CodePrior,
    seqs: &[Vec<i64>],
    batch: usize,
    device: &Device,
) -> anyhow::Result<f64> {
    let ce = CrossEntropyLossConfig::new().init(device);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for part in seqs.chunks(batch.max(1)) {
        let (loss, count) = batch_loss(prior, part, &ce, device, None)?;
        sum += f64::from(loss.into_scalar::<f32>()) * count as f64;
        n += count;
    }
    Ok(sum / n.max(1) as f64)
}

/// Mean next-token cross-entropy of `seqs` (teacher forcing); with `dropout_rng` the
/// training forward pass (dropout on), else the inference one.
fn batch_loss(
    prior: &CodePrior,
    seqs: &[Vec<i64>],
    ce: &burn::nn::loss::CrossEntropyLoss,
    device: &Device,
    dropout_rng: Option<&mut StdRng>,
) -> anyhow::Result<(Tensor<1>, usize)> {
    let len = seqs[0].len();
    let b = seqs.len();
    let inputs: Vec<i64> = seqs
        .iter()
        .flat_map(|s| s[..len - 1].iter().copied())
        .collect();
    let targets: Vec<i64> = seqs.iter().flat_map(|s| s[1..].iter().copied()).collect();
    let x = Tensor::<2, Int>::from_data(TensorData::new(inputs, [b, len - 1]), device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(targets, [b * (len - 1)]), device);
    let logits = match dropout_rng {
        Some(rng) => prior.forward_train(x, rng)?,
        None => prior.forward(x)?,
    };
    let k = prior.shape().codebook_size;
    Ok((
        ce.forward(logits.reshape([b * (len - 1), k]), y),
        b * (len - 1),
    ))
}

/// Signs that the prior memorises its training data: validation perplexity below the
/// threshold for the data size, or validation loss rising for several epochs while training
/// loss falls. Each is reported when it starts (and again if it stops and starts again),
/// not every epoch it lasts.
struct MemorisationWatch {
    files: usize,
    threshold: f64,
    below: bool,
    rising: usize,
}

impl MemorisationWatch {
    /// Epochs of rising validation loss (with falling training loss) that call for a warning.
    const RISING_EPOCHS: usize = 3;

    fn new(files: usize) -> Self {
        Self {
            files,
            threshold: memorisation_threshold(files),
            below: false,
            rising: 0,
        }
    }

    /// `prev`: the previous epoch's (train, validation) loss.
    fn check(
        &mut self,
        prev: Option<(f64, f64)>,
        train_loss: f64,
        val_loss: f64,
    ) -> Option<String> {
        let perplexity = perplexity(val_loss);
        self.rising = match prev {
            Some((prev_train, prev_val)) if val_loss > prev_val && train_loss < prev_train => {
                self.rising + 1
            }
            _ => 0,
        };
        let was_below = std::mem::replace(&mut self.below, perplexity < self.threshold);
        let mut signs = Vec::new();
        if self.below && !was_below {
            signs.push(format!(
                "validation perplexity {perplexity:.2} is below {:.1} for {} files: the prior may be memorising",
                self.threshold, self.files
            ));
        }
        if self.rising == Self::RISING_EPOCHS {
            signs.push(format!(
                "validation loss rose for {} epochs while training loss fell: likely overfitting",
                self.rising
            ));
        }
        (!signs.is_empty()).then(|| signs.join("; "))
    }
}

/// Perplexity of a mean cross-entropy in nats, capped (e^20) so an untrained or diverged
/// prior reports a finite number.
pub fn perplexity(nats: f64) -> f64 {
    nats.min(20.0).exp()
}

/// Perplexity below which a prior of this data size is likely memorising.
pub fn memorisation_threshold(files: usize) -> f64 {
    match files {
        0..=20 => 2.0,
        21..=100 => 3.0,
        _ => 5.0,
    }
}

#[allow(clippy::too_many_arguments)]
pub fn train(
    cfg: &PriorConfig,
    vq: &ConvVqvae,
    data: &Dataset,
    mel: &MelSpectrogram,
    seed: u64,
    device: &Device,
    reporter: &mut Reporter,
    resume: Option<StageCheckpoint>,
    hooks: &mut Hooks,
) -> anyhow::Result<PriorResult> {
    let vq_shape = vq.shape();
    let train_chunks: Vec<&[f32]> = data.train.iter().map(|c| c.samples.as_slice()).collect();
    let val_chunks: Vec<&[f32]> = data.val.iter().map(|c| c.samples.as_slice()).collect();
    let (train_codes, grid) = extract_code_sequences(vq, &train_chunks, mel, 16, device);
    let (val_codes, _) = extract_code_sequences(vq, &val_chunks, mel, 16, device);
    let g = GridGeometry {
        rows: grid.0,
        steps_per_chunk: grid.1,
        levels: vq_shape.num_quantizers,
    };
    let seq_len = grid.0 * grid.1 * vq_shape.num_quantizers;
    // Training: a window at every time step. Validation: back-to-back windows, so each
    // token is scored once (as the reference's one sequence per chunk) at a sixth of the
    // cost of scoring every overlapping window.
    let train_seqs = streams(
        data,
        &data.train,
        &train_codes,
        &g,
        seq_len,
        g.tokens_per_step(),
    );
    let val_seqs = streams(data, &data.val, &val_codes, &g, seq_len, seq_len);
    if train_seqs.is_empty() || val_seqs.is_empty() {
        anyhow::bail!("not enough audio to form prior training sequences");
    }
    let k = vq_shape.codebook_size;
    let mut first = vec![1.0f64; k]; // Laplace smoothing: every code stays possible.
    for s in &train_seqs {
        if let Some(c) = usize::try_from(s[0]).ok().filter(|&c| c < k) {
            first[c] += 1.0;
        }
    }
    let total: f64 = first.iter().sum();
    first.iter_mut().for_each(|p| *p /= total);

    let shape = PriorShape {
        codebook_size: k,
        seq_len,
        num_quantizers: vq_shape.num_quantizers,
        hidden_size: cfg.hidden_size,
        num_layers: cfg.num_layers,
        num_heads: cfg.num_heads,
        dropout: cfg.dropout,
    };
    let train_device = device.clone().autodiff();
    train_device.seed(epoch_seed(seed, 10, 0));
    let mut optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .with_epsilon(1e-8)
        .init();
    let (mut prior, start, mut best, mut history) = match resume {
        Some(ck) => {
            let prior =
                CodePrior::from_state_dict(&ck.model, cfg.num_heads, cfg.dropout, &train_device)?;
            optim = optim
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(ck.optim))
                .map_err(|e| anyhow::anyhow!("checkpoint optimiser state: {e:?}"))?;
            (
                assign_param_ids(prior, ck.param_ids),
                ck.epoch,
                ck.best,
                ck.history,
            )
        }
        None => (CodePrior::new(shape, &train_device)?, 0, None, Vec::new()),
    };
    let ce = CrossEntropyLossConfig::new().init(&train_device);
    let mut watch = MemorisationWatch::new(data.files.len());
    let mut completed = true;
    for epoch in start..cfg.max_epochs {
        if hooks.should_stop() {
            completed = false;
            break;
        }
        let started = std::time::Instant::now();
        let mut order: Vec<usize> = (0..train_seqs.len()).collect();
        train_device.seed(epoch_seed(seed, 11, epoch));
        let mut rng = StdRng::seed_from_u64(epoch_seed(seed, 12, epoch));
        order.shuffle(&mut rng);
        let lr = cosine_lr(cfg.learning_rate, epoch, cfg.max_epochs);
        let (mut loss_sum, mut steps, mut skipped) = (0.0f64, 0usize, 0usize);
        for idx in order.chunks(cfg.batch_size.max(1)) {
            if hooks.interrupted() {
                break;
            }
            let batch: Vec<Vec<i64>> = idx.iter().map(|&i| train_seqs[i].clone()).collect();
            let (loss, _) = batch_loss(&prior, &batch, &ce, &train_device, Some(&mut rng))?;
            let (updated, value) = descend(prior, loss, &mut optim, lr, cfg.gradient_clip_norm);
            prior = updated;
            let Some(value) = value else {
                skipped += 1;
                reporter.warn(&format!(
                    "prior epoch {}: non-finite loss, step skipped",
                    epoch + 1
                ));
                continue;
            };
            loss_sum += value;
            steps += 1;
        }
        if hooks.interrupted() {
            // Ctrl-C mid-epoch: drop the partial epoch; the last checkpoint stays.
            completed = false;
            break;
        }
        let train_loss = loss_sum / steps.max(1) as f64;
        let val_loss = evaluate(&prior.valid(), &val_seqs, cfg.batch_size, device)?;
        let val_perplexity = perplexity(val_loss);
        let improved = best.as_ref().is_none_or(|(b, _, _)| val_loss < *b);
        if improved {
            best = Some((val_loss, epoch + 1, prior.valid().to_state_dict()?));
        }
        let prev = history.last().map(|h| (h.train_loss, h.val_loss));
        if let Some(message) = watch.check(prev, train_loss, val_loss) {
            reporter.warn(&format!("prior epoch {}: {message}", epoch + 1));
        }
        let best_perplexity = best
            .as_ref()
            .map(|(b, _, _)| perplexity(*b))
            .unwrap_or(val_perplexity);
        let report = EpochReport {
            stage: "prior".into(),
            epoch: epoch + 1,
            epochs: cfg.max_epochs,
            train_loss,
            val_loss,
            learning_rate: lr,
            seconds: started.elapsed().as_secs_f64(),
            skipped_steps: skipped,
            extra: serde_json::json!({ "val_perplexity": val_perplexity, "best_perplexity": best_perplexity }),
            is_best: improved,
        };
        hooks.epoch_done(reporter, &mut history, report, |history| {
            StageCheckpoint::capture(
                epoch + 1,
                &prior,
                prior.to_state_dict()?,
                &optim,
                &best,
                history,
            )
        })?;
    }
    let (outcome, best_state) = StageOutcome::from_best(best, history, "prior")?;
    Ok(PriorResult {
        completed,
        best: best_state,
        shape,
        outcome,
        first_token_distribution: first,
        train_sequences: train_seqs.len(),
        val_sequences: val_seqs.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::MemorisationWatch;

    #[test]
    fn memorisation_signs_are_reported_when_they_start() {
        // 20 files: threshold perplexity 2, i.e. validation loss ln 2 ≈ 0.693.
        let mut watch = MemorisationWatch::new(20);
        let epochs = [
            (3.0, 3.0), // first epoch
            (2.5, 2.6), // improving
            (2.4, 2.7), // validation rises, training falls: 1
            (2.3, 2.8), // 2
            (2.2, 2.9), // 3: overfitting warning
            (2.1, 3.0), // 4: quiet (already reported)
            (2.0, 0.6), // perplexity 1.8 < 2: memorising warning
            (1.9, 0.5), // still below: quiet
            (1.8, 0.9), // back above the threshold... and rising again: 1
            (1.7, 0.6), // below again: warn again
        ];
        let mut prev = None;
        let warned: Vec<bool> = epochs
            .iter()
            .map(|&(train, val)| {
                let w = watch.check(prev, train, val);
                prev = Some((train, val));
                w.is_some()
            })
            .collect();
        assert_eq!(
            warned,
            [
                false, false, false, false, true, false, true, false, false, true
            ]
        );
        let mut watch = MemorisationWatch::new(500);
        let message = watch.check(None, 1.0, 1.0).unwrap_or_default();
        assert!(message.contains("below 5.0 for 500 files"), "{message}");
    }
}
