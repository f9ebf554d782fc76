//! `distill train`: the command line of [`crate::train::train`] and its terminal printer.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::Device;
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;

use super::progress;
use crate::train::{
    ConfigOverrides, Event, Preset, StageName, Stages, TrainOptions, TrainOutcome, train,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    Native,
    Reference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    Vqvae,
    Prior,
    All,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Folder of sound files (searched recursively).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model file to write.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Which stage(s) to train.
    #[arg(long, value_enum, default_value_t = Stage::All)]
    pub stage: Stage,
    /// Existing model whose prior to (re)train, with its VQ-VAE frozen.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Defaults to start from: Distill's own codec and training settings, or the original
    /// system's model shape and tiers.
    #[arg(long, value_enum, default_value_t = PresetArg::Native)]
    pub preset: PresetArg,
    /// TOML file overriding the automatic configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue an interrupted run from its checkpoint folder (`MODEL.ckpt`).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Epochs (both stages unless --stage picks one).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Codes per RVQ codebook (default by dataset size: 64/128/256).
    #[arg(long)]
    pub codebook_size: Option<usize>,
    /// RVQ levels, 1–4 (default by tier: 1 for small or short collections, 3 above).
    #[arg(long)]
    pub rvq_levels: Option<usize>,
    /// Commitment loss weight (default 0.25, applied once).
    #[arg(long)]
    pub commitment_weight: Option<f64>,
    /// Prior hidden size.
    #[arg(long)]
    pub hidden_size: Option<usize>,
    /// Prior transformer layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Prior attention heads (must divide the hidden size).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Random seed: the same seed, data and backend give the same model.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Emit one JSON object per event instead of progress bars.
    #[arg(long)]
    pub json: bool,
    /// Wall-time budget for the whole run, e.g. `90s`, `10m`, `1h30m`: the VQ-VAE may use 70 %
    /// of it, the prior the rest; each stage runs the epochs that fit (planned from its first
    /// epoch), keeping its best weights.
    #[arg(long, value_parser = parse_duration)]
    pub time_budget: Option<std::time::Duration>,
    /// Stop (as Ctrl-C does) after this many epochs of this invocation; for testing resume.
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
    /// Folder for the training report: loss curves, codebook usage heatmap and
    /// reconstruction previews (default: next to the model, `<model>.report/`).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Write VQ-VAE reconstruction previews (WAV + mel PNG of validation chunks) every N
    /// epochs and after the last one; 0 = never (default: about 10 per run).
    #[arg(long)]
    pub preview_every: Option<usize>,
}

impl TrainArgs {
    fn options(&self) -> TrainOptions {
        TrainOptions {
            data: self.data.clone(),
            output: self.output.clone(),
            stages: match self.stage {
                Stage::Vqvae => Stages::Vqvae,
                Stage::Prior => Stages::Prior,
                Stage::All => Stages::All,
            },
            model: self.model.clone(),
            overrides: ConfigOverrides {
                preset: match self.preset {
                    PresetArg::Native => Preset::Native,
                    PresetArg::Reference => Preset::Reference,
                },
                config_file: self.config.clone(),
                epochs: self.epochs,
                lr: self.lr,
                batch_size: self.batch_size,
                codebook_size: self.codebook_size,
                rvq_levels: self.rvq_levels,
                commitment_weight: self.commitment_weight,
                hidden_size: self.hidden_size,
                layers: self.layers,
                heads: self.heads,
            },
            resume: self.resume.clone(),
            seed: self.seed,
            report_dir: self.report_dir.clone(),
            preview_every: self.preview_every,
            stop_after_epochs: self.stop_after_epochs,
            time_budget: self.time_budget,
        }
    }
}

/// Seconds as `1m05s` / `42s`.
fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `70 epochs`, and where a step budget set them, `70 epochs (at most 4000 steps)`.
fn epochs_text(epochs: usize, max_steps: Option<usize>) -> String {
    let noun = if epochs == 1 { "epoch" } else { "epochs" };
    match max_steps {
        Some(steps) => format!("{epochs} {noun} (at most {steps} steps)"),
        None => format!("{epochs} {noun}"),
    }
}

/// A duration such as `45s`, `10m`, `1h30m` or `2h` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("'{text}' is not a duration (examples: 90s, 10m, 1h30m)");
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() {
        total += number.parse::<u64>().map_err(|_| bad())?;
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

/// Exit code of a run stopped before the end other than by Ctrl-C (as the reference's CLI).
const EXIT_STOPPED: u8 = 3;

pub fn run(args: &TrainArgs, device: &Device) -> anyhow::Result<ExitCode> {
    let cancel = crate::interrupt::install();
    let mut printer = Printer::new(args.json);
    let outcome = train(
        &args.options(),
        device,
        &mut |e: &Event| printer.event(e),
        &cancel,
    );
    printer.finish_stage();
    match outcome? {
        TrainOutcome::Finished { model, .. } => {
            if !args.json {
                println!("{}", model.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        TrainOutcome::Stopped { by_user, .. } => Ok(ExitCode::from(if by_user {
            crate::interrupt::EXIT_CODE
        } else {
            EXIT_STOPPED
        })),
    }
}

/// Prints events as text (a bar with live metrics) or as one JSON object per line.
struct Printer {
    json: bool,
    bar: Option<ProgressBar>,
}

impl Printer {
    fn new(json: bool) -> Self {
        Self { json, bar: None }
    }

    /// A line above the bar (or on stderr when there is none).
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    fn finish_stage(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn event(&mut self, e: &Event) {
        if self.json {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
            return;
        }
        match e {
            Event::Config(r) => {
                self.line(&format!(
                    "{} files ({:.1} s): {} training / {} validation chunks; seed {}",
                    r.files, r.total_duration_s, r.train_chunks, r.val_chunks, r.seed
                ));
                let v = &r.vqvae_config;
                if r.train_vqvae {
                    // The grid of one second of sound: what the prior reads and writes.
                    let (rows, cols) = v.grid_per_second(&audio::SpectrogramConfig::default());
                    self.line(&format!(
                        "VQ-VAE: {rows} x {cols} codes per second, {} x {} codes, {}, lr {}, batch {}, commitment {} (applied once)",
                        crate::codes::levels_text(v.num_quantizers),
                        v.codebook_size,
                        epochs_text(v.max_epochs, v.max_steps),
                        v.learning_rate,
                        v.batch_size,
                        v.commitment_weight
                    ));
                }
                let p = &r.prior_config;
                if r.train_prior {
                    let speeds = if p.augment_speeds.is_empty() {
                        String::new()
                    } else {
                        // Three decimals: a semitone (2^(1/12)) reads 1.059, 0.97 stays 0.97.
                        let list: Vec<String> = p
                            .augment_speeds
                            .iter()
                            .map(|s| {
                                let t = format!("{s:.3}");
                                t.trim_end_matches('0').trim_end_matches('.').to_string()
                            })
                            .collect();
                        format!(", speed copies {}", list.join("/"))
                    };
                    let average = p
                        .weight_average
                        .filter(|&d| d > 0.0)
                        .map(|d| format!(", weight average {d}"))
                        .unwrap_or_default();
                    let rows = if p.row_embedding {
                        ", row embedding"
                    } else {
                        ""
                    };
                    let patience = p
                        .patience
                        .filter(|&n| n > 0)
                        .map(|n| format!(" (fewer after {n} without improvement)"))
                        .unwrap_or_default();
                    self.line(&format!(
                        "prior: hidden {}, {} layers, {} heads, dropout {}, {}{patience}, lr {}, batch {}{speeds}{average}{rows}",
                        p.hidden_size,
                        p.num_layers,
                        p.num_heads,
                        p.dropout,
                        epochs_text(p.max_epochs, p.max_steps),
                        p.learning_rate,
                        p.batch_size
                    ));
                }
            }
            Event::StageStarted { stage, epochs, .. } => {
                self.finish_stage();
                let bar = progress::bar(*epochs as u64, stage.label(), false);
                self.bar = Some(bar);
            }
            Event::Epoch(r) => {
                let extra = match r.stage {
                    StageName::Prior => format!(
                        " ppl {:.2} (best {:.2})",
                        r.metrics.val_perplexity.unwrap_or(0.0),
                        r.metrics.best_perplexity.unwrap_or(0.0)
                    ),
                    StageName::Vqvae => {
                        let util: Vec<String> = r
                            .metrics
                            .codebook_health
                            .iter()
                            .flatten()
                            .map(|h| format!("{:.0}%", h.utilization * 100.0))
                            .collect();
                        format!(" use {}", util.join("/"))
                    }
                };
                let eta = match (r.eta_s, r.run_eta_s) {
                    (_, Some(run)) => format!(" (run ends within {})", clock(run)),
                    (Some(stage), None) if r.epoch < r.epochs => {
                        format!(" (stage eta {})", clock(stage))
                    }
                    _ => String::new(),
                };
                let line = format!(
                    "{} epoch {}/{}: train {:.4} val {:.4}{extra} lr {:.2e} {:.1}s{}{eta}",
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
            Event::Warning { message } => self.line(&format!("warning: {message}")),
            Event::StageFinished(s) => {
                self.finish_stage();
                match s.stage {
                    StageName::Vqvae => self.line(&format!(
                        "VQ-VAE: best validation loss {:.4} at epoch {} (those weights are kept)",
                        s.best_val_loss, s.best_epoch
                    )),
                    StageName::Prior => {
                        if let Some(p) = &s.plateau_stop {
                            self.line(&format!(
                                "prior: stopped after epoch {} of {}: no better validation perplexity in the last {} epochs",
                                p.epochs_trained, p.epochs, p.patience
                            ));
                        }
                        self.line(&format!(
                            "prior: best validation perplexity {:.2} at epoch {} (those weights are kept); {} training / {} validation sequences",
                            s.best_perplexity.unwrap_or(0.0),
                            s.best_epoch,
                            s.train_sequences.unwrap_or(0),
                            s.val_sequences.unwrap_or(0)
                        ))
                    }
                }
            }
            Event::Interrupted {
                checkpoint,
                by_user,
            } => {
                self.finish_stage();
                self.line(&format!(
                    "{}; the last completed epoch is saved. Continue with: distill train --resume {}",
                    if *by_user { "interrupted" } else { "stopped" },
                    checkpoint.display()
                ));
            }
            Event::Done { report_dir, .. } => self.line(&format!(
                "report (loss curves, codebook usage, previews): {}",
                report_dir.display()
            )),
            Event::Preview { .. } | Event::Checkpoint { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "0s", "ten minutes", "5x", "m"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("not a duration"), "{err}");
        }
    }
}
