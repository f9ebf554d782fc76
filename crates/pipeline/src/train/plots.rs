//! The training report's charts: loss curves per stage and the kept VQ-VAE's codebook
//! usage. Drawing failures are warnings, never fatal.

use std::path::Path;

use audio::mel::MelSpectrogram;
use burn::prelude::*;
use vqvae::{ConvVqvae, VqvaeConfig};
use weights::StateDict;

use super::data::Dataset;
use super::events::{EpochReport, StageName};
use super::runner::Runner;
use crate::evaluate::vq_eval;
use crate::report::{LossPoint, codebook_heatmap, loss_curves};

/// Loss curves of a stage as `loss_<stage>.png`.
pub fn losses(run: &mut Runner, stage: StageName, history: &[EpochReport]) {
    let title = match stage {
        StageName::Vqvae => "VQ-VAE: multi-scale mel loss",
        StageName::Prior => "prior: next-token cross-entropy",
    };
    let path = run.report_dir.join(format!("loss_{stage}.png"));
    let points: Vec<LossPoint> = history
        .iter()
        .map(|r| LossPoint {
            epoch: r.epoch,
            train_loss: r.train_loss,
            val_loss: r.val_loss,
            is_best: r.is_best,
        })
        .collect();
    if let Err(e) = loss_curves(&path, title, &points) {
        run.warn(format!("could not write {}: {e:#}", path.display()));
    }
}

/// Per-level code usage of the kept VQ-VAE on the validation chunks, as
/// `codebook_usage.png`.
pub fn codebook_usage(
    run: &mut Runner,
    best: &StateDict,
    cfg: &VqvaeConfig,
    data: &Dataset,
    mel: &MelSpectrogram,
    device: &Device,
) {
    let path = run.report_dir.join("codebook_usage.png");
    if let Err(e) = draw_usage(&path, best, cfg, data, mel, device) {
        run.warn(format!("could not write {}: {e:#}", path.display()));
    }
}

fn draw_usage(
    path: &Path,
    best: &StateDict,
    cfg: &VqvaeConfig,
    data: &Dataset,
    mel: &MelSpectrogram,
    device: &Device,
) -> anyhow::Result<()> {
    let model =
        ConvVqvae::from_state_dict_with(best, cfg.arch(), cfg.dropout.clamp(0.0, 0.99), device)?;
    let val: Vec<&[f32]> = data.val.iter().map(|c| c.samples.as_slice()).collect();
    let codes = vq_eval(
        &model,
        &val,
        mel,
        cfg.batch_size,
        cfg.log_power_weight,
        device,
    )?
    .codes;
    let (levels, k) = (cfg.num_quantizers, cfg.codebook_size);
    let mut counts = vec![vec![0u64; k]; levels];
    for (i, &c) in codes.iter().enumerate() {
        if let Some(n) = usize::try_from(c)
            .ok()
            .and_then(|c| counts[i % levels].get_mut(c))
        {
            *n += 1;
        }
    }
    codebook_heatmap(
        path,
        "VQ-VAE codebook usage on validation chunks (white: unused)",
        &counts,
    )
}
