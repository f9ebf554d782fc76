//! `bench train`: Distill's training beside the original system's, in the same run on the
//! same machine, corpus, epochs and threads, when the original is installed.
//!
//! Point `DISTILL_REFERENCE` at its install folder (the one `../shared/reference/install.sh`
//! fills: `src/` and `venv/`). Each system runs as a child process; wall time, CPU time
//! (user + system) and peak memory come from the operating system (`wait4`). Distill runs with
//! `--preset reference` by default so both train the same model on the same data (the
//! validation losses then compare directly); `--preset native` measures Distill's own.
//! Without the original installed the report says so and compares nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};

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
struct Measured {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mb: f64,
    stdout: String,
    stderr: String,
    ok: bool,
}

/// Runs `cmd` to completion, measuring it.
fn measure(mut cmd: Command) -> anyhow::Result<Measured> {
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
    bail!("bench train measures processes with wait4 (Unix only)")
}

/// Threads both systems use: all cores (torch's own default).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Distill's run and per-stage summaries.
fn ours(data: &Path, epochs: Option<usize>, preset: &str, dir: &Path) -> anyhow::Result<Json> {
    let exe =
        std::env::current_exe()?.with_file_name(format!("distill{}", std::env::consts::EXE_SUFFIX));
    let mut cmd = Command::new(exe);
    cmd.args([
        "train",
        "--seed",
        "1",
        "--json",
        "--preview-every",
        "0",
        "--preset",
        preset,
    ])
    .arg("--data")
    .arg(data)
    .arg("-o")
    .arg(dir.join("ours.distill"));
    if let Some(e) = epochs {
        cmd.args(["--epochs", &e.to_string()]);
    }
    let m = measure(cmd)?;
    if !m.ok {
        bail!("Distill's training failed: {}", m.stderr);
    }
    let events: Vec<Json> = m
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let stage = |name: &str| -> Json {
        let eps: Vec<&Json> = events
            .iter()
            .filter(|e| e["event"] == "epoch" && e["stage"] == name)
            .collect();
        let total: f64 = eps.iter().filter_map(|e| e["seconds"].as_f64()).sum();
        let best = eps
            .iter()
            .filter_map(|e| e["val_loss"].as_f64().map(|v| (v, *e)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        json!({
            "epochs": eps.len(),
            "seconds": total,
            "seconds_per_epoch": total / eps.len().max(1) as f64,
            "best_val_loss": best.map(|b| b.0),
            "best_epoch": best.map(|b| b.1["epoch"].clone()),
            "per_epoch": eps.iter().map(|e| json!({"val_loss": e["val_loss"], "seconds": e["seconds"]})).collect::<Vec<_>>(),
        })
    };
    Ok(json!({
        "preset": preset,
        "wall_s": m.wall_s,
        "cpu_s": m.cpu_s,
        "cores_busy": m.cpu_s / m.wall_s.max(1e-9),
        "peak_rss_mb": m.peak_rss_mb,
        "vqvae": stage("vqvae"),
        "prior": stage("prior"),
    }))
}

/// The original's two stages on the same corpus; `None` fields where it printed nothing.
fn original(
    install: &Path,
    data: &Path,
    epochs: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Json> {
    let python = install.join("venv/bin/python");
    if !python.exists() {
        bail!(
            "{}: no venv/bin/python (install the original with ../shared/reference/install.sh)",
            install.display()
        );
    }
    // The original finds no audio under hidden folders; give it a plain copy of the corpus path.
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
    let run = |args: &[&str]| -> anyhow::Result<Measured> {
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
        let m = measure(cmd)?;
        if !m.ok {
            bail!(
                "the original's `{}` failed: {}",
                args[0],
                m.stderr
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        Ok(m)
    };
    let vq_epochs = epochs.unwrap_or(100).to_string();
    let data_s = data.to_str().context("corpus path is not UTF-8")?;
    let config_s = config.to_str().context("path is not UTF-8")?;
    let out_s = dir.join("vqvae_train");
    let out_s = out_s.to_str().context("path is not UTF-8")?;
    let vq = run(&[
        "train",
        "--epochs",
        &vq_epochs,
        "--device",
        "cpu",
        "--config",
        config_s,
        "--model-name",
        "bench",
        "--output-dir",
        out_s,
        "--json",
        data_s,
    ])?;
    let model = models.join("bench.distill");
    let model_s = model.to_str().context("path is not UTF-8")?;
    let mut prior_args = vec!["train-prior"];
    let prior_epochs = epochs.map(|e| e.to_string());
    if let Some(e) = &prior_epochs {
        prior_args.extend(["--epochs", e]);
    }
    prior_args.extend(["--device", "cpu", "--json", model_s, data_s]);
    let prior = run(&prior_args)?;
    let result = |stdout: &str| -> Json {
        // The --json result is the last top-level JSON value among upstream's prints.
        let lines: Vec<&str> = stdout.lines().collect();
        (0..lines.len())
            .rev()
            .filter(|&i| lines[i] == "{")
            .find_map(|i| serde_json::from_str(&lines[i..].join("\n")).ok())
            .unwrap_or(Json::Null)
    };
    let (vq_result, prior_result) = (result(&vq.stdout), result(&prior.stdout));
    Ok(json!({
        "wall_s": vq.wall_s + prior.wall_s,
        "cpu_s": vq.cpu_s + prior.cpu_s,
        "cores_busy": (vq.cpu_s + prior.cpu_s) / (vq.wall_s + prior.wall_s).max(1e-9),
        "peak_rss_mb": vq.peak_rss_mb.max(prior.peak_rss_mb),
        "vqvae": {"wall_s": vq.wall_s, "result": vq_result},
        "prior": {"wall_s": prior.wall_s, "result": prior_result},
    }))
}

/// The first value found under any of `keys` in a JSON object, searched recursively.
fn find_number(v: &Json, keys: &[&str]) -> Option<f64> {
    match v {
        Json::Object(m) => keys
            .iter()
            .find_map(|k| m.get(*k).and_then(Json::as_f64))
            .or_else(|| m.values().find_map(|x| find_number(x, keys))),
        Json::Array(a) => a.iter().find_map(|x| find_number(x, keys)),
        _ => None,
    }
}

/// Seconds of our stage's epochs until its validation loss first reaches `target`.
fn time_to(stage: &Json, target: f64) -> Option<f64> {
    let mut elapsed = 0.0;
    stage["per_epoch"].as_array()?.iter().find_map(|e| {
        elapsed += e["seconds"].as_f64().unwrap_or(0.0);
        (e["val_loss"].as_f64()? <= target).then_some(elapsed)
    })
}

/// Runs the benchmark: Distill (with `preset`) and, when installed, the original.
pub fn train(data: &Path, epochs: Option<usize>, preset: &str) -> anyhow::Result<Json> {
    let dir = std::env::temp_dir().join(format!("distill-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ours = ours(data, epochs, preset, &dir);
    let reference = std::env::var_os("DISTILL_REFERENCE")
        .map(PathBuf::from)
        .map(|install| original(&install, data, epochs, &dir.join("original")));
    let _ = std::fs::remove_dir_all(&dir);
    let ours = ours?;
    let mut report = json!({
        "bench": "train",
        "data": data.display().to_string(),
        "backend": "flex",
        "threads": threads(),
        "distill": ours,
    });
    match reference {
        None => {
            report["original"] =
                json!("original not measured (set DISTILL_REFERENCE to its install folder)");
        }
        Some(Err(e)) => {
            report["original"] = json!(format!("original not measured: {e:#}"));
        }
        Some(Ok(orig)) => {
            let vq_best = find_number(&orig["vqvae"]["result"], &["best_val_loss", "val_loss"]);
            let prior_ppl = find_number(
                &orig["prior"]["result"],
                &["best_perplexity", "final_perplexity"],
            );
            let ratio = |a: &Json, b: &Json| match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) if b > 0.0 => json!(a / b),
                _ => Json::Null,
            };
            let reach_vq = vq_best.and_then(|t| time_to(&report["distill"]["vqvae"], t));
            let reach_prior = prior_ppl.and_then(|p| time_to(&report["distill"]["prior"], p.ln()));
            report["ratios_distill_over_original"] = json!({
                "wall": ratio(&report["distill"]["wall_s"], &orig["wall_s"]),
                "cpu": ratio(&report["distill"]["cpu_s"], &orig["cpu_s"]),
                "peak_memory": ratio(&report["distill"]["peak_rss_mb"], &orig["peak_rss_mb"]),
                "time_to_original_best_vqvae_val_loss": reach_vq.map(|t| t / orig["vqvae"]["wall_s"].as_f64().unwrap_or(f64::NAN)),
                "time_to_original_best_prior_perplexity": reach_prior.map(|t| t / orig["prior"]["wall_s"].as_f64().unwrap_or(f64::NAN)),
            });
            report["original_best"] =
                json!({"vqvae_val_loss": vq_best, "prior_perplexity": prior_ppl});
            report["original"] = orig;
        }
    }
    Ok(report)
}
