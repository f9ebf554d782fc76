//! Spectrogram parameters, with the reference system's field names.

use serde::{Deserialize, Serialize};

/// Log-mel front-end parameters (reference `SpectrogramConfig`). `f_max = None` means
/// `sample_rate / 2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpectrogramConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    pub f_min: f64,
    pub f_max: Option<f64>,
    pub power: f64,
}

impl Default for SpectrogramConfig {
    fn default() -> Self {
        Self {
            sample_rate: 48_000,
            n_fft: 2048,
            hop_length: 512,
            n_mels: 128,
            f_min: 0.0,
            f_max: None,
            power: 2.0,
        }
    }
}

impl SpectrogramConfig {
    pub fn f_max_hz(&self) -> f64 {
        self.f_max.unwrap_or(f64::from(self.sample_rate) / 2.0)
    }

    /// Frames produced for `samples` input samples (centred STFT).
    pub fn frames_for(&self, samples: usize) -> usize {
        samples / self.hop_length + 1
    }
}
