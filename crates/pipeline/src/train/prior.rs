//! Stage 2: the prior, trained on codes of the frozen VQ-VAE in time-major order.

use std::ops::Range;

use audio::chunk::{CHUNK_SAMPLES, audio_in_chunk};
use audio::mel::MelSpectrogram;
use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;
use prior_config::PriorConfig;
use prior_model::{CodePrior, PriorShape, TokenOrder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vqvae::ConvVqvae;
use weights::StateDict;

use super::average::WeightAverage;
use super::checkpoint::StageCheckpoint;
use super::data::{Chunk, Dataset, play_at_speed};
use super::events::{EpochReport, StageName};
use super::optim::assign_param_ids;
use super::parts::{descend_parts, parts_for, split_batch};
use super::runner::{Best, Runner, Stage, StageStart, epoch_seed};
use crate::evaluate::{
    code_grids, perplexity, prior_cross_entropy, prior_sequences, prior_sequences_by_file,
};
use crate::modelfile::EpochMetrics;

/// The token order of priors trained here.
pub const ORDER: TokenOrder = TokenOrder::TimeMajor;

/// Chunks batched through the frozen VQ-VAE when extracting codes.
const CODE_BATCH: usize = 16;

/// Most validation windows scored per epoch.
const MAX_VAL_WINDOWS: usize = 256;

/// At most `max` of `items`, evenly spread over them (all when there are fewer).
fn spread<T>(items: Vec<T>, max: usize) -> Vec<T> {
    let n = items.len();
    if n <= max {
        return items;
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i * max / n != (i + 1) * max / n)
        .map(|(_, t)| t)
        .collect()
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

/// Perplexity below which a prior of this data size is likely memorising.
pub fn memorisation_threshold(files: usize) -> f64 {
    match files {
        0..=20 => 2.0,
        21..=100 => 3.0,
        _ => 5.0,
    }
}

/// Stage 2: the prior over the frozen VQ-VAE's codes.
pub struct PriorStage<'a> {
    cfg: &'a PriorConfig,
    seed: u64,
    train_device: Device,
    /// `None` only while an optimiser step owns it.
    prior: Option<CodePrior>,
    optim: ModuleOptimizer,
    pub shape: PriorShape,
    /// Every training window (one per time step of each file's stream).
    train_seqs: Vec<Vec<i64>>,
    /// Each training file's windows in `train_seqs`.
    train_files: Vec<Range<usize>>,
    /// Windows drawn per epoch: as many as the training data has chunks, so each training
    /// token is seen about once per epoch whatever the collection's size (every window at
    /// every time step would be steps-per-chunk times the data per epoch).
    epoch_windows: usize,
    val_seqs: Vec<Vec<i64>>,
    /// How often each code opens a training window (Laplace-smoothed): generation draws
    /// its first token from it.
    pub first_token_distribution: Vec<f64>,
    watch: MemorisationWatch,
    /// Concurrent parts per batch (see `descend_parts`).
    parts: usize,
    /// The average of the weights over the steps (`weight_average` in the configuration),
    /// validated and kept instead of the weights themselves.
    average: Option<WeightAverage>,
    /// Where the averaged weights are validated (the training device without autodiff).
    device: Device,
}

impl<'a> PriorStage<'a> {
    /// Extracts the codes of every chunk, cuts the training and validation sequences and
    /// builds the prior (new, or from a checkpoint).
    pub fn new(
        cfg: &'a PriorConfig,
        vq: &ConvVqvae,
        data: &Dataset,
        mel: &MelSpectrogram,
        seed: u64,
        device: &Device,
        resume: Option<StageCheckpoint>,
    ) -> anyhow::Result<(Self, StageStart)> {
        let vq_shape = vq.shape();
        let train_chunks: Vec<&[f32]> = data.train.iter().map(|c| c.samples.as_slice()).collect();
        let val_chunks: Vec<&[f32]> = data.val.iter().map(|c| c.samples.as_slice()).collect();
        let (train_codes, grid) = code_grids(vq, &train_chunks, mel, CODE_BATCH, device)?;
        let (val_codes, _) = code_grids(vq, &val_chunks, mel, CODE_BATCH, device)?;
        let seq_len = grid.len();
        let files =
            |which: &[super::data::Chunk]| -> Vec<usize> { which.iter().map(|c| c.file).collect() };
        let audio = |which: &[super::data::Chunk]| -> Option<Vec<usize>> {
            cfg.trim_padding
                .then(|| which.iter().map(|c| c.audio).collect())
        };
        let (val_audio, val_files) = (audio(&data.val), files(&data.val));
        // Speed copies join the training data as files of their own (ids past the
        // collection's), so no window mixes a file with its copy.
        let extra = speed_copies(&data.train, &cfg.augment_speeds, data.files.len());
        let extra_refs: Vec<&[f32]> = extra.iter().map(|c| c.samples.as_slice()).collect();
        let (extra_codes, _) = if extra.is_empty() {
            (Vec::new(), grid)
        } else {
            code_grids(vq, &extra_refs, mel, CODE_BATCH, device)?
        };
        // Which file each training chunk belongs to and how much of it is audio (no samples).
        let all_train: Vec<Chunk> = data
            .train
            .iter()
            .chain(extra.iter())
            .map(|c| Chunk {
                file: c.file,
                samples: Vec::new(),
                audio: c.audio,
            })
            .collect();
        let all_codes: Vec<Vec<i64>> = train_codes.iter().cloned().chain(extra_codes).collect();
        let train_audio = audio(&all_train);
        // Training draws from the windows at every time step. Validation: back-to-back
        // windows, so each token is scored once (as the reference's one sequence per chunk),
        // at most MAX_VAL_WINDOWS of them spread evenly (the same ones every epoch).
        let by_file = prior_sequences_by_file(
            ORDER,
            &files(&all_train),
            &all_codes,
            grid,
            seq_len,
            grid.tokens_per_step(),
            train_audio.as_deref(),
        )?;
        let mut train_files = Vec::with_capacity(by_file.len());
        let mut train_seqs = Vec::new();
        for group in by_file {
            let start = train_seqs.len();
            train_seqs.extend(group);
            train_files.push(start..train_seqs.len());
        }
        let val_seqs = spread(
            prior_sequences(
                ORDER,
                &val_files,
                &val_codes,
                grid,
                seq_len,
                seq_len,
                val_audio.as_deref(),
            )?,
            MAX_VAL_WINDOWS,
        );
        if train_seqs.is_empty() || val_seqs.is_empty() {
            anyhow::bail!("not enough audio to form prior training sequences");
        }
        let k = vq_shape.codebook_size;
        // The tokens that open each training file: a generated sound starts the way the
        // collection's sounds start (an attack for one-shots), not mid-file — a sound
        // begun in a decay tail is normalised up to full level, unlike anything real.
        let openings: Vec<i64> = data
            .train
            .iter()
            .zip(&train_codes)
            .enumerate()
            .filter(|(i, (chunk, _))| *i == 0 || data.train[i - 1].file != chunk.file)
            .filter_map(|(_, (_, grid))| grid.first().copied())
            .collect();
        let first_token_distribution = first_tokens(&openings, k);
        let shape = PriorShape {
            codebook_size: k,
            seq_len,
            num_quantizers: vq_shape.num_quantizers,
            hidden_size: cfg.hidden_size,
            num_layers: cfg.num_layers,
            num_heads: cfg.num_heads,
            dropout: cfg.dropout,
            rows: if cfg.row_embedding { grid.rows } else { 0 },
        };
        let train_device = device.clone().autodiff();
        train_device.seed(epoch_seed(seed, 10, 0));
        let optim = AdamWConfig::new()
            .with_weight_decay(cfg.weight_decay as f32)
            .with_epsilon(1e-8)
            .init();
        let mut average = None;
        let (prior, optim, start) = match resume {
            Some(mut ck) => {
                if let Some(decay) = cfg.weight_average.filter(|&d| d > 0.0) {
                    average = WeightAverage::take(decay, &mut ck.model)?;
                }
                let prior = CodePrior::from_state_dict(
                    &ck.model,
                    cfg.num_heads,
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
                (assign_param_ids(prior, ck.param_ids), optim, start)
            }
            None => (
                CodePrior::new(shape, &train_device)?,
                optim,
                StageStart::fresh(),
            ),
        };
        let average = match (cfg.weight_average.filter(|&d| d > 0.0), average) {
            (Some(decay), None) => Some(WeightAverage::new(decay)),
            (_, kept) => kept,
        };
        let stage = Self {
            cfg,
            seed,
            train_device,
            prior: Some(prior),
            optim,
            shape,
            epoch_windows: data.train.len().max(1),
            train_seqs,
            train_files,
            val_seqs,
            first_token_distribution,
            watch: MemorisationWatch::new(data.files.len()),
            parts: parts_for(device),
            average,
            device: device.clone(),
        };
        Ok((stage, start))
    }

    /// Training windows per epoch and validation windows.
    pub fn sequences(&self) -> (usize, usize) {
        (self.epoch_windows, self.val_seqs.len())
    }

    fn prior(&self) -> anyhow::Result<&CodePrior> {
        self.prior
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the prior was lost in a failed step"))
    }
}

/// Copies of each file of `chunks` (its chunks back to back) played at each speed, re-cut
/// into chunks at the same level (no new normalisation); copy `k` gets the file id
/// `file + (k+1)·files`.
fn speed_copies(chunks: &[Chunk], speeds: &[f64], files: usize) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < chunks.len() {
        let file = chunks[start].file;
        let end = start
            + chunks[start..]
                .iter()
                .take_while(|c| c.file == file)
                .count();
        let x: Vec<f32> = chunks[start..end]
            .iter()
            .flat_map(|c| c.samples[..c.audio.min(c.samples.len())].iter().copied())
            .collect();
        for (k, &f) in speeds.iter().enumerate() {
            let y = play_at_speed(&x, f as f32);
            for (j, piece) in y.chunks(CHUNK_SAMPLES).enumerate() {
                let mut samples = piece.to_vec();
                samples.resize(CHUNK_SAMPLES, 0.0);
                out.push(Chunk {
                    file: file + (k + 1) * files,
                    samples,
                    audio: audio_in_chunk(y.len(), CHUNK_SAMPLES, j),
                });
            }
        }
        start = end;
    }
    out
}

/// An epoch's training windows: `count` indices into the windows that `files` lists (each
/// file's range, back to back from 0), drawn with replacement. With `balance`, a file is
/// drawn first, every file alike, then one of its windows; without, every window alike.
fn draw_windows(
    files: &[Range<usize>],
    count: usize,
    balance: bool,
    rng: &mut StdRng,
) -> Vec<usize> {
    let total = files.last().map_or(0, |r| r.end);
    if total == 0 {
        return Vec::new();
    }
    (0..count)
        .map(|_| {
            if balance {
                let file = files[rng.random_range(0..files.len())].clone();
                rng.random_range(file)
            } else {
                rng.random_range(0..total)
            }
        })
        .collect()
}

/// Pseudo-count of every code in the first-token distribution: enough that no code is
/// impossible, small enough that the codes that really open a sound dominate (a count of
/// 1 per code drowned the ~20 real openings of a small collection in uniform noise).
const FIRST_TOKEN_SMOOTHING: f64 = 0.01;

/// The distribution of opening tokens, counted with additive smoothing and normalised.
fn first_tokens(openings: &[i64], k: usize) -> Vec<f64> {
    let mut first = vec![FIRST_TOKEN_SMOOTHING; k];
    for &c in openings {
        if let Some(c) = usize::try_from(c).ok().filter(|&c| c < k) {
            first[c] += 1.0;
        }
    }
    let total: f64 = first.iter().sum();
    first.iter_mut().for_each(|p| *p /= total);
    first
}

impl Stage for PriorStage<'_> {
    const NAME: StageName = StageName::Prior;

    fn epochs(&self) -> usize {
        self.cfg.max_epochs
    }

    fn base_lr(&self) -> f64 {
        self.cfg.learning_rate
    }

    fn patience(&self) -> Option<usize> {
        self.cfg.patience.filter(|&p| p > 0)
    }

    fn train_epoch(
        &mut self,
        epoch: usize,
        lr: f64,
        run: &mut Runner,
    ) -> anyhow::Result<Option<(f64, usize)>> {
        self.train_device.seed(epoch_seed(self.seed, 11, epoch));
        let mut rng = StdRng::seed_from_u64(epoch_seed(self.seed, 12, epoch));
        let order = draw_windows(
            &self.train_files,
            self.epoch_windows,
            self.cfg.balance_files,
            &mut rng,
        );
        let (mut loss_sum, mut steps, mut skipped) = (0.0f64, 0usize, 0usize);
        for idx in order.chunks(self.cfg.batch_size.max(1)) {
            if run.cancelled() {
                return Ok(None);
            }
            let batch: Vec<Vec<i64>> = idx.iter().map(|&i| self.train_seqs[i].clone()).collect();
            let prior = self
                .prior
                .take()
                .ok_or_else(|| anyhow::anyhow!("the prior was lost in a failed step"))?;
            let parts = split_batch(&batch, self.parts, 1, &mut rng);
            let n = batch.len() as f32;
            let (updated, value) = descend_parts(
                prior,
                parts,
                |p: &CodePrior, (seqs, mut rng): (&[Vec<i64>], StdRng)| {
                    let (loss, _) = p.next_token_loss(seqs, Some(&mut rng))?;
                    Ok(loss.mul_scalar(seqs.len() as f32 / n))
                },
                &mut self.optim,
                lr,
                self.cfg.gradient_clip_norm,
            )?;
            self.prior = Some(updated);
            let Some(value) = value else {
                skipped += 1;
                run.warn(format!(
                    "prior epoch {}: non-finite loss, step skipped",
                    epoch + 1
                ));
                continue;
            };
            if self.average.is_some() {
                let now = self.prior()?.valid().to_state_dict()?;
                if let Some(avg) = self.average.as_mut() {
                    avg.update(&now)?;
                }
            }
            loss_sum += value;
            steps += 1;
        }
        if run.cancelled() {
            return Ok(None);
        }
        Ok(Some((loss_sum / steps.max(1) as f64, skipped)))
    }

    fn validate(&mut self, _epoch: usize, _run: &mut Runner) -> anyhow::Result<f64> {
        match self.average.as_ref().filter(|a| !a.is_empty()) {
            Some(avg) => {
                let averaged =
                    CodePrior::from_state_dict(avg.state(), self.cfg.num_heads, 0.0, &self.device)?;
                prior_cross_entropy(&averaged, &self.val_seqs, self.cfg.batch_size)
            }
            None => {
                prior_cross_entropy(&self.prior()?.valid(), &self.val_seqs, self.cfg.batch_size)
            }
        }
    }

    fn weights(&self) -> anyhow::Result<StateDict> {
        match self.average.as_ref().filter(|a| !a.is_empty()) {
            Some(avg) => Ok(avg.state().clone()),
            None => Ok(self.prior()?.valid().to_state_dict()?),
        }
    }

    fn metrics(
        &mut self,
        epoch: usize,
        train_loss: f64,
        val_loss: f64,
        best_val_loss: f64,
        previous: Option<&EpochReport>,
        run: &mut Runner,
    ) -> EpochMetrics {
        let prev = previous.map(|h| (h.train_loss, h.val_loss));
        if let Some(message) = self.watch.check(prev, train_loss, val_loss) {
            run.warn(format!("prior epoch {}: {message}", epoch + 1));
        }
        EpochMetrics {
            val_perplexity: Some(perplexity(val_loss)),
            best_perplexity: Some(perplexity(best_val_loss)),
            ..EpochMetrics::default()
        }
    }

    fn capture(
        &self,
        epoch: usize,
        best: &Best,
        history: &[EpochReport],
    ) -> anyhow::Result<StageCheckpoint> {
        let prior = self.prior()?;
        let mut state = prior.to_state_dict()?;
        if let Some(avg) = &self.average {
            avg.store(&mut state);
        }
        StageCheckpoint::capture(epoch, prior, state, &self.optim, best, history)
    }
}

#[cfg(test)]
mod tests {
    use super::{CHUNK_SAMPLES, Chunk, MemorisationWatch, draw_windows, speed_copies, spread};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn balanced_epochs_draw_every_file_alike_whatever_its_length() {
        // A one-shot with one window and a long file with 30.
        let files = [0..1, 1..31];
        let share_of_the_hit = |balance: bool| {
            let mut rng = StdRng::seed_from_u64(7);
            let draws = draw_windows(&files, 6000, balance, &mut rng);
            assert_eq!(draws.len(), 6000);
            assert!(draws.iter().all(|&i| i < 31));
            draws.iter().filter(|&&i| i == 0).count() as f64 / 6000.0
        };
        let (balanced, by_window) = (share_of_the_hit(true), share_of_the_hit(false));
        assert!((balanced - 0.5).abs() < 0.03, "balanced: {balanced}");
        assert!(
            (by_window - 1.0 / 31.0).abs() < 0.01,
            "by window: {by_window}"
        );
        // Seeded: the same draws again; nothing to draw from gives nothing.
        let mut a = StdRng::seed_from_u64(3);
        let mut b = StdRng::seed_from_u64(3);
        assert_eq!(
            draw_windows(&files, 50, true, &mut a),
            draw_windows(&files, 50, true, &mut b)
        );
        assert!(draw_windows(&[], 5, true, &mut a).is_empty());
    }

    #[test]
    fn validation_windows_are_spread_evenly_and_capped() {
        let few: Vec<usize> = (0..10).collect();
        assert_eq!(spread(few.clone(), 256), few);
        let many = spread((0..1000).collect::<Vec<usize>>(), 256);
        assert_eq!(many.len(), 256);
        assert!(
            many.windows(2).all(|w| (3..=4).contains(&(w[1] - w[0]))),
            "{many:?}"
        );
    }

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

    #[test]
    fn speed_copies_are_whole_files_at_each_speed_under_their_own_ids() {
        // File 0: 1.5 s across two chunks (a ramp, so positions are checkable); file 3: 0.5 s.
        let ramp: Vec<f32> = (0..72_000).map(|i| i as f32 / 72_000.0).collect();
        let chunk = |file: usize, x: &[f32]| {
            let mut samples = x.to_vec();
            samples.resize(CHUNK_SAMPLES, 0.0);
            Chunk {
                file,
                samples,
                audio: x.len(),
            }
        };
        let chunks = vec![
            chunk(0, &ramp[..48_000]),
            chunk(0, &ramp[48_000..]),
            chunk(3, &vec![0.5; 24_000]),
        ];
        let copies = speed_copies(&chunks, &[0.5, 2.0], 10);
        let of =
            |file: usize| -> Vec<&Chunk> { copies.iter().filter(|c| c.file == file).collect() };
        // Half speed: 3 s of file 0 in three chunks (id 10), 1 s of file 3 (id 13); double
        // speed: 0.75 s (id 20) and 0.25 s (id 23).
        let audio = |file| of(file).iter().map(|c| c.audio).collect::<Vec<_>>();
        assert_eq!(audio(10), vec![48_000, 48_000, 48_000]);
        assert_eq!(audio(13), vec![48_000]);
        assert_eq!(audio(20), vec![36_000]);
        assert_eq!(audio(23), vec![12_000]);
        assert_eq!(copies.len(), 6);
        // The copy reads the whole file across its chunk boundary: at double speed sample i
        // is the ramp at 2i; at half speed the second chunk starts at ramp position 24 000.
        assert!((of(20)[0].samples[30_000] - ramp[60_000]).abs() < 1e-4);
        assert!((of(10)[1].samples[0] - ramp[24_000]).abs() < 1e-4);
        assert!(of(20)[0].samples[36_000..].iter().all(|&v| v == 0.0));
        assert!(speed_copies(&chunks, &[], 10).is_empty());
    }
}
