//! Hand-crafted per-sound features for distribution comparisons (MMD, precision/recall):
//! a fixed-length vector per sound, standardised with the collection's statistics.

use audio::mel::MelSpectrogram;
use audio::stft::Stft;
use rayon::prelude::*;

use super::check_rows;
use crate::levels::{NEAR_SILENT_DB, envelope, near_silent_share, onset_frames};
use crate::{MetricsError, Result};

/// Names of the entries of [`sound_features`], in order.
pub const FEATURE_NAMES: [&str; 19] = [
    "logmel_mean_q1",
    "logmel_std_q1",
    "logmel_mean_q2",
    "logmel_std_q2",
    "logmel_mean_q3",
    "logmel_std_q3",
    "logmel_mean_q4",
    "logmel_std_q4",
    "centroid_mean_hz",
    "centroid_std_hz",
    "flatness_mean",
    "flatness_std",
    "rolloff85_mean_hz",
    "rolloff85_std_hz",
    "attack_s",
    "decay_20db_s",
    "crest_db",
    "near_silent_share",
    "onset_rate_hz",
];

/// Band groups of the log-mel statistics: the mel bands split into four equal quarters.
const BAND_GROUPS: usize = 4;
/// Spectral shape (centroid, flatness, rolloff) is measured only on frames within 60 dB of
/// the loudest frame: in silence these descriptors are undefined or pure rounding noise.
const ACTIVE_FRAME_DB: f64 = -60.0;
/// Power floor of the flatness's geometric mean (STFT power of a full-scale tone ≈ 2.6e5).
const FLATNESS_EPS: f64 = 1e-10;
/// Share of frame energy below the rolloff frequency.
const ROLLOFF: f64 = 0.85;

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The [`FEATURE_NAMES`] vector of one sound. The sound is peak-normalised first, so level
/// differences between files do not count; the STFT for the spectral-shape descriptors uses
/// `mel`'s n_fft and hop.
pub fn sound_features(signal: &[f32], mel: &MelSpectrogram) -> Result<Vec<f64>> {
    if signal.is_empty() {
        return Err(MetricsError::Empty { what: "signal" });
    }
    let cfg = &mel.config;
    let mut x = signal.to_vec();
    audio::chunk::peak_normalise(&mut x);
    let log_mel = mel.log_mel(&x);
    let frames = mel.frames_for(x.len());
    let n_mels = cfg.n_mels;
    let mut out = Vec::with_capacity(FEATURE_NAMES.len());
    for g in 0..BAND_GROUPS {
        let bands = g * n_mels / BAND_GROUPS..(g + 1) * n_mels / BAND_GROUPS;
        let vals: Vec<f64> = log_mel[bands.start * frames..bands.end * frames]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let (m, s) = mean_std(&vals);
        out.extend([m, s]);
    }

    let stft = Stft::new(cfg.n_fft, cfg.hop_length);
    let spec = stft.forward(&x);
    let bin_hz = f64::from(cfg.sample_rate) / cfg.n_fft as f64;
    let energies: Vec<f64> = (0..spec.frames)
        .map(|t| spec.frame(t).iter().map(|c| f64::from(c.norm_sqr())).sum())
        .collect();
    let loudest = energies.iter().copied().fold(0.0, f64::max);
    let (mut centroid, mut flatness, mut rolloff) = (Vec::new(), Vec::new(), Vec::new());
    let mut power = Vec::with_capacity(spec.bins);
    for (t, &e) in energies.iter().enumerate() {
        if e <= 0.0 || 10.0 * (e / loudest).log10() < ACTIVE_FRAME_DB {
            continue;
        }
        power.clear();
        power.extend(spec.frame(t).iter().map(|c| f64::from(c.norm_sqr())));
        centroid.push(
            power
                .iter()
                .enumerate()
                .map(|(k, p)| k as f64 * p)
                .sum::<f64>()
                / e
                * bin_hz,
        );
        let log_mean =
            power.iter().map(|p| (p + FLATNESS_EPS).ln()).sum::<f64>() / power.len() as f64;
        flatness.push(log_mean.exp() / (e / power.len() as f64 + FLATNESS_EPS));
        let mut cum = 0.0;
        let k = power
            .iter()
            .position(|p| {
                cum += p;
                cum >= ROLLOFF * e
            })
            .unwrap_or(power.len() - 1);
        rolloff.push(k as f64 * bin_hz);
    }
    for v in [&centroid, &flatness, &rolloff] {
        let (m, s) = mean_std(v);
        out.extend([m, s]);
    }

    let env = envelope(&x, cfg.sample_rate)?;
    let hop_s = cfg.hop_length as f64 / f64::from(cfg.sample_rate);
    let onsets = onset_frames(&log_mel, n_mels, frames, hop_s)?;
    out.extend([
        env.attack_s,
        env.decay_s,
        env.crest_db,
        near_silent_share(&x, NEAR_SILENT_DB)?,
        onsets.len() as f64 / (x.len() as f64 / f64::from(cfg.sample_rate)),
    ]);
    Ok(out)
}

/// [`sound_features`] of every sound, in parallel.
pub fn sound_features_all(sounds: &[Vec<f32>], mel: &MelSpectrogram) -> Result<Vec<Vec<f64>>> {
    sounds.par_iter().map(|s| sound_features(s, mel)).collect()
}

/// Per-feature standardisation with a reference set's mean and standard deviation.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardiser {
    pub mean: Vec<f64>,
    /// Population standard deviation; a feature constant over the reference set gets 1, so
    /// it is only centred (differences from that constant then count in raw units).
    pub std: Vec<f64>,
}

impl Standardiser {
    /// Fits to `rows` (one feature vector per sound, equal lengths, finite, at least one).
    pub fn fit(rows: &[Vec<f64>]) -> Result<Self> {
        let dim = check_rows(rows, "reference features", 1)?;
        let (mut mean, mut std) = (Vec::with_capacity(dim), Vec::with_capacity(dim));
        for j in 0..dim {
            let col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            let (m, s) = mean_std(&col);
            mean.push(m);
            std.push(if s > 1e-12 { s } else { 1.0 });
        }
        Ok(Self { mean, std })
    }

    /// Standardises every row of `rows`.
    pub fn apply(&self, rows: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        let dim = check_rows(rows, "features", 1)?;
        if dim != self.mean.len() {
            return Err(MetricsError::SizeMismatch {
                what: "feature dimension",
                left: dim,
                right: self.mean.len(),
            });
        }
        Ok(rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(self.mean.iter().zip(&self.std))
                    .map(|(v, (m, s))| (v - m) / s)
                    .collect()
            })
            .collect())
    }
}
