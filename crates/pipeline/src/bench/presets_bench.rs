//! `bench presets`: Distill's native codec preset beside the original's layout
//! (`--preset reference`) on one collection, in one run on one machine. Both train one after
//! the other with the same `--time-budget` and seed, then `distill evaluate` measures each on
//! its own validation files (decoded mel against the true mel, the checkerboard, the audio
//! after the vocoder, generated sounds against the collection) and `distill generate` times
//! 8 sounds of 4 s. Beside each model's decoded-mel figures stands what a codec that knew
//! every cell of that model's code grid exactly, and nothing finer, would score (the
//! validation mels with each cell replaced by its geometric-mean level): how much of the
//! distance lies in detail finer than the grid (a codec that draws detail inside its cells,
//! as decoders can, may come nearer).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use audio::mel::MelSpectrogram;
use metrics::spectral::{grid_cell_mean, log_mel_l1, log_spectral_distance};
use serde_json::{Value as Json, json};

use super::process::{distill_exe, measure, ratio, threads};
use super::train_bench::stage_summary;
use crate::modelfile::ModelFile;
use crate::train::data::short;

/// What the benchmark runs.
#[derive(Debug, Clone)]
pub struct PresetsOptions {
    pub data: PathBuf,
    /// `--time-budget` of both trainings (`2m`, `6m`, …).
    pub budget: String,
    /// Sounds `distill evaluate` generates for each model.
    pub sounds: usize,
    pub seed: u64,
}

/// The presets compared, Distill's first.
const PRESETS: [&str; 2] = ["native", "reference"];

/// Sounds and seconds `distill generate` is timed on.
const GENERATED: (usize, f64) = (8, 4.0);

/// Runs the benchmark.
pub fn presets(options: &PresetsOptions) -> anyhow::Result<Json> {
    let dir = std::env::temp_dir().join(format!("distill-bench-presets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let runs: anyhow::Result<Vec<Json>> = PRESETS
        .iter()
        .map(|preset| one_preset(options, preset, &dir))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    let runs = runs?;
    let (native, reference) = (&runs[0], &runs[1]);
    Ok(json!({
        "bench": "presets",
        "data": options.data.display().to_string(),
        "time_budget": options.budget,
        "seed": options.seed,
        "sounds": options.sounds,
        "backend": "flex",
        "threads": threads(),
        "native": native,
        "reference": reference,
        "ratios_native_over_reference": ratios(native, reference),
    }))
}

/// Native's figures over the reference's, each `null` where either report lacks it.
fn ratios(native: &Json, reference: &Json) -> Json {
    let r = |pointer: &str| {
        let pick = |v: &Json| v.pointer(pointer).cloned().unwrap_or(Json::Null);
        ratio(&pick(native), &pick(reference))
    };
    json!({
        "decoded_log_mel_l1": r("/decoded_mel/log_mel_l1"),
        "decoded_lsd_db": r("/decoded_mel/lsd_db"),
        "decoded_lsd_high_db": r("/decoded_mel/lsd_high_db"),
        "mr_stft_after_vocoder": r("/mr_stft_after_vocoder"),
        "generated_nn_ratio": r("/generated/nn_ratio"),
        "training_wall": r("/training/wall_s"),
        "generation_wall": r("/generation/wall_s"),
        "model_bytes": r("/model_bytes"),
    })
}

/// Trains, evaluates and times one preset.
fn one_preset(options: &PresetsOptions, preset: &str, dir: &Path) -> anyhow::Result<Json> {
    let exe = distill_exe()?;
    let model = dir.join(format!("{preset}.distill"));
    let seed = options.seed.to_string();
    let mut train = Command::new(&exe);
    train
        .args(["train", "--json", "--preview-every", "0", "--seed", &seed])
        .args(["--preset", preset, "--time-budget", &options.budget])
        .arg("--data")
        .arg(&options.data)
        .arg("-o")
        .arg(&model);
    let trained = measure(train)?;
    if !trained.ok {
        return Err(trained.failure(&format!("training the {preset} preset")));
    }
    let events: Vec<Json> = trained
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();

    let mut evaluate = Command::new(&exe);
    evaluate
        .args(["evaluate", "--json", "--seed", &seed])
        .args(["--generate", &options.sounds.to_string()])
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&options.data);
    let evaluated = measure(evaluate)?;
    if !evaluated.ok {
        return Err(evaluated.failure(&format!("evaluating the {preset} preset")));
    }
    let report: Json = serde_json::from_str(&evaluated.stdout)
        .with_context(|| format!("reading `distill evaluate --json` of the {preset} preset"))?;

    let mut generate = Command::new(&exe);
    generate
        .args(["generate", "--seed", &seed])
        .args(["--count", &GENERATED.0.to_string()])
        .args(["--duration", &GENERATED.1.to_string()])
        .arg("--model")
        .arg(&model)
        .arg("-o")
        .arg(dir.join(format!("{preset}-generated")));
    let generated = measure(generate)?;
    if !generated.ok {
        return Err(generated.failure(&format!("generating with the {preset} preset")));
    }

    let file = ModelFile::load(&model)?;
    let recon = &report["reconstruction"];
    let validation: Vec<String> = recon["files"]
        .as_array()
        .context("evaluate's report names no validation files")?
        .iter()
        .filter_map(|f| f.as_str().map(String::from))
        .collect();
    let median = |v: &Json| v["median"].clone();
    let audio_seconds = (GENERATED.0 as f64) * GENERATED.1;
    Ok(json!({
        "preset": preset,
        "grid": grid(&file),
        "training": {
            "wall_s": trained.wall_s,
            "cpu_s": trained.cpu_s,
            "peak_rss_mb": trained.peak_rss_mb,
            "vqvae_epochs": stage_summary(&events, "vqvae")["epochs"],
            "prior_epochs": stage_summary(&events, "prior")["epochs"],
        },
        "model_bytes": std::fs::metadata(&model)?.len(),
        "validation_files": validation,
        "decoded_mel": {
            "log_mel_l1": median(&recon["codec_mel"]["log_mel_l1"]),
            "lsd_db": median(&recon["codec_mel"]["lsd_db"]),
            "lsd_high_db": median(&recon["codec_mel"]["lsd_high_db"]),
            "loud_bias": median(&recon["codec_mel"]["loud_bias"]),
        },
        "grid_cell_mean": cell_mean_floor(&file, &options.data, &validation)?,
        "checkerboard": {
            "decoded": median(&recon["checkerboard"]["decoded"]),
            "recording": median(&recon["checkerboard"]["recording"]),
        },
        "mr_stft_after_vocoder": median(&recon["codec"]["mr_stft"]),
        "generated": {
            "nn_ratio": report["generation"]["closeness"]["ratio"],
            "near_silent_share": median(&report["generation"]["near_silent_share"]["generated"]),
            "collection_near_silent_share": median(&report["generation"]["near_silent_share"]["collection"]),
        },
        "generation": {
            "sounds": GENERATED.0,
            "seconds_each": GENERATED.1,
            "wall_s": generated.wall_s,
            "real_time_factor": audio_seconds / generated.wall_s.max(1e-9),
        },
    }))
}

/// The model's code grid for one second (rows, columns, levels) and what its encoder reads.
fn grid(file: &ModelFile) -> Json {
    let c = &file.vqvae_config;
    let (rows, columns) = c.grid_per_second(&file.spectrogram_config);
    json!({
        "rows": rows,
        "columns_per_second": columns,
        "levels": c.num_quantizers,
        "codebook_size": c.codebook_size,
        "encoder_input": c.encoder_input,
    })
}

/// Medians over the validation files of the distance between each file's mel and the same
/// mel with every code cell at its geometric-mean level (see [`grid_cell_mean`]).
fn cell_mean_floor(file: &ModelFile, data: &Path, names: &[String]) -> anyhow::Result<Json> {
    let scan =
        audio::scan::scan_dataset(data).with_context(|| format!("scanning {}", data.display()))?;
    let mel = MelSpectrogram::new(file.spectrogram_config.clone());
    let n_mels = mel.config.n_mels;
    let c = &file.vqvae_config;
    let (mut l1, mut lsd) = (Vec::new(), Vec::new());
    for name in names {
        let Some(path) = scan.usable().map(|f| &f.path).find(|p| short(p) == *name) else {
            bail!("{}: validation file {name} not found", data.display());
        };
        let mut x = audio::load_48k(path)?;
        audio::chunk::peak_normalise(&mut x);
        let truth = mel.log_mel(&x);
        let frames = truth.len() / n_mels;
        let cells = grid_cell_mean(&truth, n_mels, frames, c.freq_downsample, c.time_downsample)?;
        l1.push(log_mel_l1(&cells, &truth)?);
        lsd.push(log_spectral_distance(&cells, &truth, n_mels, frames, 0)?);
    }
    let median = |v: &[f64]| -> anyhow::Result<f64> { Ok(metrics::Summary::of(v)?.median) };
    Ok(json!({ "log_mel_l1": median(&l1)?, "lsd_db": median(&lsd)? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_divide_native_by_reference_and_are_null_where_a_figure_is_missing() {
        let native = json!({
            "decoded_mel": {"log_mel_l1": 0.366, "lsd_db": 10.0},
            "generated": {"nn_ratio": 1.2},
            "model_bytes": 10,
        });
        let reference = json!({
            "decoded_mel": {"log_mel_l1": 0.732, "lsd_db": 12.5, "lsd_high_db": 18.0},
            "generated": {"nn_ratio": null},
            "model_bytes": 5,
        });
        let r = ratios(&native, &reference);
        assert!((r["decoded_log_mel_l1"].as_f64().unwrap_or(0.0) - 0.5).abs() < 1e-12);
        assert!((r["decoded_lsd_db"].as_f64().unwrap_or(0.0) - 0.8).abs() < 1e-12);
        assert_eq!(r["model_bytes"], json!(2.0));
        for missing in ["decoded_lsd_high_db", "generated_nn_ratio", "training_wall"] {
            assert!(r[missing].is_null(), "{missing}: {}", r[missing]);
        }
    }
}
