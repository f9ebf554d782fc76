//! Distill's DSP: everything between sound files and the models, and back to sound.
//!
//! * [`decode`]: any format symphonia reads, recognised by content, downmixed to mono.
//! * [`resample`]: rubato's FFT resampler, delay-compensated.
//! * [`chunk`]: 1 s peak-normalised chunks and the reference's file-level split.
//! * [`scan`]: which files of a folder are usable and why the others are not.
//! * [`mel`]: the log-mel front end, numerically equal to the reference's torchaudio one.
//! * [`stft`]: torch-convention STFT / inverse STFT.
//! * [`wav`]: WAV output at any rate and bit depth.

pub mod chunk;
mod config;
pub mod decode;
mod error;
pub mod mel;
pub mod resample;
pub mod scan;
pub mod stft;
mod torchmath;
pub mod vocoder;
pub mod wav;

pub use config::SpectrogramConfig;
pub use error::AudioError;

/// The models' sample rate.
pub const SAMPLE_RATE: u32 = 48_000;

/// Decodes a file and resamples it to 48 kHz mono.
pub fn load_48k(path: &std::path::Path) -> Result<Vec<f32>, AudioError> {
    let d = decode::decode_file(path)?;
    resample::resample(&d.samples, d.sample_rate, SAMPLE_RATE)
}
