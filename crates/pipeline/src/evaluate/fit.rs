//! `distill evaluate`'s model-fit report: VQ-VAE reconstruction and codebooks, and the
//! prior's next-token cross-entropy in the model's own token order.

use std::path::PathBuf;

use anyhow::{Context, bail};
use audio::mel::MelSpectrogram;
use burn::prelude::*;
use prior_model::TokenOrder;
use serde::Serialize;
use vqvae::LevelHealth;

use super::{code_grids, perplexity, prior_cross_entropy, prior_sequences, vq_eval};
use crate::modelfile::ModelFile;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    pub model: PathBuf,
    pub data: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct VqvaeFit {
    /// Multi-scale log-mel MSE per chunk.
    pub reconstruction_loss: f64,
    pub codebook_health: Vec<LevelHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PriorFit {
    pub token_order: TokenOrder,
    pub sequences: usize,
    pub cross_entropy_nats: f64,
    pub perplexity: f64,
    pub bits_per_token: f64,
}

/// The report `distill evaluate` prints.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub model: String,
    pub data: String,
    pub files: usize,
    pub chunks: usize,
    pub vqvae: VqvaeFit,
    pub prior: Option<PriorFit>,
}

/// Chunks batched through the models at once.
const BATCH: usize = 16;

/// Measures how well a model fits every usable file of a folder.
pub fn evaluate(options: &EvaluateOptions, device: &Device) -> anyhow::Result<FitReport> {
    let model = ModelFile::load(&options.model)?;
    let report = audio::scan::scan_dataset(&options.data)
        .with_context(|| format!("scanning {}", options.data.display()))?;
    let paths: Vec<_> = report.usable().map(|f| f.path.clone()).collect();
    if paths.is_empty() {
        bail!("{}: no usable audio files", options.data.display());
    }
    let mut chunks: Vec<Vec<f32>> = Vec::new();
    let mut files: Vec<usize> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let x = audio::load_48k(path)?;
        for samples in audio::chunk::chunk_signal(&x, audio::chunk::CHUNK_SAMPLES) {
            chunks.push(samples);
            files.push(i);
        }
    }
    let refs: Vec<&[f32]> = chunks.iter().map(Vec::as_slice).collect();
    let mel = MelSpectrogram::new(model.spectrogram_config.clone());
    let vq_model = crate::models::vqvae(&model, device)?;
    let vq = vq_eval(&vq_model, &refs, &mel, BATCH, device)?;
    let prior = match model.has_prior() {
        false => None,
        true => {
            let p = crate::models::prior(&model, device)?;
            let order = model.token_order();
            let (grids, shape) = code_grids(&vq_model, &refs, &mel, BATCH, device)?;
            let seq_len = p.shape().seq_len;
            // Back-to-back windows, each token scored once (as training's validation); in
            // raster order one sequence per chunk, first token not scored (as the reference).
            let seqs = prior_sequences(order, &files, &grids, shape, seq_len, seq_len)?;
            if seqs.is_empty() || seqs.iter().any(|s| s.len() != seq_len) {
                bail!(
                    "{}: the prior's context ({seq_len} tokens) does not match the VQ-VAE's code grid",
                    options.model.display()
                );
            }
            let nll = prior_cross_entropy(&p, &seqs, BATCH)?;
            Some(PriorFit {
                token_order: order,
                sequences: seqs.len(),
                cross_entropy_nats: nll,
                perplexity: perplexity(nll),
                bits_per_token: nll / std::f64::consts::LN_2,
            })
        }
    };
    Ok(FitReport {
        model: options.model.display().to_string(),
        data: options.data.display().to_string(),
        files: paths.len(),
        chunks: chunks.len(),
        vqvae: VqvaeFit {
            reconstruction_loss: vq.loss,
            codebook_health: vq.health,
        },
        prior,
    })
}
