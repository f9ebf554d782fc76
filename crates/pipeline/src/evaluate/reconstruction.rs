//! How much of a recording survives the way back to audio, per validation file, along three
//! chains:
//!
//! * `vocoder`: the true mel → our vocoder (what the vocoder alone loses);
//! * `codec`: audio → VQ-VAE → decoded mel → our vocoder (what a user hears of a sound);
//! * `codec_reference_vocoder`: the same decoded mel through the original system's recipe
//!   (least-squares inverse mel clamped at 0, Griffin-Lim 128 from random phases).
//!
//! For each: log-mel L1 and log-spectral distance (all bands, and above 8 kHz) between the
//! mel handed to the vocoder and the mel of its output — a vocoder that raises the floor of
//! quiet regions shows here — the multi-resolution STFT distance of the output against the
//! original recording, and the noise floor (median log1p mel) of the peak-normalised output.

use audio::mel::MelSpectrogram;
use audio::vocoder::Vocoder;
use burn::prelude::*;
use metrics::Summary;
use metrics::spectral::{
    HIGH_BAND_HZ, LOUD_LOG_MEL, band_above_hz, checkerboard_energy, log_mel_l1,
    log_spectral_distance, loud_bias, multi_resolution_stft_distance, noise_floor,
};
use serde::Serialize;
use vqvae::ConvVqvae;

use super::floats;
use super::generation::{LevelShape, level_shape};

/// One file through one chain.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChainMetrics {
    /// Mean |mel handed to the vocoder − mel of its output| (log1p units).
    pub log_mel_l1: f64,
    /// Log-spectral distance of the same two mels, dB.
    pub lsd_db: f64,
    /// The same above 8 kHz.
    pub lsd_high_db: f64,
    /// Output audio against the original recording.
    pub mr_stft: f64,
    /// Median log1p mel of the peak-normalised output.
    pub noise_floor: f64,
}

/// A chain's metrics over files: median and spread.
#[derive(Debug, Clone, Serialize)]
pub struct ChainSummary {
    pub log_mel_l1: Summary,
    pub lsd_db: Summary,
    pub lsd_high_db: Summary,
    pub mr_stft: Summary,
    pub noise_floor: Summary,
}

impl ChainSummary {
    fn of(rows: &[ChainMetrics]) -> anyhow::Result<Self> {
        let pick =
            |f: fn(&ChainMetrics) -> f64| Summary::of(&rows.iter().map(f).collect::<Vec<_>>());
        Ok(Self {
            log_mel_l1: pick(|m| m.log_mel_l1)?,
            lsd_db: pick(|m| m.lsd_db)?,
            lsd_high_db: pick(|m| m.lsd_high_db)?,
            mr_stft: pick(|m| m.mr_stft)?,
            noise_floor: pick(|m| m.noise_floor)?,
        })
    }
}

/// The decoded mel against the true one: what the VQ-VAE alone loses.
#[derive(Debug, Clone, Serialize)]
pub struct CodecSummary {
    pub log_mel_l1: Summary,
    pub lsd_db: Summary,
    pub lsd_high_db: Summary,
    /// Mean `decoded − true` over the loud cells ([`metrics::spectral::loud_bias`]) of the
    /// files that have any: how far the codec flattens the peaks. `None` when none has.
    pub loud_bias: Option<Summary>,
    /// Log-mel L1 of the mel decoded from the first 1, 2, … levels of the codes alone (the
    /// last is `log_mel_l1`): how much the coarse levels carry by themselves, what quantiser
    /// dropout trains for.
    pub log_mel_l1_by_levels: Vec<Summary>,
}

/// The 2-periodic ("checkerboard") pattern's energy in decoded mels and in the true ones.
#[derive(Debug, Clone, Serialize)]
pub struct Checkerboard {
    pub decoded: Summary,
    pub recording: Summary,
}

/// Reconstruction report over the validation files.
#[derive(Debug, Clone, Serialize)]
pub struct ReconstructionReport {
    pub files: Vec<String>,
    /// Median log1p mel of the (peak-normalised) recordings.
    pub input_noise_floor: Summary,
    /// Decoded mel vs true mel.
    pub codec_mel: CodecSummary,
    /// A decoder that paints a checkerboard shows more of it than the recordings have.
    pub checkerboard: Checkerboard,
    pub vocoder: ChainSummary,
    pub codec: ChainSummary,
    pub codec_reference_vocoder: ChainSummary,
    /// Nearest-neighbour ratio of the training files through the codec chain, against the
    /// collection: what a prior that wrote exactly the training codes would score (the
    /// ceiling the codec and vocoder put on generation).
    pub codec_closeness: Option<f64>,
    /// The level shape of the same codec outputs against the training files themselves:
    /// silences and onsets the codec and vocoder lose, no prior can bring back (speech30's
    /// round trips keep its pauses but under a third of its syllable onsets).
    /// `None` without training files.
    pub codec_level: Option<LevelShape>,
}

/// Seed of the reference recipe's random phases (fixed, so reports repeat).
const REFERENCE_PHASE_SEED: u64 = 1234;

/// Measures one chain: `handed` is the mel given to the vocoder, `out` what it produced.
pub fn chain(
    handed: &[f32],
    out: &[f32],
    original: &[f32],
    mel: &MelSpectrogram,
) -> anyhow::Result<ChainMetrics> {
    let n_mels = mel.config.n_mels;
    let out_mel = mel.log_mel(out);
    let frames = out_mel.len() / n_mels;
    anyhow::ensure!(
        frames * n_mels == handed.len(),
        "vocoder output has {frames} frames for a mel of {}",
        handed.len() / n_mels
    );
    let high = band_above_hz(&mel.config, HIGH_BAND_HZ).min(n_mels - 1);
    let mut normalised = out.to_vec();
    audio::chunk::peak_normalise(&mut normalised);
    Ok(ChainMetrics {
        log_mel_l1: log_mel_l1(handed, &out_mel)?,
        lsd_db: log_spectral_distance(handed, &out_mel, n_mels, frames, 0)?,
        lsd_high_db: log_spectral_distance(handed, &out_mel, n_mels, frames, high)?,
        mr_stft: multi_resolution_stft_distance(out, original)?,
        noise_floor: noise_floor(&mel.log_mel(&normalised))?,
    })
}

/// Runs every chain on each recording (48 kHz mono, peak-normalised here).
/// The codec chain's output (VQ-VAE, then our vocoder) of a recording.
fn through_codec(
    vq: &ConvVqvae,
    recording: &[f32],
    vocoder: &Vocoder,
    mel: &MelSpectrogram,
    device: &Device,
) -> anyhow::Result<Vec<f32>> {
    let n_mels = mel.config.n_mels;
    let mut x = recording.to_vec();
    audio::chunk::peak_normalise(&mut x);
    let m = mel.log_mel(&x);
    let frames = m.len() / n_mels;
    let input = Tensor::<4>::from_data(TensorData::new(m, [1, 1, n_mels, frames]), device);
    let decoded = floats(vq.forward(input).recon, "decoded mel")?;
    Ok(vocoder.synthesize(&decoded, frames, Some(x.len())))
}

/// Runs every chain on the held-out `recordings`, and the codec chain on the `training`
/// ones for the closeness ceiling against `collection` (48 kHz mono).
pub fn reconstruction(
    vq: &ConvVqvae,
    recordings: &[(String, Vec<f32>)],
    training: &[Vec<f32>],
    collection: &[Vec<f32>],
    mel: &MelSpectrogram,
    device: &Device,
) -> anyhow::Result<ReconstructionReport> {
    let ours = Vocoder::new(mel.config.clone());
    let reference = Vocoder::reference(mel.config.clone(), REFERENCE_PHASE_SEED);
    let n_mels = mel.config.n_mels;
    let high = band_above_hz(&mel.config, HIGH_BAND_HZ).min(n_mels - 1);
    let (mut voc, mut codec, mut codec_ref) = (Vec::new(), Vec::new(), Vec::new());
    let (mut floors, mut codec_l1, mut codec_lsd, mut codec_lsd_high) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut board_decoded, mut board_true) = (Vec::new(), Vec::new());
    let mut loud = Vec::new();
    let mut by_levels: Vec<Vec<f64>> = vec![Vec::new(); vq.shape().num_quantizers.max(1)];
    let levels = by_levels.len();
    for (_, recording) in recordings {
        let mut x = recording.clone();
        audio::chunk::peak_normalise(&mut x);
        let true_mel = mel.log_mel(&x);
        let frames = true_mel.len() / n_mels;
        let input = Tensor::<4>::from_data(
            TensorData::new(true_mel.clone(), [1, 1, n_mels, frames]),
            device,
        );
        for (k, l1) in by_levels.iter_mut().enumerate().take(levels - 1) {
            let coarse = floats(vq.forward_levels(input.clone(), k + 1).recon, "decoded mel")?;
            l1.push(log_mel_l1(&coarse, &true_mel)?);
        }
        let decoded = floats(vq.forward(input).recon, "decoded mel")?;
        by_levels[levels - 1].push(log_mel_l1(&decoded, &true_mel)?);
        floors.push(noise_floor(&true_mel)?);
        board_decoded.push(checkerboard_energy(&decoded, n_mels, frames)?);
        board_true.push(checkerboard_energy(&true_mel, n_mels, frames)?);
        codec_l1.push(log_mel_l1(&decoded, &true_mel)?);
        loud.extend(loud_bias(&decoded, &true_mel, LOUD_LOG_MEL)?);
        codec_lsd.push(log_spectral_distance(
            &decoded, &true_mel, n_mels, frames, 0,
        )?);
        codec_lsd_high.push(log_spectral_distance(
            &decoded, &true_mel, n_mels, frames, high,
        )?);
        let len = Some(x.len());
        voc.push(chain(
            &true_mel,
            &ours.synthesize(&true_mel, frames, len),
            &x,
            mel,
        )?);
        codec.push(chain(
            &decoded,
            &ours.synthesize(&decoded, frames, len),
            &x,
            mel,
        )?);
        codec_ref.push(chain(
            &decoded,
            &reference.synthesize(&decoded, frames, len),
            &x,
            mel,
        )?);
    }
    let outputs = training
        .iter()
        .map(|r| through_codec(vq, r, &ours, mel, device))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let codec_level = match training.is_empty() {
        true => None,
        false => Some(level_shape(
            &outputs.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            &training.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            mel,
        )?),
    };
    Ok(ReconstructionReport {
        files: recordings.iter().map(|(n, _)| n.clone()).collect(),
        input_noise_floor: Summary::of(&floors)?,
        codec_mel: CodecSummary {
            log_mel_l1: Summary::of(&codec_l1)?,
            lsd_db: Summary::of(&codec_lsd)?,
            lsd_high_db: Summary::of(&codec_lsd_high)?,
            loud_bias: (!loud.is_empty()).then(|| Summary::of(&loud)).transpose()?,
            log_mel_l1_by_levels: by_levels
                .iter()
                .map(|v| Summary::of(v))
                .collect::<Result<_, _>>()?,
        },
        checkerboard: Checkerboard {
            decoded: Summary::of(&board_decoded)?,
            recording: Summary::of(&board_true)?,
        },
        vocoder: ChainSummary::of(&voc)?,
        codec: ChainSummary::of(&codec)?,
        codec_reference_vocoder: ChainSummary::of(&codec_ref)?,
        // Needs two collection files for its baseline.
        codec_closeness: metrics::collection::nn::nearest_neighbour_ratio(
            &outputs, collection, mel,
        )
        .ok()
        .map(|r| r.ratio),
        codec_level,
    })
}
