//! `distill evaluate`: model fit (VQ-VAE reconstruction loss and codebooks, the prior's
//! next-token cross-entropy in its own token order), reconstruction of the model's
//! validation files through the codec and vocoder, and generated sounds against the
//! collection.

use std::path::PathBuf;

use anyhow::{Context, bail};
use audio::chunk::{CHUNK_SAMPLES, audio_in_chunk, chunk_signal_with, split_files};
use audio::mel::MelSpectrogram;
use burn::prelude::*;
use prior_model::TokenOrder;
use serde::Serialize;
use vqvae::LevelHealth;

use super::generation::{
    GenerationOptions, GenerationReport, SoundsReport, TrainingCodes, generation, sounds_in_folder,
};
use super::reconstruction::{ReconstructionReport, reconstruction};
use super::{code_grids, perplexity, prior_cross_entropy, prior_sequences, vq_eval};
use crate::backend::Decoding;
use crate::generate::{GenerateSettings, Generator, duration_samples};
use crate::modelfile::ModelFile;
use crate::train::data::short;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    pub model: PathBuf,
    pub data: PathBuf,
    /// Sounds to generate for the generation report (0 = none).
    pub generate: usize,
    pub seed: u64,
    /// Length of each generated sound (default: the lengths of files spread through the collection).
    pub duration_s: Option<f64>,
    pub settings: GenerateSettings,
    pub decoding: Decoding,
    /// A folder of sounds (from any tool) to compare with the collection as well.
    pub sounds: Option<PathBuf>,
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

/// Everything `distill evaluate` reports.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub model: String,
    pub data: String,
    pub files: usize,
    pub chunks: usize,
    pub vqvae: VqvaeFit,
    pub prior: Option<PriorFit>,
    /// The model's validation files through the codec and vocoder.
    pub reconstruction: ReconstructionReport,
    /// Generated sounds against the collection (models with a prior).
    pub generation: Option<GenerationReport>,
    /// The sounds of [`EvaluateOptions::sounds`] against the collection.
    pub sounds: Option<SoundsReport>,
}

/// Chunks batched through the models at once.
const BATCH: usize = 16;

/// Evaluates a model on every usable file of a folder.
pub fn evaluate(options: &EvaluateOptions, device: &Device) -> anyhow::Result<FitReport> {
    let model = ModelFile::load(&options.model)?;
    let report = audio::scan::scan_dataset(&options.data)
        .with_context(|| format!("scanning {}", options.data.display()))?;
    let paths: Vec<_> = report.usable().map(|f| f.path.clone()).collect();
    if paths.is_empty() {
        bail!("{}: no usable audio files", options.data.display());
    }
    let recordings: Vec<Vec<f32>> = paths
        .iter()
        .map(|p| audio::load_48k(p))
        .collect::<Result<_, _>>()?;
    let mut chunks: Vec<Vec<f32>> = Vec::new();
    let mut files: Vec<usize> = Vec::new();
    // Samples of each chunk that hold audio (the rest is the last chunk's padding).
    let mut audio: Vec<usize> = Vec::new();
    for (i, x) in recordings.iter().enumerate() {
        let levelled = chunk_signal_with(x, CHUNK_SAMPLES, model.vqvae_config.normalization);
        for (j, samples) in levelled.into_iter().enumerate() {
            chunks.push(samples);
            files.push(i);
            audio.push(audio_in_chunk(x.len(), CHUNK_SAMPLES, j));
        }
    }
    let refs: Vec<&[f32]> = chunks.iter().map(Vec::as_slice).collect();
    let mel = MelSpectrogram::new(model.spectrogram_config.clone());
    let vq_model = crate::models::vqvae(&model, device)?;
    let vq = vq_eval(
        &vq_model,
        &refs,
        &mel,
        BATCH,
        model.vqvae_config.log_power_weight,
        device,
    )?;
    let (grids, shape) = code_grids(&vq_model, &refs, &mel, BATCH, device)?;

    // The model's own split (training's: same files, same seeded shuffle).
    let ids: Vec<usize> = (0..paths.len()).collect();
    let (train_ids, val_ids) = split_files(&ids, model.vqvae_config.val_fraction);
    let val_ids = if val_ids.is_empty() {
        ids.clone()
    } else {
        val_ids
    };
    let named = |i: usize| (short(&paths[i]), recordings[i].clone());
    let held_out: Vec<(String, Vec<f32>)> = val_ids.iter().map(|&i| named(i)).collect();
    let training: Vec<Vec<f32>> = train_ids.iter().map(|&i| recordings[i].clone()).collect();
    let reconstruction =
        reconstruction(&vq_model, &held_out, &training, &recordings, &mel, device)?;

    let (prior, generation) = match model.has_prior() {
        false => (None, None),
        true => {
            let p = crate::models::prior(&model, device)?;
            let order = model.token_order();
            let seq_len = p.shape().seq_len;
            // Back-to-back windows, each token scored once (as training's validation), over
            // the data the prior was trained on; in raster order one sequence per chunk, first
            // token not scored (as the reference).
            let trim = model.prior_config.as_ref().is_some_and(|c| c.trim_padding);
            let seqs = prior_sequences(
                order,
                &files,
                &grids,
                shape,
                seq_len,
                seq_len,
                trim.then_some(audio.as_slice()),
            )?;
            if seqs.is_empty() || seqs.iter().any(|s| s.len() != seq_len) {
                bail!(
                    "{}: the prior's context ({seq_len} tokens) does not match the VQ-VAE's code grid",
                    options.model.display()
                );
            }
            let nll = prior_cross_entropy(&p, &seqs, BATCH)?;
            let fit = PriorFit {
                token_order: order,
                sequences: seqs.len(),
                cross_entropy_nats: nll,
                perplexity: perplexity(nll),
                bits_per_token: nll / std::f64::consts::LN_2,
            };
            let generation = match options.generate {
                0 => None,
                count => {
                    let train_ids = if train_ids.is_empty() {
                        ids.clone()
                    } else {
                        train_ids
                    };
                    let training: Vec<TrainingCodes> = train_ids
                        .iter()
                        .map(|&f| TrainingCodes {
                            name: short(&paths[f]),
                            grids: files
                                .iter()
                                .zip(&grids)
                                .filter(|(file, _)| **file == f)
                                .map(|(_, g)| g.clone())
                                .collect(),
                            shape,
                        })
                        .collect();

                    let generator =
                        Generator::new(&model, device, options.decoding, options.settings)?;
                    let gen_options = GenerationOptions {
                        count,
                        seed: options.seed,
                        samples: options.duration_s.map(duration_samples).transpose()?,
                        time_downsample: vq_model.arch().time_downsample,
                    };
                    Some(generation(
                        &generator,
                        gen_options,
                        &recordings,
                        &training,
                        &mel,
                    )?)
                }
            };
            (Some(fit), generation)
        }
    };
    let sounds = options
        .sounds
        .as_deref()
        .map(|folder| sounds_in_folder(folder, &recordings, &mel, options.seed))
        .transpose()?;
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
        reconstruction,
        generation,
        sounds,
    })
}
