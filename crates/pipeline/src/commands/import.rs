//! `distill import`: reference-system model → our format.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::ImportArgs;
use crate::modelfile::{ModelFile, ModelOrigin};

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
