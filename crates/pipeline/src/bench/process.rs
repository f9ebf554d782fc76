//! Child processes the side-by-side benchmarks measure: Distill's own binary and the
//! original system's command line (`DISTILL_REFERENCE`: the folder
//! `../shared/reference/install.sh` fills, with `src/` and `venv/`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use super::secs;

/// Seeds and launches the original's command line, as `../shared/reference/distill_seeded.py`
/// does (python, numpy and torch seeded; torch's thread count set).
const LAUNCHER: &str = r#"
import os, random, sys
seed = os.environ.get('DISTILL_SEED', ''); threads = os.environ.get('DISTILL_THREADS', '')
import torch
if threads:
    torch.set_num_threads(int(threads))
if seed:
    import numpy as np
    s = int(seed); random.seed(s); np.random.seed(s); torch.manual_seed(s)
from distill.cli import main
sys.argv[0] = 'distill'
main()
"#;

/// What the operating system measured of a child process.
pub struct Measured {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_rss_mb: f64,
    pub stdout: String,
    pub stderr: String,
    pub ok: bool,
}

impl Measured {
    /// An error naming what failed, with the last lines the process wrote to stderr.
    pub fn failure(&self, what: &str) -> anyhow::Error {
        let tail: Vec<&str> = self.stderr.lines().rev().take(5).collect();
        anyhow::anyhow!("{what} failed: {}", tail.join(" | "))
    }
}

/// `a / b` as JSON, or null where either is missing or `b` is not positive.
pub fn ratio(a: &serde_json::Value, b: &serde_json::Value) -> serde_json::Value {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b > 0.0 => serde_json::json!(a / b),
        _ => serde_json::Value::Null,
    }
}

/// Runs `cmd` to completion, measuring it.
pub fn measure(mut cmd: Command) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting a benchmark process")?;
    let mut out_pipe = child.stdout.take().context("stdout")?;
    let mut err_pipe = child.stderr.take().context("stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let mut stderr = String::new();
    let _ = err_pipe.read_to_string(&mut stderr);
    let stdout = reader.join().unwrap_or_default();
    let (ok, cpu_s, peak_rss_mb) = wait_with_usage(child.id())?;
    Ok(Measured {
        wall_s: secs(started),
        cpu_s,
        peak_rss_mb,
        stdout,
        stderr,
        ok,
    })
}

/// Reaps child `pid`: (exited successfully, user + system seconds, peak RSS in MiB).
#[cfg(unix)]
fn wait_with_usage(pid: u32) -> anyhow::Result<(bool, f64, f64)> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers are valid.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if r < 0 {
        bail!("waiting for the benchmark process failed");
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in KiB on Linux.
    Ok((
        ok,
        t(usage.ru_utime) + t(usage.ru_stime),
        usage.ru_maxrss as f64 / 1024.0,
    ))
}

#[cfg(not(unix))]
fn wait_with_usage(_pid: u32) -> anyhow::Result<(bool, f64, f64)> {
    bail!("the side-by-side benchmarks measure processes with wait4 (Unix only)")
}

/// Threads both systems use: all cores (torch's own default).
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The `distill` binary beside this benchmark binary.
pub fn distill_exe() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(format!("distill{}", std::env::consts::EXE_SUFFIX)))
}

/// A configuration for the original that keeps every folder it writes inside `dir`
/// (nothing under its source tree); its models folder is `dir/models`.
pub fn original_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let config = dir.join("config.toml");
    let models = dir.join("models");
    std::fs::create_dir_all(&models)?;
    std::fs::write(
        &config,
        format!(
            "[general]\nproject_name = \"Distill\"\nfirst_run_complete = true\n\n[paths]\ndatasets = \"{d}/datasets\"\nmodels = \"{m}\"\ngenerated = \"{d}/generated\"\npresets = \"{d}/presets\"\nhistory = \"{d}/history\"\n\n[hardware]\ndevice = \"cpu\"\nmax_batch_size = 0\nmemory_limit_gb = 0.0\n",
            d = dir.display(),
            m = models.display()
        ),
    )?;
    Ok(config)
}

/// The original's command line with `args`, seeded (1234) and on [`threads`] threads.
pub fn original_command(install: &Path, args: &[&str]) -> anyhow::Result<Command> {
    let python = install.join("venv/bin/python");
    if !python.exists() {
        bail!(
            "{}: no venv/bin/python (install the original with ../shared/reference/install.sh)",
            install.display()
        );
    }
    let mut cmd = Command::new(&python);
    let t = threads().to_string();
    cmd.arg("-c")
        .arg(LAUNCHER)
        .args(args)
        .env("DISTILL_SEED", "1234")
        .env("DISTILL_THREADS", &t)
        .env("OMP_NUM_THREADS", &t)
        .env("MKL_NUM_THREADS", &t)
        .env("PYTHONUNBUFFERED", "1")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120");
    Ok(cmd)
}

/// The last top-level JSON value (object or array) among a command's printed lines: the
/// original prints its `--json` result after other output.
pub fn last_json(stdout: &str) -> serde_json::Value {
    let lines: Vec<&str> = stdout.lines().collect();
    (0..lines.len())
        .rev()
        .filter(|&i| lines[i] == "{" || lines[i] == "[")
        .find_map(|i| serde_json::from_str(&lines[i..].join("\n")).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_null_where_they_cannot_be_formed() {
        use serde_json::{Value, json};
        assert_eq!(ratio(&json!(1.0), &json!(4.0)), json!(0.25));
        assert_eq!(ratio(&json!(1.0), &json!(0.0)), Value::Null);
        assert_eq!(ratio(&Value::Null, &json!(2.0)), Value::Null);
        assert_eq!(ratio(&json!(3.0), &json!("n/a")), Value::Null);
    }

    #[test]
    fn the_last_printed_json_value_is_the_result() {
        let printed = "Loading model...\n{\n  \"progress\": 1\n}\nGenerated 2 files\n[\n  {\"file\": \"a.wav\"},\n  {\"file\": \"b.wav\"}\n]\n";
        let v = last_json(printed);
        assert_eq!(v[1]["file"], "b.wav", "{v}");
        let object = "warning: slow\n{\n  \"best_val_loss\": 2.5\n}\n";
        assert_eq!(last_json(object)["best_val_loss"], 2.5);
        assert!(last_json("no json here\n").is_null());
        // A value cut short (the process died mid-print) is no result.
        assert!(last_json("{\n  \"a\": 1\n").is_null());
    }
}
