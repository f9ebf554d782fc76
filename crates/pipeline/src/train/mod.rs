//! Training as a library call: both stages, resumable, reporting through a typed event
//! stream and stoppable through a [`CancelToken`].
//!
//! * [`config`]: the effective configuration (tier, TOML file, overrides);
//! * [`runner`]: the one epoch loop both stages run;
//! * [`vq`] and [`prior`]: the two stages;
//! * [`data`], [`checkpoint`], [`optim`], [`plots`]: what they share.

mod average;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod events;
pub mod optim;
pub mod parts;
mod plots;
pub mod prior;
pub mod runner;
pub mod vq;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use audio::mel::MelSpectrogram;
use audio::{SpectrogramConfig, scan};
use burn::prelude::*;
use prior_config::{PriorConfig, epochs_within_steps};
use vqvae::{ConvVqvae, VqvaeConfig};

use crate::cancel::CancelToken;
use crate::evaluate::perplexity;
use crate::modelfile::{CodebookHealth, ModelFile, ModelOrigin, PriorTraining, VqvaeTraining};
use checkpoint::{CheckpointMeta, Checkpoints, StageCheckpoint};
pub use config::{ConfigOverrides, Preset};
pub use events::{EpochReport, Event, PlateauStop, RunInfo, StageName, StageSummary};
use runner::{Runner, Stage, StageRun, run_epochs};

/// Which stages a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stages {
    Vqvae,
    Prior,
    All,
}

/// Everything a training run needs to know.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Folder of sounds (searched recursively); from the checkpoint when resuming.
    pub data: Option<PathBuf>,
    /// Model file to write (default: `model` or `model.distill`).
    pub output: Option<PathBuf>,
    pub stages: Stages,
    /// Existing model whose prior to (re)train, its VQ-VAE frozen.
    pub model: Option<PathBuf>,
    pub overrides: ConfigOverrides,
    /// Checkpoint folder of an interrupted run to continue.
    pub resume: Option<PathBuf>,
    /// The same seed, data and backend give the same model file (default 0).
    pub seed: Option<u64>,
    /// Training report folder (default `<model>.report/`).
    pub report_dir: Option<PathBuf>,
    /// VQ-VAE previews every N epochs, 0 = never (default about 10 per run).
    pub preview_every: Option<usize>,
    /// Stop (as cancelling does) after this many epochs of this invocation: tests of resume.
    pub stop_after_epochs: Option<usize>,
    /// Wall time for the whole run: each stage runs as many epochs as fit (planned from
    /// its first epoch's time), keeping its best weights. Timing makes such runs vary.
    pub time_budget: Option<std::time::Duration>,
}

impl TrainOptions {
    /// Training both stages of `data` into `output` with the automatic configuration.
    pub fn new(data: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        Self {
            data: Some(data.into()),
            output: Some(output.into()),
            stages: Stages::All,
            model: None,
            overrides: ConfigOverrides::default(),
            resume: None,
            seed: None,
            report_dir: None,
            preview_every: None,
            stop_after_epochs: None,
            time_budget: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOutcome {
    /// The model file is written.
    Finished { model: PathBuf, report_dir: PathBuf },
    /// Stopped before the end (`by_user`: cancelled, else the epoch budget of
    /// [`TrainOptions::stop_after_epochs`]); `checkpoint` continues it.
    Stopped { checkpoint: PathBuf, by_user: bool },
}

/// Share of a time budget the VQ-VAE stage may use when the prior follows (measured on
/// drums20 with the default tiers: the VQ-VAE takes about three quarters of the time). Half
/// was tried on notes96 and speech30 in 6 minutes: the prior's sounds stayed as fragmented
/// (12 epochs instead of 7 are still far too few) and speech30's codec lost a third of its
/// epochs (MR-STFT 1.60 → 2.38).
const VQ_BUDGET_SHARE: f64 = 0.7;

/// Stable identifier of a run: a hash of its inputs, so equal runs write equal files.
fn run_id(seed: u64, data: &data::Dataset, vq: &VqvaeConfig, pr: &PriorConfig) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(&seed.to_le_bytes());
    for f in &data.files {
        h.update(data::short(f).as_bytes());
    }
    h.update(serde_json::to_string(vq).unwrap_or_default().as_bytes());
    h.update(serde_json::to_string(pr).unwrap_or_default().as_bytes());
    let a = h.finalize();
    format!(
        "{a:08x}-{:08x}-{:04x}",
        data.train.len() as u32 ^ a.rotate_left(7),
        seed & 0xffff
    )
}

/// Peak resident memory of this process in MiB (Linux; `None` elsewhere).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// What a run resolved before its first epoch.
struct Plan {
    output: PathBuf,
    seed: u64,
    vq_cfg: VqvaeConfig,
    pr_cfg: PriorConfig,
    train_vq: bool,
    train_prior: bool,
    /// The model whose VQ-VAE a prior-only run uses.
    existing: Option<ModelFile>,
    resume: Option<StageCheckpoint>,
}

/// Settings from the checkpoint when resuming, else from the options.
fn plan(
    options: &TrainOptions,
    files: usize,
    chunks: usize,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<Plan> {
    let resumed = match &options.resume {
        Some(dir) => Some(Checkpoints::load(dir)?),
        None => None,
    };
    let (output, seed) = match &resumed {
        Some((m, _)) => (m.output.clone(), m.seed),
        None => (
            options
                .output
                .clone()
                .or_else(|| options.model.clone())
                .unwrap_or_else(|| PathBuf::from("model.distill")),
            options.seed.unwrap_or(0),
        ),
    };
    // The model a prior is trained on: --model, or when resuming the prior stage, the
    // output file (stage 1 saved it there).
    let existing = match (&resumed, &options.model, options.stages) {
        (Some((m, _)), _, _) if m.stage == StageName::Prior => Some(ModelFile::load(&output)?),
        (Some(_), _, _) => None,
        (None, Some(m), _) => Some(ModelFile::load(m)?),
        (None, None, Stages::Prior) => {
            bail!("--stage prior needs --model M: the model whose VQ-VAE codes the prior learns")
        }
        (None, None, _) => None,
    };
    let (mut vq_cfg, pr_cfg, train_prior) = match &resumed {
        Some((m, _)) => (
            m.vqvae_config.clone(),
            m.prior_config.clone(),
            m.train_prior,
        ),
        None => {
            let (v, p) = config::resolve(&options.overrides, files, chunks, warn)?;
            (v, p, options.stages != Stages::Vqvae)
        }
    };
    if let Some(m) = &existing {
        vq_cfg = m.vqvae_config.clone();
    }
    let train_vq = existing.is_none() && (resumed.is_some() || options.stages != Stages::Prior);
    Ok(Plan {
        output,
        seed,
        vq_cfg,
        pr_cfg,
        train_vq,
        train_prior,
        existing,
        resume: resumed.map(|(_, ck)| ck),
    })
}

/// Trains the stages `options` ask for on `device`, reporting through `on_event`; stops at
/// the next step once `cancel` is cancelled, leaving a resumable checkpoint.
pub fn train(
    options: &TrainOptions,
    device: &Device,
    on_event: &mut dyn FnMut(&Event),
    cancel: &CancelToken,
) -> anyhow::Result<TrainOutcome> {
    let mut early_warnings = Vec::new();
    let mut warn = |message: String| {
        on_event(&Event::Warning {
            message: message.clone(),
        });
        early_warnings.push(message);
    };
    // Which folder to scan is known before the checkpoint's settings are read only when
    // not resuming; a resumed run scans the folder it recorded.
    let data_dir = match (&options.resume, &options.data) {
        (Some(dir), _) => Checkpoints::load_meta(dir)?.data,
        (None, Some(d)) => d.clone(),
        (None, None) => bail!("--data DIR is required: the folder of sounds to learn from"),
    };
    let report = scan::scan_dataset(&data_dir)
        .with_context(|| format!("scanning {}", data_dir.display()))?;
    for f in &report.files {
        for p in &f.problems {
            if p.is_fatal() {
                warn(format!("skipping {}: {}", f.path.display(), p.describe()));
            }
        }
    }
    let files = report.usable_count();
    if files == 0 {
        bail!(
            "{}: no usable audio files; nothing to train on",
            data_dir.display()
        );
    }
    let mut plan = plan(options, files, report.total_chunks(), &mut warn)?;
    let data = data::load(&report, plan.vq_cfg.val_fraction, plan.vq_cfg.normalization)?;
    if data.val.is_empty() || data.train.is_empty() {
        bail!(
            "{}: need at least 2 usable files to split training and validation",
            data_dir.display()
        );
    }
    if plan.resume.is_none() {
        // A step budget becomes whole epochs once the training chunks are known (both
        // stages draw one item per chunk per epoch); a resumed run already has them.
        let chunks = data.train.len();
        let (vq, pr) = (&mut plan.vq_cfg, &mut plan.pr_cfg);
        vq.max_epochs = epochs_within_steps(vq.max_epochs, vq.max_steps, chunks, vq.batch_size);
        pr.max_epochs = epochs_within_steps(pr.max_epochs, pr.max_steps, chunks, pr.batch_size);
    }
    let output = plan.output.clone();
    let report_dir = options
        .report_dir
        .clone()
        .unwrap_or_else(|| output.with_extension("report"));
    std::fs::create_dir_all(&report_dir)
        .with_context(|| format!("creating {}", report_dir.display()))?;
    let names = |ids: &[usize]| -> Vec<String> {
        ids.iter().map(|&i| data::short(&data.files[i])).collect()
    };
    on_event(&Event::Config(Box::new(RunInfo {
        seed: plan.seed,
        data: data_dir.clone(),
        output: output.clone(),
        report_dir: report_dir.clone(),
        files,
        total_duration_s: data.total_duration_s,
        train_files: names(&data.train_files),
        val_files: names(&data.val_files),
        train_chunks: data.train.len(),
        val_chunks: data.val.len(),
        vqvae_config: plan.vq_cfg.clone(),
        prior_config: plan.pr_cfg.clone(),
        train_vqvae: plan.train_vq,
        train_prior: plan.train_prior,
        resumed_at: plan.resume.as_ref().map_or(0, |ck| ck.epoch),
    })));

    let checkpoints = Checkpoints::for_output(&output);
    let meta = CheckpointMeta {
        version: 1,
        stage: StageName::Vqvae,
        epoch: 0,
        seed: plan.seed,
        data: data_dir.clone(),
        output: output.clone(),
        vqvae_config: plan.vq_cfg.clone(),
        prior_config: plan.pr_cfg.clone(),
        train_prior: plan.train_prior,
        param_ids: Vec::new(),
        best_val_loss: None,
        best_epoch: None,
        history: Vec::new(),
        model_file: String::new(),
        best_file: None,
        optim_file: String::new(),
    };
    let preview_every = options
        .preview_every
        .unwrap_or((plan.vq_cfg.max_epochs / 10).max(1));
    let mut run = Runner::new(
        on_event,
        cancel,
        options.stop_after_epochs,
        &checkpoints,
        meta,
        &report_dir,
        preview_every,
    );
    run.warnings = early_warnings;
    let Plan {
        seed,
        vq_cfg,
        pr_cfg,
        train_vq,
        train_prior,
        existing,
        mut resume,
        ..
    } = plan;

    let spectrogram = existing
        .as_ref()
        .map(|m| m.spectrogram_config.clone())
        .unwrap_or_else(SpectrogramConfig::default);
    let mel = MelSpectrogram::new(spectrogram.clone());
    let mut model = match existing {
        Some(m) => m,
        None => ModelFile::new(vq_cfg.clone(), spectrogram, Default::default()),
    };

    // With a time budget the VQ-VAE gets its share of it and the prior the rest (whatever
    // the VQ-VAE left).
    let run_deadline = options.time_budget.map(|b| std::time::Instant::now() + b);
    run.run_deadline = run_deadline;
    if train_vq {
        run.deadline = options.time_budget.map(|b| {
            let share = if train_prior { VQ_BUDGET_SHARE } else { 1.0 };
            std::time::Instant::now() + b.mul_f64(share)
        });
        let (mut stage, start) =
            vq::VqStage::new(&vq_cfg, &data, &mel, seed, device, resume.take())?;
        let result = run_epochs(&mut stage, start, &mut run)?;
        plots::losses(&mut run, StageName::Vqvae, &result.history);
        if !result.completed {
            return Ok(stopped(&mut run));
        }
        let (best_val_loss, best_epoch, best) = result.best()?;
        plots::codebook_usage(&mut run, best, &vq_cfg, &data, &mel, device);
        run.emit(Event::StageFinished(StageSummary {
            stage: StageName::Vqvae,
            best_epoch,
            best_val_loss,
            best_perplexity: None,
            train_sequences: None,
            val_sequences: None,
            plateau_stop: None,
        }));
        record_vqvae(&mut model, &result, &vq_cfg)?;
    }
    if train_prior {
        // The VQ-VAE the prior learns from is saved first: resuming the prior stage reads it.
        model.origin = ModelOrigin::Distill;
        model.save(&output)?;
        let vq_model: ConvVqvae = crate::models::vqvae(&model, device)?;
        run.deadline = run_deadline;
        let (mut stage, start) =
            prior::PriorStage::new(&pr_cfg, &vq_model, &data, &mel, seed, device, resume.take())?;
        let result = run_epochs(&mut stage, start, &mut run)?;
        plots::losses(&mut run, StageName::Prior, &result.history);
        if !result.completed {
            return Ok(stopped(&mut run));
        }
        let (best_val_loss, best_epoch, best) = result.best()?;
        let (train_sequences, val_sequences) = stage.sequences();
        run.emit(Event::StageFinished(StageSummary {
            stage: StageName::Prior,
            best_epoch,
            best_val_loss,
            best_perplexity: Some(perplexity(best_val_loss)),
            train_sequences: Some(train_sequences),
            val_sequences: Some(val_sequences),
            plateau_stop: result.plateau_stop.zip(stage.patience()).map(
                |(epochs_trained, patience)| PlateauStop {
                    epochs_trained,
                    epochs: result.history.last().map_or(0, |r| r.epochs),
                    patience,
                },
            ),
        }));
        let mut cfg = pr_cfg.clone();
        cfg.seq_len = Some(stage.shape.seq_len);
        cfg.num_quantizers = Some(stage.shape.num_quantizers);
        let best_ppl = perplexity(best_val_loss);
        model.prior = Some(best.clone());
        model.prior_config = Some(cfg);
        model.sections.token_order = Some(prior::ORDER);
        model.sections.first_token_distribution = Some(stage.first_token_distribution.clone());
        model.sections.prior_training = Some(PriorTraining {
            epochs_trained: result.history.last().map_or(0, |r| r.epoch),
            best_epoch: Some(best_epoch),
            final_perplexity: Some(best_ppl),
            best_perplexity: Some(best_ppl),
            training_date: None,
            history: Some(result.history.iter().map(EpochReport::record).collect()),
        });
    }
    // Named after the data (as the reference does), not the output path, so that equal runs
    // write equal files wherever they are saved.
    let m = &mut model.metadata;
    m.model_id = Some(run_id(seed, &data, &vq_cfg, &pr_cfg));
    m.name = Some(data::short(&data_dir));
    m.data.name = Some(data::short(&data_dir));
    m.data.file_count = Some(files);
    m.data.total_duration_s = Some(data.total_duration_s);
    m.seed = Some(seed);
    model.origin = ModelOrigin::Distill;
    model.save(&output)?;
    checkpoints.remove();
    let warnings = run.warnings.clone();
    run.emit(Event::Done {
        model_path: output.clone(),
        report_dir: report_dir.clone(),
        warnings,
        peak_rss_mb: peak_rss_mb(),
    });
    Ok(TrainOutcome::Finished {
        model: output,
        report_dir,
    })
}

/// Stores the kept VQ-VAE and its training record in the model.
fn record_vqvae(model: &mut ModelFile, result: &StageRun, cfg: &VqvaeConfig) -> anyhow::Result<()> {
    let (best_val_loss, best_epoch, best) = result.best()?;
    model.vqvae = best.clone();
    // Codebook health of the kept (best) epoch, from its history entry.
    let health = result
        .history
        .iter()
        .find(|r| r.epoch == best_epoch)
        .and_then(|r| r.metrics.codebook_health.clone())
        .unwrap_or_default();
    model.sections.codebook_health = Some(CodebookHealth(health));
    model.sections.vqvae_training = Some(VqvaeTraining {
        best_epoch,
        best_val_loss,
        history: result.history.iter().map(EpochReport::record).collect(),
    });
    model.metadata.training_epochs = Some(cfg.max_epochs);
    model.metadata.final_train_loss = result.history.last().map(|r| r.train_loss);
    model.metadata.final_val_loss = Some(best_val_loss);
    Ok(())
}

/// The outcome of a run stopped before the end.
fn stopped(run: &mut Runner) -> TrainOutcome {
    let by_user = run.cancelled();
    let checkpoint = run.checkpoint_dir().to_path_buf();
    run.emit(Event::Interrupted {
        checkpoint: checkpoint.clone(),
        by_user,
    });
    TrainOutcome::Stopped {
        checkpoint,
        by_user,
    }
}

/// The checkpoint folder a run writing `output` uses.
pub fn checkpoint_dir(output: &Path) -> PathBuf {
    Checkpoints::for_output(output).dir
}
