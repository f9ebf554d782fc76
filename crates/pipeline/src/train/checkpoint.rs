//! Training checkpoints: written after every epoch, atomically, so an interrupted run keeps
//! its last completed epoch and `--resume` continues exactly where it stopped.
//!
//! Layout of `<model>.ckpt/`: `checkpoint.json` (written last; it names the other files),
//! `model-eN.safetensors` (current weights), `best-eN.safetensors` (best weights so far),
//! `optim-eN.bpk` (optimiser state). Files of older epochs are removed after the JSON moves on.

use std::path::{Path, PathBuf};

use anyhow::Context;
use prior_config::PriorConfig;
use serde::{Deserialize, Serialize};
use vqvae::VqvaeConfig;
use weights::StateDict;

use super::events::{EpochReport, StageName};
use super::runner::Best;
use crate::fsutil::atomic_write;

/// The state of one stage after a completed epoch.
pub struct StageCheckpoint {
    /// Epochs completed.
    pub epoch: usize,
    pub model: StateDict,
    pub param_ids: Vec<u64>,
    pub optim: Vec<u8>,
    pub best: Best,
    pub history: Vec<EpochReport>,
}

impl StageCheckpoint {
    /// Captures a stage after `epoch` completed epochs.
    pub fn capture<M: burn::module::Module>(
        epoch: usize,
        model: &M,
        state: StateDict,
        optim: &burn::optim::ModuleOptimizer,
        best: &Best,
        history: &[EpochReport],
    ) -> anyhow::Result<Self> {
        Ok(Self {
            epoch,
            model: state,
            param_ids: super::optim::param_ids(model),
            optim: optim
                .into_bytes()
                .map_err(|e| anyhow::anyhow!("saving optimiser state: {e:?}"))?
                .to_vec(),
            best: best.clone(),
            history: history.to_vec(),
        })
    }
}

/// What `checkpoint.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub version: u32,
    pub stage: StageName,
    pub epoch: usize,
    pub seed: u64,
    pub data: PathBuf,
    pub output: PathBuf,
    pub vqvae_config: VqvaeConfig,
    pub prior_config: PriorConfig,
    pub train_prior: bool,
    pub param_ids: Vec<u64>,
    pub best_val_loss: Option<f64>,
    pub best_epoch: Option<usize>,
    pub history: Vec<EpochReport>,
    pub model_file: String,
    pub best_file: Option<String>,
    pub optim_file: String,
}

/// The checkpoint folder of a training run.
pub struct Checkpoints {
    pub dir: PathBuf,
}

impl Checkpoints {
    pub fn for_output(output: &Path) -> Self {
        let mut name = output
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".ckpt");
        Self {
            dir: output.with_file_name(name),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.dir.join(name);
        atomic_write(&path, bytes).with_context(|| format!("writing checkpoint {}", path.display()))
    }

    /// Saves a stage's state; `meta` supplies the run settings.
    pub fn save(&self, meta: &CheckpointMeta, ck: &StageCheckpoint) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let e = ck.epoch;
        let model_file = format!("model-e{e}.safetensors");
        let optim_file = format!("optim-e{e}.bpk");
        self.write(
            &model_file,
            &weights::st::to_bytes(&ck.model, &Default::default())?,
        )?;
        self.write(&optim_file, &ck.optim)?;
        let best_file = match &ck.best {
            Some((_, _, sd)) => {
                let name = format!("best-e{e}.safetensors");
                self.write(&name, &weights::st::to_bytes(sd, &Default::default())?)?;
                Some(name)
            }
            None => None,
        };
        let meta = CheckpointMeta {
            epoch: e,
            param_ids: ck.param_ids.clone(),
            best_val_loss: ck.best.as_ref().map(|b| b.0),
            best_epoch: ck.best.as_ref().map(|b| b.1),
            history: ck.history.clone(),
            model_file: model_file.clone(),
            best_file: best_file.clone(),
            optim_file: optim_file.clone(),
            ..meta.clone()
        };
        self.write(
            "checkpoint.json",
            serde_json::to_string_pretty(&meta)?.as_bytes(),
        )?;
        // Only now are older epochs' files unreferenced.
        let keep = [
            Some(model_file),
            Some(optim_file),
            best_file,
            Some("checkpoint.json".to_string()),
        ];
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !keep.iter().flatten().any(|k| *k == name) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Reads the run settings of a checkpoint folder.
    pub fn load_meta(dir: &Path) -> anyhow::Result<CheckpointMeta> {
        let json_path = dir.join("checkpoint.json");
        let text = std::fs::read_to_string(&json_path)
            .with_context(|| format!("reading {}", json_path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a Distill checkpoint", json_path.display()))
    }

    /// Loads the run settings and the stage state to resume from.
    pub fn load(dir: &Path) -> anyhow::Result<(CheckpointMeta, StageCheckpoint)> {
        let meta = Self::load_meta(dir)?;
        let read_dict = |name: &str| -> anyhow::Result<StateDict> {
            let p = dir.join(name);
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            Ok(weights::st::from_bytes(&bytes)
                .with_context(|| p.display().to_string())?
                .0)
        };
        let model = read_dict(&meta.model_file)?;
        let best = match (&meta.best_file, meta.best_val_loss, meta.best_epoch) {
            (Some(f), Some(v), Some(e)) => Some((v, e, read_dict(f)?)),
            _ => None,
        };
        let optim_path = dir.join(&meta.optim_file);
        let optim = std::fs::read(&optim_path)
            .with_context(|| format!("reading {}", optim_path.display()))?;
        let ck = StageCheckpoint {
            epoch: meta.epoch,
            model,
            param_ids: meta.param_ids.clone(),
            optim,
            best,
            history: meta.history.clone(),
        };
        Ok((meta, ck))
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
