//! `distill train`: both stages, configuration, progress and the resulting model file.

pub mod checkpoint;
pub mod data;
pub mod optim;
pub mod prior;
pub mod vq;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use audio::mel::MelSpectrogram;
use audio::{SpectrogramConfig, scan};
use burn::prelude::Device;
use indicatif::ProgressBar;
use prior_config::{PriorConfig, get_adaptive_prior_config};
use serde_json::{Value as Json, json};
use vqvae::{ConvVqvae, VqvaeConfig, get_adaptive_vqvae_config};

use checkpoint::{CheckpointMeta, Checkpoints, StageCheckpoint};

use crate::cli::{Stage, TrainArgs};
use crate::modelfile::{ModelFile, ModelOrigin};

/// Token order recorded in models trained here (see `prior::time_major_stream`).
pub const TIME_MAJOR: &str = "time_major";

/// A distinct, reproducible seed per (run seed, purpose, epoch): resuming at an epoch
/// boundary replays the same randomness as an uninterrupted run.
pub fn epoch_seed(seed: u64, purpose: u64, epoch: usize) -> u64 {
    let mut x = seed
        ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (epoch as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    // splitmix64 finaliser
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One epoch's numbers, as printed and as stored in the training history.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochReport {
    pub stage: String,
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub learning_rate: f64,
    pub seconds: f64,
    pub skipped_steps: usize,
    pub extra: Json,
    pub is_best: bool,
}

pub struct StageOutcome {
    pub best_val_loss: f64,
    pub best_epoch: usize,
    pub history: Vec<EpochReport>,
}

impl StageOutcome {
    /// The outcome of a stage and its best weights; an error if no epoch ran.
    pub fn from_best(
        best: Option<(f64, usize, weights::StateDict)>,
        history: Vec<EpochReport>,
        stage: &str,
    ) -> anyhow::Result<(Self, weights::StateDict)> {
        let Some((best_val_loss, best_epoch, state)) = best else {
            bail!("{stage} training ran no epoch");
        };
        Ok((
            Self {
                best_val_loss,
                best_epoch,
                history,
            },
            state,
        ))
    }
}

/// Prints progress as text (a bar with live metrics) or as one JSON object per event.
pub struct Reporter {
    json: bool,
    bar: Option<ProgressBar>,
    pub warnings: Vec<String>,
}

impl Reporter {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            bar: None,
            warnings: Vec::new(),
        }
    }

    pub fn event(&self, value: Json) {
        if self.json {
            println!("{value}");
        }
    }

    pub fn info(&self, text: &str) {
        if self.json {
            self.event(json!({"event": "info", "message": text}));
        } else {
            match &self.bar {
                Some(bar) if !bar.is_hidden() => bar.println(text),
                _ => eprintln!("{text}"),
            }
        }
    }

    pub fn warn(&mut self, text: &str) {
        self.warnings.push(text.to_string());
        if self.json {
            self.event(json!({"event": "warning", "message": text}));
        } else {
            match &self.bar {
                Some(bar) if !bar.is_hidden() => bar.println(format!("warning: {text}")),
                _ => eprintln!("warning: {text}"),
            }
        }
    }

    pub fn start_stage(&mut self, name: &str, epochs: usize) {
        self.bar = Some(crate::progress::bar(epochs as u64, name, self.json));
    }

    pub fn epoch(&mut self, r: &EpochReport) {
        if self.json {
            let mut v = serde_json::to_value(r).unwrap_or(Json::Null);
            if let Json::Object(o) = &mut v {
                o.insert("event".into(), json!("epoch"));
            }
            println!("{v}");
            return;
        }
        let extra = match r.stage.as_str() {
            "prior" => format!(
                " ppl {:.2} (best {:.2})",
                r.extra["val_perplexity"].as_f64().unwrap_or(0.0),
                r.extra["best_perplexity"].as_f64().unwrap_or(0.0)
            ),
            _ => {
                let util: Vec<String> = r.extra["codebook_health"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|h| {
                                format!("{:.0}%", h["utilization"].as_f64().unwrap_or(0.0) * 100.0)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!(" use {}", util.join("/"))
            }
        };
        let line = format!(
            "{} epoch {}/{}: train {:.4} val {:.4}{extra} lr {:.2e} {:.1}s{}",
            r.stage,
            r.epoch,
            r.epochs,
            r.train_loss,
            r.val_loss,
            r.learning_rate,
            r.seconds,
            if r.is_best { " *" } else { "" }
        );
        match &self.bar {
            Some(bar) if !bar.is_hidden() => {
                bar.set_position(r.epoch as u64);
                bar.set_message(format!("{} val {:.4}", r.stage, r.val_loss));
                bar.println(line);
            }
            _ => eprintln!("{line}"),
        }
    }

    pub fn finish_stage(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Overlays the keys of a TOML table on a config (unknown keys are an error).
fn overlay<T: serde::Serialize + serde::de::DeserializeOwned>(
    base: &T,
    table: Option<&toml::Value>,
    what: &str,
    path: &Path,
) -> anyhow::Result<T> {
    let Some(table) = table else {
        return Ok(serde_json::from_value(serde_json::to_value(base)?)?);
    };
    let mut merged = serde_json::to_value(base)?;
    let overrides = serde_json::to_value(table)?;
    let (Json::Object(m), Json::Object(o)) = (&mut merged, overrides) else {
        bail!("{}: [{what}] must be a table", path.display());
    };
    for (k, v) in o {
        if !m.contains_key(&k) {
            bail!("{}: unknown {what} setting '{k}'", path.display());
        }
        m.insert(k, v);
    }
    serde_json::from_value(merged).with_context(|| format!("{}: [{what}]", path.display()))
}

/// The effective configuration: adaptive tiers, then the TOML file, then flags.
pub fn resolve_configs(
    args: &TrainArgs,
    file_count: usize,
) -> anyhow::Result<(VqvaeConfig, PriorConfig)> {
    let mut vq = get_adaptive_vqvae_config(file_count);
    let mut pr = get_adaptive_prior_config(file_count);
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(t) = doc.as_table()
            && let Some(bad) = t.keys().find(|k| *k != "vqvae" && *k != "prior")
        {
            bail!(
                "{}: unknown section '{bad}' (expected [vqvae] and/or [prior])",
                path.display()
            );
        }
        vq = overlay(&vq, doc.get("vqvae"), "vqvae", path)?;
        pr = overlay(&pr, doc.get("prior"), "prior", path)?;
    }
    if let Some(e) = args.epochs {
        vq.max_epochs = e;
        pr.max_epochs = e;
    }
    if let Some(lr) = args.lr {
        vq.learning_rate = lr;
        pr.learning_rate = lr;
    }
    if let Some(b) = args.batch_size {
        vq.batch_size = b;
        pr.batch_size = b;
    }
    if let Some(k) = args.codebook_size {
        vq.codebook_size = k;
    }
    if let Some(q) = args.rvq_levels {
        vq.num_quantizers = q;
    }
    if let Some(w) = args.commitment_weight {
        vq.commitment_weight = w;
    }
    if let Some(h) = args.hidden_size {
        pr.hidden_size = h;
    }
    if let Some(l) = args.layers {
        pr.num_layers = l;
    }
    if let Some(h) = args.heads {
        pr.num_heads = h;
    }
    vq.validate()
        .map_err(|e| anyhow::anyhow!("VQ-VAE config: {e}"))?;
    pr.validate()?;
    Ok((vq, pr))
}

/// The history stored in the model: everything but wall times, so that equal runs write
/// equal files.
fn history_json(h: &[EpochReport]) -> Json {
    let mut v = serde_json::to_value(h).unwrap_or(Json::Null);
    if let Json::Array(items) = &mut v {
        for item in items {
            if let Json::Object(o) = item {
                o.remove("seconds");
                o.remove("is_best");
            }
        }
    }
    v
}

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

/// Per-stage callbacks: checkpoint after every epoch, and whether to stop (Ctrl-C, or the
/// epoch budget of this invocation). The checkpoint of the last completed epoch is always on
/// disk (written atomically), so even killing the process at any moment is safe.
pub struct Hooks<'a> {
    max_epochs_this_run: Option<usize>,
    epochs_this_run: usize,
    checkpoints: &'a Checkpoints,
    meta: CheckpointMeta,
    /// Where previews and plots go, and how often previews are written (0 = never).
    pub report_dir: &'a Path,
    pub preview_every: usize,
}

impl Hooks<'_> {
    /// Whether to stop before the next epoch: Ctrl-C, or this invocation's epoch budget.
    pub fn should_stop(&self) -> bool {
        crate::interrupt::requested()
            || self
                .max_epochs_this_run
                .is_some_and(|m| self.epochs_this_run >= m)
    }

    /// Whether Ctrl-C asked to stop now (mid-epoch: the partial epoch is dropped).
    pub fn interrupted(&self) -> bool {
        crate::interrupt::requested()
    }

    /// Whether epoch `epoch` (1-based) of `epochs` gets a preview: every N, and the last.
    pub fn preview_due(&self, epoch: usize, epochs: usize) -> bool {
        self.preview_every > 0 && (epoch.is_multiple_of(self.preview_every) || epoch == epochs)
    }

    /// Reports a finished epoch, adds it to the history and checkpoints the stage.
    pub fn epoch_done(
        &mut self,
        reporter: &mut Reporter,
        history: &mut Vec<EpochReport>,
        report: EpochReport,
        capture: impl FnOnce(&[EpochReport]) -> anyhow::Result<StageCheckpoint>,
    ) -> anyhow::Result<()> {
        reporter.epoch(&report);
        history.push(report);
        self.epochs_this_run += 1;
        self.checkpoints.save(&self.meta, &capture(history)?)
    }
}

/// Loss curves of a stage as `loss_<stage>.png`; a failure is a warning, never fatal.
fn plot_losses(reporter: &mut Reporter, dir: &Path, stage: &str, history: &[EpochReport]) {
    let title = match stage {
        "vqvae" => "VQ-VAE: multi-scale mel loss",
        _ => "prior: next-token cross-entropy",
    };
    let path = dir.join(format!("loss_{stage}.png"));
    if let Err(e) = crate::report::loss_curves(&path, title, history) {
        reporter.warn(&format!("could not write {}: {e:#}", path.display()));
    }
}

/// Per-level code usage of the kept VQ-VAE on the validation chunks, as
/// `codebook_usage.png`; a failure is a warning, never fatal.
fn codebook_usage_plot(
    reporter: &mut Reporter,
    dir: &Path,
    best: &weights::StateDict,
    cfg: &VqvaeConfig,
    data: &data::Dataset,
    mel: &MelSpectrogram,
    device: &Device,
) {
    let path = dir.join("codebook_usage.png");
    let result = (|| -> anyhow::Result<()> {
        let model = ConvVqvae::from_state_dict(best, cfg.dropout.clamp(0.0, 0.99), device)?;
        let val: Vec<&[f32]> = data.val.iter().map(|c| c.samples.as_slice()).collect();
        let (_, _, codes) = vq::evaluate(&model, &val, mel, cfg.batch_size, device);
        let (levels, k) = (cfg.num_quantizers, cfg.codebook_size);
        let mut counts = vec![vec![0u64; k]; levels];
        for (i, &c) in codes.iter().enumerate() {
            if let Some(n) = counts[i % levels].get_mut(c as usize) {
                *n += 1;
            }
        }
        crate::report::codebook_heatmap(
            &path,
            "VQ-VAE codebook usage on validation chunks (white: unused)",
            &counts,
        )
    })();
    if let Err(e) = result {
        reporter.warn(&format!("could not write {}: {e:#}", path.display()));
    }
}

/// Peak resident memory of this process in MiB (Linux; `None` elsewhere).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Exit code of a run stopped before the end (as the reference's CLI).
const EXIT_INTERRUPTED: u8 = 3;

pub fn run(args: &TrainArgs, device: &Device) -> anyhow::Result<ExitCode> {
    crate::interrupt::install();
    let mut reporter = Reporter::new(args.json);
    // Settings come from the checkpoint when resuming, else from the command line.
    let resumed = match &args.resume {
        Some(dir) => Some(Checkpoints::load(dir)?),
        None => None,
    };
    let data_dir = match (&resumed, &args.data) {
        (Some((m, _)), _) => m.data.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => bail!("--data DIR is required: the folder of sounds to learn from"),
    };
    let output = match &resumed {
        Some((m, _)) => m.output.clone(),
        None => args
            .output
            .clone()
            .or_else(|| args.model.clone())
            .unwrap_or_else(|| PathBuf::from("model.distill")),
    };
    let seed = resumed
        .as_ref()
        .map(|(m, _)| m.seed)
        .unwrap_or(args.seed.unwrap_or(0));

    let report = scan::scan_dataset(&data_dir)
        .with_context(|| format!("scanning {}", data_dir.display()))?;
    for f in &report.files {
        for p in &f.problems {
            if p.is_fatal() {
                reporter.warn(&format!("skipping {}: {}", f.path.display(), p.describe()));
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
    // The model a prior is trained on: --model, or when resuming the prior stage, the
    // output file (stage 1 saved it there).
    let existing = match (&resumed, &args.model, args.stage) {
        (Some((m, _)), _, _) if m.stage == "prior" => Some(ModelFile::load(&output)?),
        (Some(_), _, _) => None,
        (None, Some(m), _) => Some(ModelFile::load(m)?),
        (None, None, Stage::Prior) => {
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
            let (v, p) = resolve_configs(args, files)?;
            (v, p, args.stage != Stage::Vqvae)
        }
    };
    if let Some(m) = &existing {
        vq_cfg = m.vqvae_config.clone();
    }
    let train_vq = existing.is_none() && (resumed.is_some() || args.stage != Stage::Prior);
    let data = data::load(&report, vq_cfg.val_fraction)?;
    if data.val.is_empty() || data.train.is_empty() {
        bail!(
            "{}: need at least 2 usable files to split training and validation",
            data_dir.display()
        );
    }
    reporter.event(
        json!({"event": "config", "vqvae_config": vq_cfg, "prior_config": pr_cfg, "seed": seed}),
    );
    reporter.info(&format!(
        "{} files ({:.1} s): {} training / {} validation chunks; seed {seed}",
        files,
        data.total_duration_s,
        data.train.len(),
        data.val.len()
    ));
    if train_vq {
        reporter.info(&format!(
            "VQ-VAE: {} levels x {} codes, {} epochs, lr {}, batch {}, commitment {} (applied once)",
            vq_cfg.num_quantizers, vq_cfg.codebook_size, vq_cfg.max_epochs, vq_cfg.learning_rate, vq_cfg.batch_size, vq_cfg.commitment_weight
        ));
    }
    if train_prior {
        reporter.info(&format!(
            "prior: hidden {}, {} layers, {} heads, dropout {}, {} epochs, lr {}",
            pr_cfg.hidden_size,
            pr_cfg.num_layers,
            pr_cfg.num_heads,
            pr_cfg.dropout,
            pr_cfg.max_epochs,
            pr_cfg.learning_rate
        ));
    }

    let checkpoints = Checkpoints::for_output(&output);
    let meta = |stage: &str| CheckpointMeta {
        version: 1,
        stage: stage.to_string(),
        epoch: 0,
        seed,
        data: data_dir.clone(),
        output: output.clone(),
        vqvae_config: vq_cfg.clone(),
        prior_config: pr_cfg.clone(),
        train_prior,
        param_ids: Vec::new(),
        best_val_loss: None,
        best_epoch: None,
        history: Vec::new(),
        model_file: String::new(),
        best_file: None,
        optim_file: String::new(),
    };
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| output.with_extension("report"));
    std::fs::create_dir_all(&report_dir)
        .with_context(|| format!("creating {}", report_dir.display()))?;
    let preview_every = args
        .preview_every
        .unwrap_or((vq_cfg.max_epochs / 10).max(1));
    let hooks_for = |stage: &str| Hooks {
        max_epochs_this_run: args.stop_after_epochs,
        epochs_this_run: 0,
        checkpoints: &checkpoints,
        meta: meta(stage),
        report_dir: &report_dir,
        preview_every,
    };
    let interrupted = |reporter: &Reporter| {
        let by_user = crate::interrupt::requested();
        reporter.info(&format!(
            "{}; the last completed epoch is saved. Continue with: distill train --resume {}",
            if by_user { "interrupted" } else { "stopped" },
            checkpoints.dir.display()
        ));
        reporter.event(
            json!({"event": "interrupted", "checkpoint": checkpoints.dir, "by_user": by_user}),
        );
        Ok(ExitCode::from(if by_user {
            crate::interrupt::EXIT_CODE
        } else {
            EXIT_INTERRUPTED
        }))
    };
    let mut resume_state = resumed.map(|(_, ck)| ck);

    let spectrogram = existing
        .as_ref()
        .map(|m| m.spectrogram_config.clone())
        .unwrap_or_else(SpectrogramConfig::default);
    let mel = MelSpectrogram::new(spectrogram.clone());
    let mut model = match existing {
        Some(m) => m,
        None => ModelFile {
            origin: ModelOrigin::Distill,
            vqvae_config: vq_cfg.clone(),
            spectrogram_config: spectrogram,
            prior_config: None,
            metadata: serde_json::Map::new(),
            extra: BTreeMap::new(),
            vqvae: Default::default(),
            prior: None,
        },
    };

    if train_vq {
        reporter.start_stage("VQ-VAE", vq_cfg.max_epochs);
        let mut hooks = hooks_for("vqvae");
        let result = vq::train(
            &vq_cfg,
            &data,
            &mel,
            seed,
            device,
            &mut reporter,
            resume_state.take(),
            &mut hooks,
        )?;
        reporter.finish_stage();
        plot_losses(&mut reporter, &report_dir, "vqvae", &result.outcome.history);
        if !result.completed {
            return interrupted(&reporter);
        }
        codebook_usage_plot(
            &mut reporter,
            &report_dir,
            &result.best,
            &vq_cfg,
            &data,
            &mel,
            device,
        );
        reporter.info(&format!(
            "VQ-VAE: best validation loss {:.4} at epoch {} (those weights are kept)",
            result.outcome.best_val_loss, result.outcome.best_epoch
        ));
        model.vqvae = result.best;
        // Codebook health of the kept (best) epoch, from its history entry.
        let best_report = result
            .outcome
            .history
            .iter()
            .find(|r| r.epoch == result.outcome.best_epoch);
        let health: serde_json::Map<String, Json> = best_report
            .and_then(|r| r.extra["codebook_health"].as_array())
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(q, h)| (format!("level_{q}"), h.clone()))
            .collect();
        model
            .extra
            .insert("codebook_health_snapshot".into(), Json::Object(health));
        model.extra.insert(
            "vqvae_training".into(),
            json!({
                "best_epoch": result.outcome.best_epoch,
                "best_val_loss": result.outcome.best_val_loss,
                "history": history_json(&result.outcome.history),
            }),
        );
        let last = result.outcome.history.last();
        model
            .metadata
            .insert("training_epochs".into(), json!(vq_cfg.max_epochs));
        model
            .metadata
            .insert("final_train_loss".into(), json!(last.map(|r| r.train_loss)));
        model
            .metadata
            .insert("final_val_loss".into(), json!(result.outcome.best_val_loss));
    }
    if train_prior {
        // The VQ-VAE the prior learns from is saved first: resuming the prior stage reads it.
        model.origin = ModelOrigin::Distill;
        model.save(&output)?;
        let vq_model: ConvVqvae = crate::models::vqvae(&model, device)?;
        reporter.start_stage("prior", pr_cfg.max_epochs);
        let mut hooks = hooks_for("prior");
        let result = prior::train(
            &pr_cfg,
            &vq_model,
            &data,
            &mel,
            seed,
            device,
            &mut reporter,
            resume_state.take(),
            &mut hooks,
        )?;
        reporter.finish_stage();
        plot_losses(&mut reporter, &report_dir, "prior", &result.outcome.history);
        if !result.completed {
            return interrupted(&reporter);
        }
        let best_ppl = prior::perplexity(result.outcome.best_val_loss);
        reporter.info(&format!(
            "prior: best validation perplexity {best_ppl:.2} at epoch {} (those weights are kept); {} training / {} validation sequences",
            result.outcome.best_epoch, result.train_sequences, result.val_sequences
        ));
        let mut cfg = pr_cfg.clone();
        cfg.seq_len = Some(result.shape.seq_len);
        cfg.num_quantizers = Some(result.shape.num_quantizers);
        model.prior = Some(result.best);
        model.prior_config = Some(cfg);
        model.extra.insert("token_order".into(), json!(TIME_MAJOR));
        model.extra.insert(
            "first_token_distribution".into(),
            json!(result.first_token_distribution),
        );
        model.extra.insert(
            "prior_metadata".into(),
            json!({
                "epochs_trained": pr_cfg.max_epochs,
                "best_epoch": result.outcome.best_epoch,
                "final_perplexity": best_ppl,
                "best_perplexity": best_ppl,
                "history": history_json(&result.outcome.history),
            }),
        );
    }
    // Named after the data (as the reference does), not the output path, so that equal runs
    // write equal files wherever they are saved.
    let name = data::short(&data_dir);
    model.metadata.insert(
        "model_id".into(),
        json!(run_id(seed, &data, &vq_cfg, &pr_cfg)),
    );
    model.metadata.insert("name".into(), json!(name));
    model
        .metadata
        .insert("dataset_name".into(), json!(data::short(&data_dir)));
    model
        .metadata
        .insert("dataset_file_count".into(), json!(files));
    model.metadata.insert(
        "dataset_total_duration_s".into(),
        json!(data.total_duration_s),
    );
    model.metadata.insert("seed".into(), json!(seed));
    model.origin = ModelOrigin::Distill;
    model.save(&output)?;
    checkpoints.remove();
    reporter.info(&format!(
        "report (loss curves, codebook usage, previews): {}",
        report_dir.display()
    ));
    reporter.event(json!({
        "event": "done",
        "model_path": output,
        "report_dir": report_dir,
        "warnings": reporter.warnings,
        "peak_rss_mb": peak_rss_mb(),
    }));
    if !args.json {
        println!("{}", output.display());
    }
    Ok(ExitCode::SUCCESS)
}
