//! Project automation:
//! * `cargo xtask ci` — format check, clippy (warnings denied), tests;
//! * `cargo xtask bench <audio|generate|train|presets> [args]` — runs a benchmark (the
//!   `distill-bench` binary), which writes `target/bench/<name>.json`.

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

fn bench(name: &str, rest: &[String]) -> anyhow::Result<()> {
    // Build exactly what the tests build (same profile and feature set, so the Burn stack is
    // not compiled a second time), then run that binary.
    cargo(&["test", "--workspace", "--no-run"])?;
    let root = std::env::current_dir()?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let exe = target.join("debug").join("distill-bench");
    let status = Command::new(&exe)
        .args([name, "--root"])
        .arg(&root)
        .args(rest)
        .status()
        .with_context(|| format!("running {}", exe.display()))?;
    if !status.success() {
        bail!("benchmark {name} failed ({status})");
    }
    Ok(())
}

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
        Some("bench") => match args.get(1) {
            Some(name) => bench(name, &args[2..]),
            None => {
                bail!(
                    "usage: cargo xtask bench <audio|generate|train|presets> [--data DIR] [--epochs N]"
                )
            }
        },
        _ => {
            eprintln!("usage: cargo xtask ci | test | bench <audio|generate|train|presets> [args]");
            bail!("unknown or missing task")
        }
    }
}
