//! Stage 1: the VQ-VAE.

use std::path::{Path, PathBuf};

use audio::mel::MelSpectrogram;
use audio::vocoder::Vocoder;
use audio::wav::{WavOptions, encode_wav};
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use vqvae::{
    ConvVqvae, LevelHealth, RvqTraining, VqvaeConfig, VqvaeShape, draw_kept_levels,
    reconstruction_loss,
};
use weights::StateDict;

use super::checkpoint::StageCheckpoint;
use super::data::{Dataset, augment};
use super::events::{EpochReport, Event, StageName};
use super::optim::assign_param_ids;
use super::parts::{backward, on_threads, parts_for, replica, split_batch, step};
use super::runner::{Best, Runner, Stage, StageStart, epoch_seed};
use crate::evaluate::{floats, mel_batch, vq_eval};
use crate::fsutil::atomic_write;
use crate::modelfile::EpochMetrics;

/// Fewest chunks in a concurrent part of a batch: each part's batch norm normalises by its
/// own chunks' statistics. Parts of one chunk changed what a tiny model learned (its codes'
/// statistics); parts of two trained drums20's default codec as well as one pass (measured).
const MIN_PART_CHUNKS: usize = 2;

/// Concurrent parts per VQ-VAE batch. One pass for more than 100 files: parts normalise by
/// their own chunks' statistics, and a mixed collection's parts differ more than one kind of
/// sound's — on 741 mixed files (14 epochs, same seed) validation loss settled ~10 % higher
/// in two parts (0.41–0.44 against 0.37–0.38), for an epoch only 11 % faster.
fn vq_parts(files: usize, device: &Device) -> usize {
    if prior_config::DatasetTier::for_file_count(files) == prior_config::DatasetTier::Large {
        1
    } else {
        parts_for(device)
    }
}

/// Momentum of the batch norms' running statistics after their first updates (Burn's and
/// PyTorch's default).
const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// Momentum for the `update`-th (0-based) update of the batch norms' running statistics:
/// the plain mean of every batch so far until that would weigh a batch less than
/// [`BATCH_NORM_MOMENTUM`], then that fixed rate. The fixed rate from the start keeps part
/// of the initial mean 0 / variance 1 for ~30 updates, so validation (which normalises
/// with the running statistics) judged a model far worse than the one training had
/// reached: the reference preset on drums20 (one step per epoch) kept its validation loss
/// at 6.3 for 30 epochs while the training loss halved; now 3.5 after 9 epochs, and
/// native drums20 starts at 2.2 instead of 4.3. Training itself is unchanged.
fn batch_norm_momentum(update: usize) -> f64 {
    (1.0 / (update + 1) as f64).max(BATCH_NORM_MOMENTUM)
}

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
            // One decimal: 19 of 64 codes (29.7 %) rounded to "30%" read as no reason to warn.
            .map(|&q| format!("level {q} {:.1}%", health[q].utilization * 100.0))
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

/// Reconstruction previews of the first validation chunks after `epoch`: mel PNG
/// (original beside reconstruction) and the reconstruction vocoded to WAV, in
/// `<dir>/previews/`; the original chunks are written once as WAV for comparison.
fn write_previews(
    model: &ConvVqvae,
    val: &[&[f32]],
    mel: &MelSpectrogram,
    device: &Device,
    dir: &Path,
    epoch: usize,
) -> anyhow::Result<Vec<PathBuf>> {
    let picks = &val[..val.len().min(PREVIEW_CHUNKS)];
    let mut files = Vec::new();
    if picks.is_empty() {
        return Ok(files);
    }
    let dir = dir.join("previews");
    std::fs::create_dir_all(&dir)?;
    let x = mel_batch(mel, picks, device);
    let [_, _, n_mels, frames] = x.dims();
    let recon = floats(model.forward(x.clone()).recon, "reconstruction")?;
    let orig = floats(x, "mel")?;
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
        files.extend([
            stem.with_extension("png"),
            stem.with_extension("wav"),
            original,
        ]);
    }
    Ok(files)
}

/// Stage 1: the VQ-VAE, its optimiser and what its epochs need.
pub struct VqStage<'a> {
    cfg: &'a VqvaeConfig,
    data: &'a Dataset,
    mel: &'a MelSpectrogram,
    seed: u64,
    /// Inference device (validation, previews).
    device: &'a Device,
    train_device: Device,
    /// `None` only while an optimiser step owns it.
    model: Option<ConvVqvae>,
    optim: ModuleOptimizer,
    rvq: RvqTraining,
    low_use: LowUtilisation,
    /// Codebook health of the last validation.
    health: Vec<LevelHealth>,
    /// Concurrent parts per batch (`train::parts`).
    parts: usize,
}

impl<'a> VqStage<'a> {
    /// A new model, or the state of a checkpoint.
    pub fn new(
        cfg: &'a VqvaeConfig,
        data: &'a Dataset,
        mel: &'a MelSpectrogram,
        seed: u64,
        device: &'a Device,
        resume: Option<StageCheckpoint>,
    ) -> anyhow::Result<(Self, StageStart)> {
        let train_device = device.clone().autodiff();
        train_device.seed(seed);
        let optim = AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .with_epsilon(1e-8)
            .init();
        let (model, optim, start) = match resume {
            Some(ck) => {
                let model = ConvVqvae::from_state_dict_with(
                    &ck.model,
                    cfg.arch(),
                    cfg.dropout,
                    &train_device,
                )?;
                let optim = optim
                    .from_bytes(burn::tensor::Bytes::from_bytes_vec(ck.optim))
                    .map_err(|e| anyhow::anyhow!("checkpoint optimiser state: {e:?}"))?;
                let start = StageStart {
                    epoch: ck.epoch,
                    best: ck.best,
                    history: ck.history,
                };
                (assign_param_ids(model, ck.param_ids), optim, start)
            }
            None => (
                ConvVqvae::with_arch(VqvaeShape::from(cfg), cfg.arch(), &train_device)?,
                optim,
                StageStart::fresh(),
            ),
        };
        let rvq = RvqTraining {
            decay: cfg.decay as f32,
            commitment_weight: cfg.commitment_weight as f32,
            dead_code_threshold: cfg.threshold_ema_dead_code as f32,
            kmeans_iters: cfg.kmeans_iters,
            restart: cfg.code_restart,
        };
        let stage = Self {
            cfg,
            data,
            mel,
            seed,
            device,
            train_device,
            model: Some(model),
            optim,
            rvq,
            low_use: LowUtilisation::default(),
            health: Vec::new(),
            parts: vq_parts(data.files.len(), device),
        };
        Ok((stage, start))
    }

    fn val_chunks(&self) -> Vec<&'a [f32]> {
        self.data.val.iter().map(|c| c.samples.as_slice()).collect()
    }

    /// One optimiser step on a batch of (augmented) chunks, cut into parts that run
    /// concurrently (`train::parts`): each part encodes, and later decodes, on its own
    /// thread; in between the quantiser assigns the whole batch at once, so its codebooks
    /// learn from every chunk as in a single pass.
    fn step(
        &mut self,
        mut model: ConvVqvae,
        chunks: &[Vec<f32>],
        lr: f64,
        rng: &mut StdRng,
    ) -> anyhow::Result<(ConvVqvae, Option<f64>)> {
        let (mel, device) = (self.mel, &self.train_device);
        let jobs: Vec<_> = split_batch(chunks, self.parts, MIN_PART_CHUNKS, rng)
            .into_iter()
            .map(|(part, part_rng)| (replica(&model), part, part_rng))
            .collect();
        let encoded = on_threads(jobs, |(part_model, part, mut part_rng)| {
            let refs: Vec<&[f32]> = part.iter().map(Vec::as_slice).collect();
            let x = mel_batch(mel, &refs, device);
            let z = part_model.encode_train(x.clone(), &mut part_rng);
            let (rows, grid) = ConvVqvae::flatten(z);
            let host = floats(rows.clone().detach(), "encoder output")?;
            anyhow::Ok((part_model, x, rows, grid, host, part_rng))
        })
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
        let dim = encoded.first().map_or(1, |e| e.2.dims()[1]);
        let host: Vec<f32> = encoded.iter().flat_map(|e| e.4.iter().copied()).collect();
        let mut assignment = model
            .quantizer
            .assign_train(&host, dim, &self.rvq, rng, device);
        if self.cfg.quantizer_dropout > 0.0 {
            // Parts keep the batch's chunk order, so the rows are chunk-major.
            let kept = draw_kept_levels(
                chunks.len(),
                self.cfg.num_quantizers,
                self.cfg.quantizer_dropout,
                rng,
            );
            assignment.keep_levels(&kept)?;
        }
        let mut offset = 0;
        let jobs: Vec<_> = encoded
            .into_iter()
            .map(|(part_model, x, rows, grid, _, part_rng)| {
                let range = offset..offset + rows.dims()[0];
                offset = range.end;
                (part_model, x, rows, grid, part_rng, range)
            })
            .collect();
        let (total, weight) = (chunks.len() as f32, self.cfg.log_power_weight as f32);
        let grads = on_threads(jobs, |(part_model, x, rows, grid, mut part_rng, range)| {
            let [b, _, n_mels, frames] = x.dims();
            let q = assignment.output(rows, range);
            let recon = part_model.decode_train(
                ConvVqvae::unflatten(q.quantized, grid),
                (n_mels, frames),
                &mut part_rng,
            );
            // The commitment weight is applied once, inside the quantiser; both terms are
            // weighted by the part's share so the parts add up to the batch's loss.
            let loss =
                reconstruction_loss(recon, x, weight).mul_scalar(b as f32 / total) + q.commit_loss;
            backward(&part_model, loss)
        });
        Ok(step(
            model,
            grads,
            &mut self.optim,
            lr,
            self.cfg.gradient_clip_norm,
        ))
    }

    fn model(&self) -> anyhow::Result<&ConvVqvae> {
        self.model
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the VQ-VAE was lost in a failed step"))
    }
}

impl Stage for VqStage<'_> {
    const NAME: StageName = StageName::Vqvae;

    fn epochs(&self) -> usize {
        self.cfg.max_epochs
    }

    fn base_lr(&self) -> f64 {
        self.cfg.learning_rate
    }

    fn train_epoch(
        &mut self,
        epoch: usize,
        lr: f64,
        run: &mut Runner,
    ) -> anyhow::Result<Option<(f64, usize)>> {
        // A fresh order per epoch from the epoch's seed, so a resumed run replays it.
        let mut order: Vec<usize> = (0..self.data.train.len()).collect();
        self.train_device.seed(epoch_seed(self.seed, 1, epoch));
        let mut rng = StdRng::seed_from_u64(epoch_seed(self.seed, 2, epoch));
        order.shuffle(&mut rng);
        let (mut loss_sum, mut steps, mut skipped) = (0.0f64, 0usize, 0usize);
        let batch = self.cfg.batch_size.max(1);
        // Every epoch has the same number of steps, so a resumed run continues the schedule.
        let first_update = epoch * order.len().div_ceil(batch);
        for (i, idx) in order.chunks(batch).enumerate() {
            if run.cancelled() {
                return Ok(None);
            }
            let augmented: Vec<Vec<f32>> = idx
                .iter()
                .map(|&i| {
                    augment(
                        &self.data.train[i].samples,
                        &mut rng,
                        self.cfg.normalization,
                    )
                })
                .collect();
            let mut model = self
                .model
                .take()
                .ok_or_else(|| anyhow::anyhow!("the VQ-VAE was lost in a failed step"))?;
            model.set_batch_norm_momentum(batch_norm_momentum(first_update + i));
            let (updated, value) = self.step(model, &augmented, lr, &mut rng)?;
            self.model = Some(updated);
            let Some(value) = value else {
                skipped += 1;
                run.warn(format!(
                    "VQ-VAE epoch {}: non-finite loss, step skipped",
                    epoch + 1
                ));
                continue;
            };
            loss_sum += value;
            steps += 1;
        }
        if run.cancelled() {
            // Cancelled during the last step: drop the partial epoch.
            return Ok(None);
        }
        Ok(Some((loss_sum / steps.max(1) as f64, skipped)))
    }

    fn validate(&mut self, epoch: usize, run: &mut Runner) -> anyhow::Result<f64> {
        let val = self.val_chunks();
        let model = self.model()?.valid();
        let eval = vq_eval(
            &model,
            &val,
            self.mel,
            self.cfg.batch_size,
            self.cfg.log_power_weight,
            self.device,
        )?;
        self.health = eval.health;
        if run.preview_due(epoch + 1) {
            match write_previews(
                &model,
                &val,
                self.mel,
                self.device,
                run.report_dir,
                epoch + 1,
            ) {
                Ok(files) if !files.is_empty() => run.emit(Event::Preview {
                    epoch: epoch + 1,
                    files,
                }),
                Ok(_) => {}
                Err(e) => run.warn(format!("could not write previews: {e:#}")),
            }
        }
        Ok(eval.loss)
    }

    fn weights(&self) -> anyhow::Result<StateDict> {
        Ok(self.model()?.valid().to_state_dict()?)
    }

    fn metrics(
        &mut self,
        epoch: usize,
        _train_loss: f64,
        _val_loss: f64,
        _best_val_loss: f64,
        _previous: Option<&EpochReport>,
        run: &mut Runner,
    ) -> EpochMetrics {
        if epoch > 0
            && let Some(message) = self.low_use.check(&self.health)
        {
            run.warn(format!("VQ-VAE epoch {}: {message}", epoch + 1));
        }
        EpochMetrics {
            codebook_health: Some(self.health.clone()),
            ..EpochMetrics::default()
        }
    }

    fn capture(
        &self,
        epoch: usize,
        best: &Best,
        history: &[EpochReport],
    ) -> anyhow::Result<StageCheckpoint> {
        let model = self.model()?;
        StageCheckpoint::capture(
            epoch,
            model,
            model.to_state_dict()?,
            &self.optim,
            best,
            history,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_collections_train_the_vq_vae_in_one_pass() {
        let cpu = Device::flex().autodiff();
        assert_eq!(vq_parts(20, &cpu), crate::train::parts::HOST_PARTS);
        assert_eq!(vq_parts(100, &cpu), crate::train::parts::HOST_PARTS);
        assert_eq!(vq_parts(101, &cpu), 1);
    }

    #[test]
    fn batch_norm_statistics_average_the_first_batches_then_follow_the_fixed_rate() {
        let rates: Vec<f64> = (0..12).map(batch_norm_momentum).collect();
        assert_eq!(
            rates[0], 1.0,
            "the first batch replaces the initial statistics"
        );
        assert_eq!(rates[3], 0.25);
        assert_eq!(&rates[9..], &[BATCH_NORM_MOMENTUM; 3]);
        assert_eq!(batch_norm_momentum(10_000), BATCH_NORM_MOMENTUM);
        // A running mean under this schedule is the plain mean of the first batches.
        let batches = [4.0, 1.0, 7.0, 2.0];
        let mean = batches
            .iter()
            .enumerate()
            .fold(0.0, |m, (i, &x)| m + (x - m) * batch_norm_momentum(i));
        assert!((mean - 3.5f64).abs() < 1e-12, "{mean}");
    }

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
        let message = low.check(&health(&[19.0 / 64.0, 0.5])).unwrap_or_default();
        assert!(message.contains("below 30%: level 0 29.7%"), "{message}");
    }
}
