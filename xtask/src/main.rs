//! Project automation: `cargo xtask ci` (format check, lints, tests) and `cargo xtask bench`.

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
pub const TEST_ARGS: &[&str] = &["test", "--workspace"];

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
        _ => {
            eprintln!("usage: cargo xtask ci | test");
            bail!("unknown or missing task")
        }
    }
}
