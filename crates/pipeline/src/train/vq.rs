//! Stage 1: the VQ-VAE.

use audio::mel::MelSpectrogram;
use audio::vocoder::Vocoder;
use audio::wav::{WavOptions, encode_wav};
use burn::optim::AdamWConfig;
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use vqvae::{
    ConvVqvae, LevelHealth, RvqTraining, VqvaeConfig, VqvaeShape, codebook_health,
    multi_scale_mel_loss,
};
use weights::StateDict;

use super::checkpoint::StageCheckpoint;
use super::data::{Dataset, augment, mel_batch};
use super::optim::{assign_param_ids, cosine_lr, descend};
use super::{EpochReport, Hooks, Reporter, StageOutcome, epoch_seed};
use crate::fsutil::atomic_write;

/// Validation chunks shown in reconstruction previews.
const PREVIEW_CHUNKS: usize = 2;

/// Codebook utilisation below which a level is reported as collapsing.
const LOW_UTILISATION: f64 = 0.30;

/// Decides when low codebook utilisation is worth a warning: when a level first drops below
/// the threshold (or drops again after recovering), not again every epoch, since the epoch
/// line shows every level's utilisation anyway.
#[derive(Default)]
struct LowUtilisation {
    warned: Vec<usize>,
}

impl LowUtilisation {
    fn check(&mut self, health: &[LevelHealth]) -> Option<String> {
        let low: Vec<usize> = (0..health.len())
            .filter(|&q| health[q].utilization < LOW_UTILISATION)
            .collect();
        let newly_low = low.iter().any(|q| !self.warned.contains(q));
        let levels: Vec<String> = low
            .iter()
            .map(|&q| format!("level {q} {:.0}%", health[q].utilization * 100.0))
            .collect();
        self.warned = low;
        newly_low.then(|| {
            format!(
                "codebook utilisation below {:.0}%: {} (repeated only when another level drops below it)",
                LOW_UTILISATION * 100.0,
                levels.join(", ")
            )
        })
    }
}

pub struct VqResult {
    /// False when the run was stopped early (the checkpoint holds its state).
    pub completed: bool,
    pub best: StateDict,
    pub outcome: StageOutcome,
}

/// Validation loss and codebook health of `model` (eval mode) on `chunks`.
pub fn evaluate(
    model: &ConvVqvae,
    chunks: &[&[f32]],
    mel: &MelSpectrogram,
    batch: usize,
    device: &Device,
) -> (f64, Vec<LevelHealth>, Vec<i64>) {
    let shape = model.shape();
    let (mut loss_sum, mut n) = (0.0f64, 0usize);
    let mut codes = Vec::new();
    for part in chunks.chunks(batch.max(1)) {
        let x = mel_batch(mel, part, device);
        let out = model.forward(x.clone());
        let l = multi_scale_mel_loss(out.recon, x).into_scalar::<f32>();
        loss_sum += f64::from(l) * part.len() as f64;
        n += part.len();
        codes.extend(
            out.indices
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .unwrap_or_default(),
        );
    }
    let health = codebook_health(&codes, shape.num_quantizers, shape.codebook_size);
    (loss_sum / n.max(1) as f64, health, codes)
}

/// Reconstruction previews of the first validation chunks after `epoch`: mel PNG
/// (original beside reconstruction) and the reconstruction vocoded to WAV, in
/// `<dir>/previews/`; the original chunks are written once as WAV for comparison.
fn write_previews(
    model: &ConvVqvae,
    val: &[&[f32]],
    mel: &MelSpectrogram,
    device: &Device,
    dir: &std::path::Path,
    epoch: usize,
) -> anyhow::Result<()> {
    let picks = &val[..val.len().min(PREVIEW_CHUNKS)];
    if picks.is_empty() {
        return Ok(());
    }
    let dir = dir.join("previews");
    std::fs::create_dir_all(&dir)?;
    let x = mel_batch(mel, picks, device);
    let [_, _, n_mels, frames] = x.dims();
    let host = |t: Tensor<4>| -> anyhow::Result<Vec<f32>> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading mel: {e:?}"))
    };
    let recon = host(model.forward(x.clone()).recon)?;
    let orig = host(x)?;
    let vocoder = Vocoder::new(mel.config.clone());
    let wav_opts = WavOptions::default();
    let size = n_mels * frames;
    for (i, chunk) in picks.iter().enumerate() {
        let (o, r) = (
            &orig[i * size..(i + 1) * size],
            &recon[i * size..(i + 1) * size],
        );
        let stem = dir.join(format!("vqvae_epoch{epoch:03}_chunk{i}"));
        crate::report::mel_panels(
            &stem.with_extension("png"),
            &[
                ("original", o),
                (&format!("reconstruction, epoch {epoch}"), r),
            ],
            n_mels,
        )?;
        let audio = vocoder.synthesize(r, frames, Some(chunk.len()));
        atomic_write(&stem.with_extension("wav"), &encode_wav(&audio, &wav_opts)?)?;
        let original = dir.join(format!("original_chunk{i}.wav"));
        if !original.exists() {
            atomic_write(&original, &encode_wav(chunk, &wav_opts)?)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn train(
    cfg: &VqvaeConfig,
    data: &Dataset,
    mel: &MelSpectrogram,
    seed: u64,
    device: &Device,
    reporter: &mut Reporter,
    resume: Option<StageCheckpoint>,
    hooks: &mut Hooks,
) -> anyhow::Result<VqResult> {
    let train_device = device.clone().autodiff();
    train_device.seed(seed);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .with_epsilon(1e-8)
        .init();
    let (mut model, start, mut best, mut history) = match resume {
        Some(ck) => {
            let model = ConvVqvae::from_state_dict(&ck.model, cfg.dropout, &train_device)?;
            optim = optim
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(ck.optim))
                .map_err(|e| anyhow::anyhow!("checkpoint optimiser state: {e:?}"))?;
            (
                assign_param_ids(model, ck.param_ids),
                ck.epoch,
                ck.best,
                ck.history,
            )
        }
        None => (
            ConvVqvae::new(VqvaeShape::from(cfg), &train_device)?,
            0,
            None,
            Vec::new(),
        ),
    };
    let rvq = RvqTraining {
        decay: cfg.decay as f32,
        commitment_weight: cfg.commitment_weight as f32,
        dead_code_threshold: cfg.threshold_ema_dead_code as f32,
        kmeans_iters: cfg.kmeans_iters,
    };
    let val: Vec<&[f32]> = data.val.iter().map(|c| c.samples.as_slice()).collect();
    let mut completed = true;
    let mut low_use = LowUtilisation::default();
    for epoch in start..cfg.max_epochs {
        if hooks.should_stop() {
            completed = false;
            break;
        }
        let started = std::time::Instant::now();
        // A fresh order per epoch from the epoch's seed, so a resumed run replays it.
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        train_device.seed(epoch_seed(seed, 1, epoch));
        let mut rng = StdRng::seed_from_u64(epoch_seed(seed, 2, epoch));
        order.shuffle(&mut rng);
        let lr = cosine_lr(cfg.learning_rate, epoch, cfg.max_epochs);
        let (mut loss_sum, mut steps, mut skipped) = (0.0f64, 0usize, 0usize);
        for idx in order.chunks(cfg.batch_size.max(1)) {
            if hooks.interrupted() {
                break;
            }
            let augmented: Vec<Vec<f32>> = idx
                .iter()
                .map(|&i| augment(&data.train[i].samples, &mut rng))
                .collect();
            let refs: Vec<&[f32]> = augmented.iter().map(Vec::as_slice).collect();
            let x = mel_batch(mel, &refs, &train_device);
            let out = model.forward_train(x.clone(), &rvq, &mut rng);
            // The commitment weight is applied once, inside the quantiser.
            let loss = multi_scale_mel_loss(out.recon, x) + out.commit_loss;
            let (updated, value) = descend(model, loss, &mut optim, lr, cfg.gradient_clip_norm);
            model = updated;
            let Some(value) = value else {
                skipped += 1;
                reporter.warn(&format!(
                    "VQ-VAE epoch {}: non-finite loss, step skipped",
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
        let (val_loss, health, _) = evaluate(&model.valid(), &val, mel, cfg.batch_size, device);
        if hooks.preview_due(epoch + 1, cfg.max_epochs)
            && let Err(e) = write_previews(
                &model.valid(),
                &val,
                mel,
                device,
                hooks.report_dir,
                epoch + 1,
            )
        {
            reporter.warn(&format!("could not write previews: {e:#}"));
        }
        let train_loss = loss_sum / steps.max(1) as f64;
        let improved = best.as_ref().is_none_or(|(b, _, _)| val_loss < *b);
        if improved {
            best = Some((val_loss, epoch + 1, model.valid().to_state_dict()?));
        }
        if epoch > 0
            && let Some(message) = low_use.check(&health)
        {
            reporter.warn(&format!("VQ-VAE epoch {}: {message}", epoch + 1));
        }
        let report = EpochReport {
            stage: "vqvae".into(),
            epoch: epoch + 1,
            epochs: cfg.max_epochs,
            train_loss,
            val_loss,
            learning_rate: lr,
            seconds: started.elapsed().as_secs_f64(),
            skipped_steps: skipped,
            extra: serde_json::json!({ "codebook_health": health }),
            is_best: improved,
        };
        hooks.epoch_done(reporter, &mut history, report, |history| {
            StageCheckpoint::capture(
                epoch + 1,
                &model,
                model.to_state_dict()?,
                &optim,
                &best,
                history,
            )
        })?;
    }
    let (outcome, best_state) = StageOutcome::from_best(best, history, "VQ-VAE")?;
    Ok(VqResult {
        completed,
        best: best_state,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(uses: &[f64]) -> Vec<LevelHealth> {
        uses.iter()
            .map(|&utilization| LevelHealth {
                utilization,
                perplexity: 1.0,
                dead_codes: 0,
            })
            .collect()
    }

    #[test]
    fn low_utilisation_warns_when_a_level_drops_not_every_epoch() {
        let mut low = LowUtilisation::default();
        let warned: Vec<bool> = [
            [0.5, 0.5, 0.5],  // all fine
            [0.5, 0.1, 0.5],  // level 1 drops: warn
            [0.5, 0.12, 0.5], // still low: quiet
            [0.5, 0.1, 0.2],  // level 2 drops too: warn
            [0.5, 0.1, 0.25], // same levels: quiet
            [0.5, 0.4, 0.25], // level 1 recovers: quiet
            [0.5, 0.2, 0.25], // level 1 drops again: warn
        ]
        .iter()
        .map(|uses| low.check(&health(uses)).is_some())
        .collect();
        assert_eq!(warned, [false, true, false, true, false, false, true]);
        let mut low = LowUtilisation::default();
        let message = low.check(&health(&[0.05, 0.5])).unwrap_or_default();
        assert!(message.contains("below 30%: level 0 5%"), "{message}");
    }
}
