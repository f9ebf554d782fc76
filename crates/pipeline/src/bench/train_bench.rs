//! `bench train`: Distill's training beside the original system's, in the same run on the
//! same machine, corpus, epochs and threads, when the original is installed.
//!
//! Point `DISTILL_REFERENCE` at its install folder (the one `../shared/reference/install.sh`
//! fills: `src/` and `venv/`). Each system runs as a child process; wall time, CPU time
//! (user + system) and peak memory come from the operating system (`wait4`). Distill runs with
//! `--preset reference` by default so both train the same model on the same data (the
//! validation losses then compare directly); `--preset native` measures Distill's own.
//! Without the original installed the report says so and compares nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};

use super::process::{
    Measured, distill_exe, last_json, measure, original_command, original_config, ratio, threads,
};

/// The epochs of one stage (`vqvae` or `prior`) among `distill train --json`'s events: how
/// many, their seconds, and the best validation loss.
pub(super) fn stage_summary(events: &[Json], name: &str) -> Json {
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
}

/// Distill's run and per-stage summaries.
fn ours(data: &Path, epochs: Option<usize>, preset: &str, dir: &Path) -> anyhow::Result<Json> {
    let mut cmd = Command::new(distill_exe()?);
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
    Ok(json!({
        "preset": preset,
        "wall_s": m.wall_s,
        "cpu_s": m.cpu_s,
        "cores_busy": m.cpu_s / m.wall_s.max(1e-9),
        "peak_rss_mb": m.peak_rss_mb,
        "vqvae": stage_summary(&events, "vqvae"),
        "prior": stage_summary(&events, "prior"),
    }))
}

/// The original's two stages on the same corpus; `None` fields where it printed nothing.
fn original(
    install: &Path,
    data: &Path,
    epochs: Option<usize>,
    dir: &Path,
) -> anyhow::Result<Json> {
    let config = original_config(dir)?;
    let models = dir.join("models");
    let run = |args: &[&str]| -> anyhow::Result<Measured> {
        let m = measure(original_command(install, args)?)?;
        if !m.ok {
            return Err(m.failure(&format!("the original's `{}`", args[0])));
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
    let (vq_result, prior_result) = (last_json(&vq.stdout), last_json(&prior.stdout));
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
