//! `distill evaluate`: how well a model fits a folder of sounds.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::Device;
use clap::Args;

use crate::evaluate::{EvaluateOptions, evaluate};

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

pub fn run(args: &EvaluateArgs, device: &Device) -> anyhow::Result<ExitCode> {
    let options = EvaluateOptions {
        model: args.model.clone(),
        data: args.data.clone(),
    };
    let report = evaluate(&options, device)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} files, {} one-second chunks",
        report.files, report.chunks
    );
    println!(
        "VQ-VAE reconstruction loss (multi-scale log-mel MSE): {:.4}",
        report.vqvae.reconstruction_loss
    );
    for (q, h) in report.vqvae.codebook_health.iter().enumerate() {
        println!(
            "  level {q}: utilisation {:.1}%, perplexity {:.2}, dead codes {}",
            h.utilization * 100.0,
            h.perplexity,
            h.dead_codes
        );
    }
    match &report.prior {
        None => println!("no prior"),
        Some(p) => println!(
            "prior ({}): cross-entropy {:.4} nats/token, perplexity {:.2}, {:.3} bits/token over {} sequences",
            p.token_order, p.cross_entropy_nats, p.perplexity, p.bits_per_token, p.sequences
        ),
    }
    Ok(ExitCode::SUCCESS)
}
