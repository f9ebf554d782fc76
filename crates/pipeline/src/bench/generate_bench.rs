//! `bench generate`, side by side: Distill's `generate` and the original system's on the same
//! model file (an original-format `.distill`, which both read), the same count, duration,
//! seed and threads, one after the other in one run, when the original is installed
//! (`DISTILL_REFERENCE`, as for `bench train`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::{Value as Json, json};

use super::process::{
    Measured, distill_exe, last_json, measure, original_command, original_config, ratio,
};

/// Seed of every sound (the original's reference runs use 42).
const SEED: &str = "42";

/// Seconds of audio in the WAV files of `files` (each decoded back).
fn audio_seconds(files: &[PathBuf]) -> anyhow::Result<f64> {
    files.iter().try_fold(0.0, |sum, f| {
        let d =
            audio::decode::decode_file(f).with_context(|| format!("reading {}", f.display()))?;
        Ok(sum + d.duration_s())
    })
}

/// The `file` of each entry of a generate command's `--json` result (a list).
fn result_files(result: &Json) -> Vec<PathBuf> {
    result
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["file"].as_str().map(PathBuf::from))
                .collect()
        })
        .unwrap_or_default()
}

fn summary(m: &Measured, audio_s: f64) -> Json {
    json!({
        "wall_s": m.wall_s,
        "cpu_s": m.cpu_s,
        "cores_busy": m.cpu_s / m.wall_s.max(1e-9),
        "peak_rss_mb": m.peak_rss_mb,
        "audio_s": audio_s,
        "real_time_factor": audio_s / m.wall_s.max(1e-9),
    })
}

/// Distill generating `count` sounds of `duration` seconds from `model`.
fn ours(model: &Path, count: usize, duration: f64, dir: &Path) -> anyhow::Result<Json> {
    let mut cmd = Command::new(distill_exe()?);
    cmd.arg("generate")
        .arg("--model")
        .arg(model)
        .arg("-o")
        .arg(dir.join("ours"))
        .args(["--count", &count.to_string()])
        .args(["--duration", &duration.to_string()])
        .args(["--seed", SEED, "--json"]);
    let m = measure(cmd)?;
    if !m.ok {
        return Err(m.failure("Distill's generate"));
    }
    let files = result_files(&last_json(&m.stdout));
    if files.len() != count {
        bail!(
            "Distill's generate reported {} files, not {count}",
            files.len()
        );
    }
    Ok(summary(&m, audio_seconds(&files)?))
}

/// The original generating the same from the same model file.
fn original(
    install: &Path,
    model: &Path,
    count: usize,
    duration: f64,
    dir: &Path,
) -> anyhow::Result<Json> {
    std::fs::create_dir_all(dir)?;
    let config = original_config(dir)?;
    let out = dir.join("generated");
    let s = |p: &Path| p.to_str().map(str::to_string).context("path is not UTF-8");
    let (config_s, out_s, model_s) = (s(&config)?, s(&out)?, s(model)?);
    let (count_s, duration_s) = (count.to_string(), duration.to_string());
    // Its sub-commands take every option before the positional model argument.
    let m = measure(original_command(
        install,
        &[
            "generate",
            "--duration",
            &duration_s,
            "--count",
            &count_s,
            "--seed",
            SEED,
            "--device",
            "cpu",
            "--config",
            &config_s,
            "--output-dir",
            &out_s,
            "--format",
            "wav",
            "--json",
            &model_s,
        ],
    )?)?;
    if !m.ok {
        return Err(m.failure("the original's generate"));
    }
    let files = result_files(&last_json(&m.stdout));
    if files.is_empty() {
        bail!("the original's generate reported no files");
    }
    Ok(summary(&m, audio_seconds(&files)?))
}

/// Both systems generating `count` × `duration` s from `model`; the original only when
/// `DISTILL_REFERENCE` is set.
pub fn versus_original(model: &Path, count: usize, duration: f64) -> anyhow::Result<Json> {
    if !model.is_file() {
        bail!("{}: no such model file", model.display());
    }
    let dir = std::env::temp_dir().join(format!("distill-bench-generate-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ours = ours(model, count, duration, &dir);
    let reference = std::env::var_os("DISTILL_REFERENCE")
        .map(PathBuf::from)
        .map(|install| original(&install, model, count, duration, &dir.join("original")));
    let _ = std::fs::remove_dir_all(&dir);
    let mut report = json!({
        "model": model.display().to_string(),
        "count": count,
        "duration_s": duration,
        "threads": super::process::threads(),
        "distill": ours?,
    });
    match reference {
        None => {
            report["original"] =
                json!("original not measured (set DISTILL_REFERENCE to its install folder)");
        }
        Some(Err(e)) => report["original"] = json!(format!("original not measured: {e:#}")),
        Some(Ok(orig)) => {
            let d = &report["distill"];
            let ratio = |k: &str| ratio(&d[k], &orig[k]);
            // The original delivers less audio than asked (9.47 s of 10): compare the
            // time per second of audio as well as the whole.
            let per_audio_s = |j: &Json| {
                j["wall_s"].as_f64().unwrap_or(f64::NAN) / j["audio_s"].as_f64().unwrap_or(f64::NAN)
            };
            report["ratios_distill_over_original"] = json!({
                "wall": ratio("wall_s"),
                "cpu": ratio("cpu_s"),
                "peak_memory": ratio("peak_rss_mb"),
                "wall_per_audio_second": per_audio_s(d) / per_audio_s(&orig),
            });
            report["original"] = orig;
        }
    }
    Ok(report)
}
