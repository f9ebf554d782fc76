//! Project automation:
//! * `cargo xtask ci` — format check, clippy (warnings denied), tests;
//! * `cargo xtask bench <name> [args]` — runs a benchmark of the `distill` binary, which
//!   writes `target/bench/<name>.json`.

use std::process::Command;

use anyhow::{Context, bail};

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("+ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The test command README.md documents; CI runs exactly this.
const TEST_ARGS: &[&str] = &["test", "--workspace"];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => {
            cargo(&["fmt", "--all", "--", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            cargo(TEST_ARGS)
        }
        Some("test") => cargo(TEST_ARGS),
        Some("bench") => {
            let Some(name) = args.get(1) else {
                bail!("usage: cargo xtask bench <audio> [--data DIR] [--max-files N]");
            };
            // Same profile and feature set as the tests, so nothing is rebuilt for benches.
            let mut run = vec![
                "run",
                "--quiet",
                "--bin",
                "distill",
                "--",
                "bench",
                name.as_str(),
            ];
            run.extend(args[2..].iter().map(String::as_str));
            cargo(&run)
        }
        _ => {
            eprintln!("usage: cargo xtask ci | test | bench <name> [args]");
            bail!("unknown or missing task")
        }
    }
}
