//! `distill import`: reference-system model → our format.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::modelfile::{ModelFile, ModelOrigin};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Reference-system model file (PyTorch zip, as written by the Python Distill).
    pub input: PathBuf,
    /// Where to write the converted model.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let model = ModelFile::load(&args.input)?;
    if model.origin == ModelOrigin::Distill {
        eprintln!(
            "note: {} is already in Distill format; writing a copy",
            args.input.display()
        );
    }
    model
        .save(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {} (VQ-VAE{})",
        args.output.display(),
        if model.has_prior() { " + prior" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
