//! Command-line interface: the top-level parser and dispatch to the commands, which own
//! their arguments.

use std::process::ExitCode;

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::Backend;
use crate::commands::{codes, evaluate, generate, import, info, scan, studio, train};

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

impl ValueEnum for Backend {
    fn value_variants<'a>() -> &'a [Self] {
        &Backend::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self {
            Backend::Flex => "Burn's pure-Rust CPU backend (fastest on CPU, works everywhere)",
            Backend::Ndarray => "the older ndarray CPU backend",
            Backend::Wgpu => "a GPU through wgpu (Vulkan, Metal, DX12 or OpenGL)",
        };
        Some(PossibleValue::new(self.name()).help(help))
    }
}

// Parsed once per process: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a folder of sounds: what is usable, what is not and why.
    Scan(scan::ScanArgs),
    /// Show what a model file holds: configs, parameter counts, training metadata.
    Info(info::InfoArgs),
    /// Convert a reference-system (PyTorch) .distill file to Distill's own format.
    Import(import::ImportArgs),
    /// Measure how well a model fits a folder of sounds (reconstruction, codebooks, prior).
    Evaluate(evaluate::EvaluateArgs),
    /// Generate new sounds from a trained model.
    Generate(generate::GenerateArgs),
    /// Turn a sound file into the VQ-VAE's code grid (JSON or safetensors).
    Encode(codes::EncodeArgs),
    /// Turn a code grid back into audio.
    Decode(codes::DecodeArgs),
    /// Train the VQ-VAE and the prior on a folder of sounds.
    Train(train::TrainArgs),
    /// Start the studio, a local web app (scan, train, generate, library) in the browser.
    Studio(studio::StudioArgs),
}

/// Runs a parsed command line; the exit code is the command's verdict.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let backend = cli.backend;
    match cli.command {
        Command::Scan(args) => scan::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Import(args) => import::run(&args),
        Command::Evaluate(args) => evaluate::run(&args, backend, &backend.device()?),
        Command::Generate(args) => generate::run(&args, backend, &backend.device()?),
        Command::Encode(args) => codes::encode(&args, &backend.device()?),
        Command::Decode(args) => codes::decode(&args, &backend.device()?),
        Command::Train(args) => train::run(&args, &backend.device()?),
        Command::Studio(args) => studio::run(&args, backend),
    }
}
