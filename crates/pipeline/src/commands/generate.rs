//! `distill generate`: new audio from a trained model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use audio::wav::BitDepth;
use burn::prelude::Device;
use clap::{Args, ValueEnum};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::progress;
use crate::backend::Backend;
use crate::generate::{
    BATCH, GenerateSettings, Generator, SoundFile, WavFormat, duration_samples, sound_seeds,
    write_sound,
};
use crate::modelfile::ModelFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WavDepth {
    #[value(name = "16")]
    Pcm16,
    #[value(name = "24")]
    Pcm24,
    #[value(name = "32f")]
    Float32,
}

impl From<WavDepth> for BitDepth {
    fn from(d: WavDepth) -> Self {
        match d {
            WavDepth::Pcm16 => BitDepth::Pcm16,
            WavDepth::Pcm24 => BitDepth::Pcm24,
            WavDepth::Float32 => BitDepth::Float32,
        }
    }
}

/// Most sounds one invocation writes.
const MAX_COUNT: usize = 10_000;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model file with a prior.
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder for the WAV files and their JSON sidecars.
    #[arg(short, long, default_value = "generated")]
    pub output: PathBuf,
    /// Length of each sound in seconds: the most it lasts — a sound that dies away sooner
    /// ends there, its trailing silence cut (see --exact-duration).
    #[arg(long, default_value_t = 4.0)]
    pub duration: f64,
    /// Keep every sound exactly --duration long, trailing silence and all (to line sounds up
    /// on a grid, or for textures that must fill a length).
    #[arg(long)]
    pub exact_duration: bool,
    /// How many sounds (each with its own derived seed).
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Random seed (default: a random one, recorded in the sidecar).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sampling temperature; 0 = always the most likely code.
    #[arg(long, default_value_t = GenerateSettings::default().temperature)]
    pub temperature: f64,
    /// Keep only the k most likely codes (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling mass (0 or 1 = off).
    #[arg(long, default_value_t = GenerateSettings::default().top_p)]
    pub top_p: f64,
    /// Candidates sampled per sound, of which the one the model finds most plausible
    /// throughout is kept (its least likely moment is the likeliest): closer to the collection,
    /// but more often copying it and quieter; each candidate costs a sampling pass.
    #[arg(long, default_value_t = 1)]
    pub candidates: usize,
    /// Output sample rate (resampled properly).
    #[arg(long, default_value_t = audio::SAMPLE_RATE)]
    pub sample_rate: u32,
    /// WAV sample format.
    #[arg(long, value_enum, default_value_t = WavDepth::Pcm24)]
    pub bit_depth: WavDepth,
    /// Keep the raw level instead of normalising the peak to -1 dBFS.
    #[arg(long)]
    pub no_normalize: bool,
    /// Griffin-Lim iterations of the vocoder (more: slightly cleaner, slower; 64 for final renders).
    #[arg(long, default_value_t = audio::vocoder::DEFAULT_ITERATIONS)]
    pub iterations: usize,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &GenerateArgs, backend: Backend, device: &Device) -> anyhow::Result<ExitCode> {
    let samples = duration_samples(args.duration).context("--duration")?;
    if !(1..=MAX_COUNT).contains(&args.count) {
        bail!(
            "--count must be between 1 and {MAX_COUNT}, got {}",
            args.count
        );
    }
    let settings = GenerateSettings {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        iterations: args.iterations,
        candidates: args.candidates,
        exact_duration: args.exact_duration,
    };
    let format = WavFormat {
        sample_rate: args.sample_rate,
        bit_depth: args.bit_depth.into(),
        normalize: !args.no_normalize,
    };
    format.validate().context("--sample-rate")?;
    let model = ModelFile::load(&args.model)?;
    let generator = Generator::new(&model, device, backend.decoding(), settings)?;
    let base_seed = args.seed.unwrap_or_else(rand::random);
    let tokens_per_file = generator.tokens_for(samples);
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let bar = progress::bar(
        (tokens_per_file * args.count) as u64,
        "generating",
        args.json,
    );
    let seeds = sound_seeds(base_seed, args.count);
    let mut results = Vec::new();
    for (batch_index, batch) in seeds.chunks(BATCH).enumerate() {
        let started = std::time::Instant::now();
        let mut rngs: Vec<StdRng> = batch.iter().map(|&s| StdRng::seed_from_u64(s)).collect();
        let mut tick = || bar.inc(1);
        let sounds = generator.render_many(samples, &mut rngs, &mut tick)?;
        let wall = started.elapsed().as_secs_f64() / batch.len() as f64;
        for (j, (sound, &seed)) in sounds.iter().zip(batch).enumerate() {
            let file = SoundFile {
                model: &args.model,
                model_id: model.metadata.model_id.as_deref(),
                seed,
                base_seed,
                index: batch_index * BATCH + j,
                count: args.count,
                duration_s: args.duration,
                settings: generator.settings(),
                format,
                backend: backend.name(),
            };
            let wav = write_sound(&args.output, sound, &file)?;
            let seconds = sound.seconds();
            if !args.json {
                bar.println(format!(
                    "{} ({seconds:.2} s of audio in {wall:.1} s)",
                    wav.display()
                ));
            }
            results.push(json!({"file": wav, "seed": seed, "seconds": seconds, "wall_s": wall}));
        }
    }
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else if bar.is_hidden() {
        for r in &results {
            println!("{}", r["file"].as_str().unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}
