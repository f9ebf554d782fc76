//! Command-line interface definition and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::Backend;
use crate::commands;

/// Teach a generative model your own small sound collection, then generate new sounds from it.
#[derive(Debug, Parser)]
#[command(name = "distill", version, about, long_about = None)]
pub struct Cli {
    /// Compute backend. Default: flex, Burn's pure-Rust CPU backend — the fastest CPU
    /// backend and it needs no driver, so it works on every machine. `wgpu` uses a GPU
    /// (Vulkan/Metal/DX12/GL) when one is present; `ndarray` is the older CPU backend.
    #[arg(long, value_enum, default_value_t = Backend::Flex, global = true)]
    pub backend: Backend,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a folder of sounds: what is usable, what is not and why.
    Scan(ScanArgs),
    /// Show what a model file holds: configs, parameter counts, training metadata.
    Info(InfoArgs),
    /// Convert a reference-system (PyTorch) .distill file to Distill's own format.
    Import(ImportArgs),
    /// Measure how well a model fits a folder of sounds (reconstruction, codebooks, prior).
    Evaluate(EvaluateArgs),
    /// Generate new sounds from a trained model.
    Generate(GenerateArgs),
    /// Turn a sound file into the VQ-VAE's code grid (JSON or safetensors).
    Encode(EncodeArgs),
    /// Turn a code grid back into audio.
    Decode(DecodeArgs),
    /// Train the VQ-VAE and the prior on a folder of sounds.
    Train(TrainArgs),
    /// Run a benchmark and write target/bench/<name>.json (used by `cargo xtask bench`).
    #[command(hide = true)]
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Model file (Distill format or a reference-system .distill file).
    pub model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Folder to scan (recursively; hidden files and folders are skipped).
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Reference-system model file (PyTorch zip, as written by the Python Distill).
    pub input: PathBuf,
    /// Where to write the converted model.
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Folder of sounds.
    #[arg(long)]
    pub data: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WavDepth {
    #[value(name = "16")]
    Pcm16,
    #[value(name = "24")]
    Pcm24,
    #[value(name = "32f")]
    Float32,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model file with a prior.
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder for the WAV files and their JSON sidecars.
    #[arg(short, long, default_value = "generated")]
    pub output: PathBuf,
    /// Length of each sound in seconds (exact).
    #[arg(long, default_value_t = 4.0)]
    pub duration: f64,
    /// How many sounds (each with its own derived seed).
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Random seed (default: a random one, recorded in the sidecar).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sampling temperature; 0 = always the most likely code.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Keep only the k most likely codes (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling mass (0 or 1 = off).
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f64,
    /// Output sample rate (resampled properly).
    #[arg(long, default_value_t = 48_000)]
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
    #[arg(skip)]
    pub backend_name: String,
}

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
    #[arg(long, default_value_t = 48_000)]
    pub sample_rate: u32,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark: audio.
    pub name: String,
    /// Folder of recordings to use.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// At most this many recordings.
    #[arg(long, default_value_t = 4)]
    pub max_files: usize,
    /// Epochs for `bench train` (default: the automatic tiers).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Directory whose target/bench/ receives the report.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Stage {
    Vqvae,
    Prior,
    All,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Folder of sound files (searched recursively).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model file to write.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Which stage(s) to train.
    #[arg(long, value_enum, default_value_t = Stage::All)]
    pub stage: Stage,
    /// Existing model whose prior to (re)train, with its VQ-VAE frozen.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// TOML file overriding the automatic configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue an interrupted run from its checkpoint folder (`MODEL.ckpt`).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Epochs (both stages unless --stage picks one).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Codes per RVQ codebook (default by dataset size: 64/128/256).
    #[arg(long)]
    pub codebook_size: Option<usize>,
    /// RVQ levels, 2–4 (default 3).
    #[arg(long)]
    pub rvq_levels: Option<usize>,
    /// Commitment loss weight (default 0.25, applied once).
    #[arg(long)]
    pub commitment_weight: Option<f64>,
    /// Prior hidden size.
    #[arg(long)]
    pub hidden_size: Option<usize>,
    /// Prior transformer layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Prior attention heads (must divide the hidden size).
    #[arg(long)]
    pub heads: Option<usize>,
    /// Random seed: the same seed, data and backend give the same model.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Emit one JSON object per event instead of progress bars.
    #[arg(long)]
    pub json: bool,
    /// Stop (as Ctrl-C does) after this many epochs of this invocation; for testing resume.
    #[arg(long, hide = true)]
    pub stop_after_epochs: Option<usize>,
    /// Folder for the training report: loss curves, codebook usage heatmap and
    /// reconstruction previews (default: next to the model, `<model>.report/`).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Write VQ-VAE reconstruction previews (WAV + mel PNG of validation chunks) every N
    /// epochs and after the last one; 0 = never (default: about 10 per run).
    #[arg(long)]
    pub preview_every: Option<usize>,
}

/// Runs a parsed command line; the exit code is the command's verdict.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan(args) => commands::scan::run(&args),
        Command::Info(args) => commands::info::run(&args),
        Command::Import(args) => commands::import::run(&args),
        Command::Evaluate(args) => commands::evaluate::run(&args, &cli.backend.device()?),
        Command::Generate(mut args) => {
            args.backend_name = cli.backend.name().to_string();
            commands::generate::run(&args, &cli.backend.device()?)
        }
        Command::Encode(args) => commands::codes::encode(&args, &cli.backend.device()?),
        Command::Decode(args) => commands::codes::decode(&args, &cli.backend.device()?),
        Command::Bench(args) => {
            let report = match args.name.as_str() {
                "audio" => crate::bench::audio(
                    &args
                        .data
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("examples/drums")),
                    args.max_files,
                )?,
                "generate" => crate::bench::generate(10.0)?,
                "train" => crate::bench::train(
                    &args
                        .data
                        .clone()
                        .unwrap_or_else(|| PathBuf::from("examples/drums")),
                    args.epochs,
                )?,
                other => {
                    anyhow::bail!("unknown benchmark '{other}' (available: audio, generate, train)")
                }
            };
            let path = crate::bench::write_report(&args.root, &args.name, &report)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(args) => crate::train::run(&args, &cli.backend.device()?),
    }
}
