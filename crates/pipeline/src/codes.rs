//! Code-grid files: a sound's VQ-VAE codes as JSON (with a readable view) or safetensors,
//! and the way back to audio.

use std::path::Path;

use anyhow::{Context, bail};
use audio::mel::MelSpectrogram;
use audio::vocoder::Vocoder;
use burn::prelude::*;
use prior_model::{GridShape, TokenOrder};
use serde::{Deserialize, Serialize};
use weights::{HostTensor, StateDict};

use crate::evaluate::ints;
use crate::fsutil::atomic_write;
use crate::generate::decode_grid;
use crate::modelfile::ModelFile;
use crate::models;

/// Samples per second of every model.
const RATE: f64 = audio::SAMPLE_RATE as f64;

/// A code grid as written by `distill encode`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrid {
    pub format: String,
    pub version: u32,
    /// `[S, Q]` = positions × levels.
    pub shape: [usize; 2],
    pub num_quantizers: usize,
    pub codebook_size: usize,
    /// Grid `[H, W]`: frequency rows × time steps.
    pub grid: [usize; 2],
    pub n_mels: usize,
    pub frames: usize,
    pub sample_rate: u32,
    pub duration_s: f64,
    /// Position order of `codes`: raster, `p = h·W + w` (frequency-row major).
    pub order: String,
    /// `codes[p][q]`.
    pub codes: Vec<Vec<i64>>,
    /// Readable view: `levels[q][w][h]` (level × time step × frequency row, low rows first).
    #[serde(default)]
    pub time_major: Vec<Vec<Vec<i64>>>,
}

const CODES_FORMAT: &str = "distill-codes";

impl CodeGrid {
    fn validate(&self, source: &Path) -> anyhow::Result<()> {
        let [s, q] = self.shape;
        let [h, w] = self.grid;
        if s != h * w || self.codes.len() != s || self.codes.iter().any(|r| r.len() != q) {
            bail!("{}: code grid shape is inconsistent", source.display());
        }
        if self.frames == 0 || self.n_mels == 0 {
            bail!("{}: the grid describes an empty mel", source.display());
        }
        Ok(())
    }

    /// The codes in raster order, flattened.
    pub fn flat(&self) -> Vec<i64> {
        self.codes.iter().flatten().copied().collect()
    }

    pub fn grid_shape(&self) -> GridShape {
        GridShape {
            rows: self.grid[0],
            steps: self.grid[1],
            levels: self.num_quantizers,
        }
    }

    /// Reads a code grid file (JSON or safetensors, told apart by content).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let grid: CodeGrid = if weights::st::looks_like_safetensors(&bytes) {
            let (t, meta) =
                weights::st::from_bytes(&bytes).with_context(|| path.display().to_string())?;
            let header = meta
                .get("grid")
                .with_context(|| format!("{}: no 'grid' metadata", path.display()))?;
            let mut g: CodeGrid =
                serde_json::from_str(header).with_context(|| path.display().to_string())?;
            let codes = t
                .get("codes")
                .with_context(|| format!("{}: no 'codes' tensor", path.display()))?
                .to_i64("codes")?;
            g.codes = codes
                .chunks(g.shape[1].max(1))
                .map(<[i64]>::to_vec)
                .collect();
            g
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a code grid file", path.display()))?
        };
        if grid.format != CODES_FORMAT {
            bail!(
                "{}: not a Distill code grid (format '{}')",
                path.display(),
                grid.format
            );
        }
        grid.validate(path)?;
        Ok(grid)
    }

    /// Writes the grid atomically: `.safetensors` by extension, else readable JSON.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let is_st = path.extension().is_some_and(|e| e == "safetensors");
        let bytes = if is_st {
            let mut t = StateDict::new();
            t.insert(
                "codes".into(),
                HostTensor::i64(vec![self.shape[0], self.shape[1]], self.flat()),
            );
            let header = CodeGrid {
                codes: Vec::new(),
                time_major: Vec::new(),
                ..self.clone()
            };
            let mut meta = std::collections::BTreeMap::new();
            meta.insert("grid".to_string(), serde_json::to_string(&header)?);
            weights::st::to_bytes(&t, &meta)?
        } else {
            serde_json::to_vec_pretty(self)?
        };
        atomic_write(path, &bytes).with_context(|| format!("writing {}", path.display()))
    }
}

/// "1 level", "3 levels": how messages count residual levels (a codec may have one).
pub fn levels_text(n: usize) -> String {
    if n == 1 {
        "1 level".into()
    } else {
        format!("{n} levels")
    }
}

/// The readable view `levels[q][w][h]`: the time-major token stream, split by level.
fn time_major_view(flat: &[i64], shape: GridShape) -> anyhow::Result<Vec<Vec<Vec<i64>>>> {
    let tokens = TokenOrder::TimeMajor.tokens(flat, shape)?;
    let GridShape {
        rows,
        steps,
        levels,
    } = shape;
    Ok((0..levels)
        .map(|l| {
            (0..steps)
                .map(|w| {
                    (0..rows)
                        .map(|h| tokens[(w * rows + h) * levels + l])
                        .collect()
                })
                .collect()
        })
        .collect())
}

/// Mono 48 kHz samples of `path`, optionally an excerpt, peak-normalised like training chunks.
fn read_excerpt(path: &Path, start_s: f64, duration_s: Option<f64>) -> anyhow::Result<Vec<f32>> {
    if !(start_s >= 0.0 && start_s.is_finite()) {
        bail!("the start must be 0 or more seconds, got {start_s}");
    }
    if let Some(d) = duration_s
        && !(d > 0.0 && d.is_finite())
    {
        bail!("the excerpt's duration must be positive, got {d}");
    }
    let samples = audio::load_48k(path)?;
    let start = (start_s * RATE).round() as usize;
    if start >= samples.len() {
        bail!(
            "{}: --start {start_s} s is past the end ({:.2} s)",
            path.display(),
            samples.len() as f64 / RATE
        );
    }
    let end = match duration_s {
        Some(d) => (start + (d * RATE).round() as usize).min(samples.len()),
        None => samples.len(),
    };
    let mut x = samples[start..end].to_vec();
    audio::chunk::peak_normalise(&mut x);
    Ok(x)
}

/// The code grid of a sound file (or an excerpt: `start_s`, `duration_s`).
pub fn encode(
    model: &ModelFile,
    input: &Path,
    start_s: f64,
    duration_s: Option<f64>,
    device: &Device,
) -> anyhow::Result<CodeGrid> {
    let vq = models::vqvae(model, device)?;
    let x = read_excerpt(input, start_s, duration_s)?;
    let mel = MelSpectrogram::new(model.spectrogram_config.clone());
    let n_mels = model.spectrogram_config.n_mels;
    let frames = mel.frames_for(x.len());
    let m = mel.log_mel(&x);
    let input = Tensor::<4>::from_data(TensorData::new(m, [1, 1, n_mels, frames]), device);
    let (codes, (h, w)) = vq.codes(input);
    let q = vq.shape().num_quantizers;
    let flat = ints(codes, "codes")?;
    let shape = GridShape {
        rows: h,
        steps: w,
        levels: q,
    };
    Ok(CodeGrid {
        format: CODES_FORMAT.into(),
        version: 1,
        shape: [h * w, q],
        num_quantizers: q,
        codebook_size: vq.shape().codebook_size,
        grid: [h, w],
        n_mels,
        frames,
        sample_rate: audio::SAMPLE_RATE,
        duration_s: x.len() as f64 / RATE,
        order: "raster: p = h*W + w (frequency row major)".into(),
        time_major: time_major_view(&flat, shape)?,
        codes: flat.chunks(q).map(<[i64]>::to_vec).collect(),
    })
}

/// Audio at 48 kHz of a code grid, through the model's VQ-VAE decoder and the vocoder.
pub fn decode(model: &ModelFile, grid: &CodeGrid, device: &Device) -> anyhow::Result<Vec<f32>> {
    let vq = models::vqvae(model, device)?;
    let (h, w) = vq.grid_for(grid.n_mels, grid.frames);
    if grid.grid != [h, w] {
        bail!(
            "a {}x{} grid does not fit this model's {h}x{w} grid for a {}x{} mel",
            grid.grid[0],
            grid.grid[1],
            grid.n_mels,
            grid.frames
        );
    }
    if grid.num_quantizers != vq.shape().num_quantizers
        || grid.codebook_size != vq.shape().codebook_size
    {
        bail!(
            "codes are for {} x {} codes, the model has {} x {}",
            levels_text(grid.num_quantizers),
            grid.codebook_size,
            levels_text(vq.shape().num_quantizers),
            vq.shape().codebook_size
        );
    }
    let mel = decode_grid(
        &vq,
        &grid.flat(),
        grid.grid_shape(),
        grid.n_mels,
        grid.frames,
        device,
    )?;
    let vocoder = Vocoder::new(model.spectrogram_config.clone());
    let samples = (grid.duration_s * RATE).round() as usize;
    Ok(vocoder.synthesize(&mel, grid.frames, Some(samples)))
}
