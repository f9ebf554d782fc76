//! What a training run reports while it works: one typed event stream that the terminal
//! printer, `--json` and the web app all consume.

use std::path::PathBuf;

use prior_config::PriorConfig;
use serde::{Deserialize, Serialize};
use vqvae::VqvaeConfig;

use crate::modelfile::{EpochMetrics, EpochRecord};

/// The two stages of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageName {
    Vqvae,
    Prior,
}

impl StageName {
    /// The name people read.
    pub fn label(self) -> &'static str {
        match self {
            Self::Vqvae => "VQ-VAE",
            Self::Prior => "prior",
        }
    }
}

impl std::fmt::Display for StageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Vqvae => "vqvae",
            Self::Prior => "prior",
        })
    }
}

/// One epoch's numbers, as reported and (without wall time) stored in the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub stage: StageName,
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub learning_rate: f64,
    pub seconds: f64,
    pub skipped_steps: usize,
    #[serde(rename = "extra", default)]
    pub metrics: EpochMetrics,
    /// The best validation loss so far (these weights are kept).
    pub is_best: bool,
    /// Seconds the stage's remaining epochs are expected to take (at this epoch's pace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    /// Seconds until the whole run ends at the latest (with a time budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_eta_s: Option<f64>,
}

impl EpochReport {
    /// The history entry stored in the model file.
    pub fn record(&self) -> EpochRecord {
        EpochRecord {
            stage: self.stage.to_string(),
            epoch: self.epoch,
            epochs: self.epochs,
            train_loss: self.train_loss,
            val_loss: self.val_loss,
            learning_rate: self.learning_rate,
            skipped_steps: self.skipped_steps,
            metrics: self.metrics.clone(),
        }
    }
}

/// The resolved settings of a run, reported before its first epoch.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub seed: u64,
    pub data: PathBuf,
    pub output: PathBuf,
    pub report_dir: PathBuf,
    /// Usable files.
    pub files: usize,
    pub total_duration_s: f64,
    pub train_files: Vec<String>,
    pub val_files: Vec<String>,
    pub train_chunks: usize,
    pub val_chunks: usize,
    pub vqvae_config: VqvaeConfig,
    pub prior_config: PriorConfig,
    pub train_vqvae: bool,
    pub train_prior: bool,
    /// The epoch the run continues after (`--resume`), 0 for a new run.
    pub resumed_at: usize,
}

/// How a stage ended.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub stage: StageName,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    /// Prior: perplexity of the best validation loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_perplexity: Option<f64>,
    /// Prior: training windows per epoch and validation windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_sequences: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_sequences: Option<usize>,
    /// Set when the stage stopped before its last epoch because the validation loss had
    /// not improved for `patience` epochs: the epochs it trained, of `epochs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plateau_stop: Option<PlateauStop>,
}

/// A stage that stopped on a validation plateau.
#[derive(Debug, Clone, Serialize)]
pub struct PlateauStop {
    pub epochs_trained: usize,
    pub epochs: usize,
    pub patience: usize,
}

/// Everything a run reports, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Settings resolved and data loaded.
    Config(Box<RunInfo>),
    StageStarted {
        stage: StageName,
        epochs: usize,
        /// 1-based epoch this invocation starts with.
        first_epoch: usize,
    },
    /// A finished epoch (its checkpoint follows).
    Epoch(EpochReport),
    Warning {
        message: String,
    },
    /// Reconstruction previews of the VQ-VAE after an epoch (WAV + mel PNG).
    Preview {
        epoch: usize,
        files: Vec<PathBuf>,
    },
    /// The run can be resumed from here.
    Checkpoint {
        stage: StageName,
        epoch: usize,
        dir: PathBuf,
    },
    StageFinished(StageSummary),
    /// Stopped before the end; `checkpoint` continues it.
    Interrupted {
        checkpoint: PathBuf,
        by_user: bool,
    },
    Done {
        model_path: PathBuf,
        report_dir: PathBuf,
        warnings: Vec<String>,
        peak_rss_mb: Option<f64>,
    },
}
