//! `distill encode` / `distill decode`: audio ↔ code grids.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use audio::wav::{WavOptions, encode_wav};
use burn::prelude::Device;
use clap::Args;

use crate::codes::{CodeGrid, decode as decode_codes, encode as encode_file};
use crate::fsutil::atomic_write;
use crate::generate::WavFormat;
use crate::modelfile::ModelFile;

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Sound file to encode (any supported format).
    pub input: PathBuf,
    /// Output: `.json` (readable) or `.safetensors`.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Start of the excerpt to encode, in seconds.
    #[arg(long, default_value_t = 0.0)]
    pub start: f64,
    /// Length of the excerpt in seconds (default: to the end).
    #[arg(long)]
    pub duration: Option<f64>,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Code grid written by `distill encode`.
    pub codes: PathBuf,
    /// WAV file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Output sample rate (audio is resampled, never relabelled).
    #[arg(long, default_value_t = audio::SAMPLE_RATE)]
    pub sample_rate: u32,
}

pub fn encode(args: &EncodeArgs, device: &Device) -> anyhow::Result<ExitCode> {
    let model = ModelFile::load(&args.model)?;
    let grid = encode_file(&model, &args.input, args.start, args.duration, device)?;
    grid.save(&args.output)?;
    let [h, w] = grid.grid;
    println!(
        "{}: {} x {} positions ({}x{} grid), codebook {}, {:.2} s -> {}",
        args.input.display(),
        crate::codes::levels_text(grid.num_quantizers),
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
    let format = WavFormat {
        sample_rate: args.sample_rate,
        ..WavFormat::default()
    };
    format.validate()?;
    let model = ModelFile::load(&args.model)?;
    let grid = CodeGrid::load(&args.codes)?;
    let audio =
        decode_codes(&model, &grid, device).with_context(|| args.codes.display().to_string())?;
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
