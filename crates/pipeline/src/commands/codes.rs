//! `distill encode` / `distill decode`: audio ↔ code grids.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use audio::mel::MelSpectrogram;
use audio::vocoder::Vocoder;
use audio::wav::{WavOptions, encode_wav};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use vqvae::ConvVqvae;
use weights::{HostTensor, StateDict};

use crate::cli::{DecodeArgs, EncodeArgs};
use crate::fsutil::atomic_write;
use crate::modelfile::ModelFile;
use crate::models;

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
        if self.frames == 0 || self.frames.div_ceil(16) != w || self.n_mels.div_ceil(16) != h {
            bail!(
                "{}: grid {h}x{w} does not match a {}x{} mel",
                source.display(),
                self.n_mels,
                self.frames
            );
        }
        Ok(())
    }

    fn flat(&self) -> Vec<i64> {
        self.codes.iter().flatten().copied().collect()
    }
}

fn load_codes(path: &Path) -> anyhow::Result<CodeGrid> {
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

fn time_major(codes: &[Vec<i64>], h: usize, w: usize, q: usize) -> Vec<Vec<Vec<i64>>> {
    (0..q)
        .map(|l| {
            (0..w)
                .map(|t| (0..h).map(|r| codes[r * w + t][l]).collect())
                .collect()
        })
        .collect()
}

/// Mono 48 kHz samples of `path`, optionally an excerpt, peak-normalised like training chunks.
fn read_excerpt(path: &Path, start_s: f64, duration_s: Option<f64>) -> anyhow::Result<Vec<f32>> {
    let samples = audio::load_48k(path)?;
    let start = ((start_s.max(0.0)) * 48_000.0).round() as usize;
    if start >= samples.len() {
        bail!(
            "{}: --start {start_s} s is past the end ({:.2} s)",
            path.display(),
            samples.len() as f64 / 48_000.0
        );
    }
    let end = match duration_s {
        Some(d) => (start + (d.max(0.0) * 48_000.0).round() as usize).min(samples.len()),
        None => samples.len(),
    };
    let mut x = samples[start..end].to_vec();
    audio::chunk::peak_normalise(&mut x);
    Ok(x)
}

pub fn encode(args: &EncodeArgs, device: &Device) -> anyhow::Result<ExitCode> {
    let model = ModelFile::load(&args.model)?;
    let vq = models::vqvae(&model, device)?;
    let x = read_excerpt(&args.input, args.start, args.duration)?;
    let mel = MelSpectrogram::new(model.spectrogram_config.clone());
    let n_mels = model.spectrogram_config.n_mels;
    let frames = mel.frames_for(x.len());
    let m = mel.log_mel(&x);
    let input = Tensor::<4>::from_data(TensorData::new(m, [1, 1, n_mels, frames]), device);
    let (codes, (h, w)) = vq.codes(input);
    let q = vq.shape().num_quantizers;
    let flat = codes
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let rows: Vec<Vec<i64>> = flat.chunks(q).map(<[i64]>::to_vec).collect();
    let grid = CodeGrid {
        format: CODES_FORMAT.into(),
        version: 1,
        shape: [h * w, q],
        num_quantizers: q,
        codebook_size: vq.shape().codebook_size,
        grid: [h, w],
        n_mels,
        frames,
        sample_rate: 48_000,
        duration_s: x.len() as f64 / 48_000.0,
        order: "raster: p = h*W + w (frequency row major)".into(),
        time_major: time_major(&rows, h, w, q),
        codes: rows,
    };
    let is_st = args.output.extension().is_some_and(|e| e == "safetensors");
    let bytes = if is_st {
        let mut t = StateDict::new();
        t.insert("codes".into(), HostTensor::i64(vec![h * w, q], flat));
        let header = CodeGrid {
            codes: Vec::new(),
            time_major: Vec::new(),
            ..grid.clone()
        };
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("grid".to_string(), serde_json::to_string(&header)?);
        weights::st::to_bytes(&t, &meta)?
    } else {
        serde_json::to_vec_pretty(&grid)?
    };
    atomic_write(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "{}: {} levels x {} positions ({}x{} grid), codebook {}, {:.2} s -> {}",
        args.input.display(),
        q,
        h * w,
        h,
        w,
        grid.codebook_size,
        grid.duration_s,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn decode(args: &DecodeArgs, device: &Device) -> anyhow::Result<ExitCode> {
    let model = ModelFile::load(&args.model)?;
    let vq = models::vqvae(&model, device)?;
    let grid = load_codes(&args.codes)?;
    if grid.num_quantizers != vq.shape().num_quantizers
        || grid.codebook_size != vq.shape().codebook_size
    {
        bail!(
            "{}: codes are for {} levels x {} codes, the model has {} x {}",
            args.codes.display(),
            grid.num_quantizers,
            grid.codebook_size,
            vq.shape().num_quantizers,
            vq.shape().codebook_size
        );
    }
    let mel = decode_grid(&vq, &grid, device)?;
    let vocoder = Vocoder::new(model.spectrogram_config.clone());
    let samples = (grid.duration_s * 48_000.0).round() as usize;
    let audio = vocoder.synthesize(&mel, grid.frames, Some(samples));
    let opts = WavOptions {
        sample_rate: args.sample_rate,
        ..WavOptions::default()
    };
    atomic_write(&args.output, &encode_wav(&audio, &opts)?)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "{} -> {} ({:.2} s)",
        args.codes.display(),
        args.output.display(),
        grid.duration_s
    );
    Ok(ExitCode::SUCCESS)
}

/// Log-mel `[n_mels][frames]` decoded from a grid.
fn decode_grid(vq: &ConvVqvae, grid: &CodeGrid, device: &Device) -> anyhow::Result<Vec<f32>> {
    let [s, q] = grid.shape;
    let idx = Tensor::<3, Int>::from_data(TensorData::new(grid.flat(), [1, s, q]), device);
    let z = vq.codes_to_embeddings(idx, (grid.grid[0], grid.grid[1]))?;
    let mel = vq.decode(z, (grid.n_mels, grid.frames));
    match mel.into_data().convert::<f32>().try_to_vec::<f32>() {
        Ok(v) => Ok(v),
        Err(e) => bail!("reading decoded mel: {e:?}"),
    }
}
