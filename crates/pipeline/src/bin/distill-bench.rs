//! `distill-bench`: the benchmarks behind `cargo xtask bench <name>` (kept out of the
//! shipped `distill` binary). Each writes `target/bench/<name>.json` under `--root`.
//!
//! Usage: `distill-bench <audio|generate|train> [--data DIR] [--max-files N] [--epochs N]
//! [--model M] [--root DIR]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

struct BenchArgs {
    name: String,
    /// Folder of recordings (default examples/drums).
    data: PathBuf,
    /// At most this many recordings (`bench audio`).
    max_files: usize,
    /// Epochs for `bench train` (default: the automatic tiers).
    epochs: Option<usize>,
    /// Model whose VQ-VAE decodes the mels of `bench audio`.
    model: Option<PathBuf>,
    /// Distill's preset in `bench train` (reference: the original's model, comparable).
    preset: String,
    /// Directory whose target/bench/ receives the report.
    root: PathBuf,
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<BenchArgs> {
    let mut out = BenchArgs {
        name: args
            .next()
            .context("usage: distill-bench <audio|generate|train> [--data DIR] [--max-files N] [--epochs N] [--model M] [--root DIR]")?,
        data: PathBuf::from("examples/drums"),
        max_files: 4,
        epochs: None,
        model: None,
        preset: "reference".into(),
        root: PathBuf::from("."),
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = |v: &str| -> anyhow::Result<usize> {
            v.parse()
                .with_context(|| format!("{flag}: '{v}' is not a whole number"))
        };
        match flag.as_str() {
            "--data" => out.data = PathBuf::from(value),
            "--max-files" => out.max_files = number(&value)?,
            "--epochs" => out.epochs = Some(number(&value)?),
            "--root" => out.root = PathBuf::from(value),
            "--model" => out.model = Some(PathBuf::from(value)),
            "--preset" => out.preset = value,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(out)
}

fn run() -> anyhow::Result<()> {
    let args = parse(std::env::args().skip(1))?;
    let report = match args.name.as_str() {
        "audio" => pipeline::bench::audio(&args.data, args.max_files, args.model.as_deref())?,
        "generate" => pipeline::bench::generate(10.0)?,
        "train" => pipeline::bench::train(&args.data, args.epochs, &args.preset)?,
        other => bail!("unknown benchmark '{other}' (available: audio, generate, train)"),
    };
    let path = pipeline::bench::write_report(&args.root, &args.name, &report)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
