//! Writing generated sounds: a WAV file and a JSON sidecar with every parameter and its
//! seed, so any result can be regenerated exactly.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use audio::wav::{BitDepth, WavOptions, encode_wav};

use super::{GenerateSettings, Sound};
use crate::fsutil::atomic_write;
use crate::train::runner::epoch_seed;

/// Output sample rates accepted (audio is resampled, never relabelled).
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// How a sound is stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WavFormat {
    pub sample_rate: u32,
    pub bit_depth: BitDepth,
    /// Peak-normalise to −1 dBFS.
    pub normalize: bool,
}

impl Default for WavFormat {
    fn default() -> Self {
        Self {
            sample_rate: audio::SAMPLE_RATE,
            bit_depth: BitDepth::Pcm24,
            normalize: true,
        }
    }
}

impl WavFormat {
    pub fn validate(&self) -> anyhow::Result<()> {
        if !SAMPLE_RATES.contains(&self.sample_rate) {
            bail!(
                "the sample rate must be between {} and {} Hz, got {}",
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end(),
                self.sample_rate
            );
        }
        Ok(())
    }

    fn options(&self) -> WavOptions {
        WavOptions {
            sample_rate: self.sample_rate,
            bit_depth: self.bit_depth,
            normalize_dbfs: self.normalize.then_some(-1.0),
            fade_ms: 5.0,
        }
    }
}

/// Distinct, non-overlapping seeds for `count` sounds from one base seed (the reference's
/// seed+i+j repeated chunks); a single sound uses the base seed itself.
pub fn sound_seeds(base: u64, count: usize) -> Vec<u64> {
    (0..count)
        .map(|i| {
            if count == 1 {
                base
            } else {
                epoch_seed(base, 100, i)
            }
        })
        .collect()
}

/// Everything the sidecar of one sound records.
#[derive(Debug, Clone)]
pub struct SoundFile<'a> {
    pub model: &'a Path,
    pub model_id: Option<&'a str>,
    pub seed: u64,
    pub base_seed: u64,
    pub index: usize,
    pub count: usize,
    /// The duration asked for (the sound may be shorter: see
    /// [`super::GenerateSettings::exact_duration`]).
    pub duration_s: f64,
    pub settings: &'a GenerateSettings,
    pub format: WavFormat,
    pub backend: &'a str,
}

/// Writes `sound` as `gen_<seed>.wav` in `dir` with its sidecar `gen_<seed>.json`;
/// returns the WAV's path.
pub fn write_sound(dir: &Path, sound: &Sound, file: &SoundFile) -> anyhow::Result<PathBuf> {
    let wav: PathBuf = dir.join(format!("gen_{}.wav", file.seed));
    atomic_write(&wav, &encode_wav(&sound.audio, &file.format.options())?)
        .with_context(|| format!("writing {}", wav.display()))?;
    let s = file.settings;
    let sidecar = serde_json::json!({
        "file": wav.file_name().map(|n| n.to_string_lossy().into_owned()),
        "model": file.model.display().to_string(),
        "model_id": file.model_id,
        "seed": file.seed,
        "base_seed": file.base_seed,
        "index": file.index,
        "count": file.count,
        "duration_s": sound.seconds(),
        "requested_duration_s": file.duration_s,
        "exact_duration": s.exact_duration,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "candidates": s.candidates,
        "sample_rate": file.format.sample_rate,
        "bit_depth": match file.format.bit_depth {
            BitDepth::Pcm16 => "Pcm16",
            BitDepth::Pcm24 => "Pcm24",
            BitDepth::Float32 => "Float32",
        },
        "normalize": file.format.normalize,
        "griffin_lim_iterations": file.settings.iterations,
        "token_order": sound.codes.order,
        // The codes that made the sound (raster grids, one per 1 s chunk for raster
        // priors): novelty is measured on these, not on a re-encoding.
        "codes": sound.codes,
        "backend": file.backend,
        "generator": format!("distill {}", env!("CARGO_PKG_VERSION")),
    });
    let side = wav.with_extension("json");
    atomic_write(&side, serde_json::to_string_pretty(&sidecar)?.as_bytes())
        .with_context(|| format!("writing {}", side.display()))?;
    Ok(wav)
}
