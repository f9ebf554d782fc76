//! `distill train` end to end on tiny synthetic collections.

use crate::util::{
    distill, generate_from, info_json, json_file, sounds, stderr, synthetic_collection,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TINY: &[&str] = &[
    "--epochs",
    "3",
    "--batch-size",
    "2",
    "--lr",
    "0.002",
    "--hidden-size",
    "32",
    "--layers",
    "1",
    "--heads",
    "2",
];

/// `distill train` of a tiny model (`TINY`) with `--json` events.
fn train(data: &Path, out: &Path, seed: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--seed", seed];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    train_json(data, out, &args)
}

/// `distill train --data DATA -o OUT --json EXTRA…` with the collection's own settings (no `TINY`).
fn train_json(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--data",
        data.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
        "--json",
    ];
    args.extend_from_slice(extra);
    distill(&args)
}

/// The `--json` run's `config` event (the resolved settings).
fn config_event(o: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "config")
        .expect("config event")
}

/// `files` synthetic sounds and a tiny VQ-VAE trained on them (`vq.distill` in the temp dir).
fn tiny_vq(files: usize, seed: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, data) = sounds(files);
    let vq = dir.path().join("vq.distill");
    let o = train(&data, &vq, seed, &["--stage", "vqvae"]);
    assert!(o.status.success(), "{}", stderr(&o));
    (dir, data, vq)
}

/// A tiny prior trained on the VQ-VAE in `vq` (in `dir`, as `NAME.distill`): the run's output
/// and the model file's `distill info --json`.
fn prior_on(
    vq: &Path,
    data: &Path,
    name: &str,
    seed: &str,
    extra: &[&str],
) -> (Output, serde_json::Value) {
    let o = train_prior(vq, data, name, seed, extra);
    assert!(o.status.success(), "{}", stderr(&o));
    (o, info_json(&vq.with_file_name(format!("{name}.distill"))))
}

/// `distill train --stage prior` of a tiny prior on the VQ-VAE in `vq` (to `NAME.distill`).
fn train_prior(vq: &Path, data: &Path, name: &str, seed: &str, extra: &[&str]) -> Output {
    let out = vq.with_file_name(format!("{name}.distill"));
    let mut args = vec!["--stage", "prior", "--model", vq.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    train(data, &out, seed, &args)
}

/// Training a prior on the VQ-VAE in `vq` with a `--config` file of `toml` fails, naming `what`.
fn assert_prior_config_refused(vq: &Path, data: &Path, toml: &str, what: &str) {
    let config = vq.with_file_name("refused.toml");
    std::fs::write(&config, toml).expect("write");
    let args = ["--config", config.to_str().expect("utf-8")];
    let o = train_prior(vq, data, "refused", "4", &args);
    assert!(!o.status.success(), "{toml} was accepted");
    assert!(stderr(&o).contains(what), "{}", stderr(&o));
}

/// `distill generate` of one sound of `seconds` from `model` into `out`, seed 1.
fn generate_seed_1(model: &Path, out: &Path, seconds: &str) -> Output {
    generate_from(model, out, &["--duration", seconds, "--seed", "1"])
}

/// The JSON sidecar of the first sound `distill generate` wrote into `out`.
fn first_sidecar(out: &Path) -> serde_json::Value {
    let sidecar = std::fs::read_dir(out)
        .expect("output")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a sidecar");
    json_file(&sidecar)
}

/// The `--json` events of one kind (`epoch`, `stage_finished`, …) from one stage.
fn events(o: &Output, event: &str, stage: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == event && v["stage"] == stage)
        .collect()
}

fn epochs(o: &Output, stage: &str) -> Vec<serde_json::Value> {
    events(o, "epoch", stage)
}

#[test]
fn trains_both_stages_deterministically_and_skips_broken_files() {
    let (dir, data) = sounds(4);
    std::fs::write(data.join("broken.wav"), b"RIFF0000WAVEfmt garbage").expect("write");

    let a: PathBuf = dir.path().join("a.distill");
    let o = train(&data, &a, "7", &[]);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("broken.wav"), "the broken file is reported");
    let vq = epochs(&o, "vqvae");
    let prior = epochs(&o, "prior");
    assert_eq!((vq.len(), prior.len()), (3, 3));
    // The prior learns: training loss falls over the epochs.
    let first = prior[0]["train_loss"].as_f64().expect("loss");
    let last = prior[2]["train_loss"].as_f64().expect("loss");
    assert!(last < first, "prior training loss {first} -> {last}");
    let vq_first = vq[0]["val_loss"].as_f64().expect("loss");
    let vq_best = vq
        .iter()
        .filter_map(|e| e["val_loss"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert!(
        vq_best < vq_first,
        "VQ-VAE training loss never fell: {vq:?}"
    );

    // The training report beside the model.
    let report = dir.path().join("a.report");
    for png in ["loss_vqvae.png", "loss_prior.png", "codebook_usage.png"] {
        let bytes = std::fs::read(report.join(png)).expect("report image");
        assert!(bytes.starts_with(b"\x89PNG"), "{png} is a PNG");
    }
    assert!(report.join("previews/vqvae_epoch003_chunk0.wav").exists());

    // Same seed, same data, same backend: byte-identical model files.
    let b = dir.path().join("b.distill");
    let o = train(&data, &b, "7", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&a).expect("a"),
        std::fs::read(&b).expect("b"),
        "same seed, different bytes"
    );

    // The result is a complete model: info reads it, with the time-major token order.
    let info = info_json(&a);
    assert_eq!(info["has_prior"], true);
    assert_eq!(info["token_order"], "time_major");
    // The health stored is that of the kept (best) VQ-VAE epoch.
    let best_epoch = info["vqvae_training"]["best_epoch"]
        .as_u64()
        .expect("best epoch") as usize;
    let best = &info["vqvae_training"]["history"][best_epoch - 1]["extra"]["codebook_health"];
    assert_eq!(info["codebook_health_snapshot"]["level_0"], best[0]);
    assert_eq!(
        info["codebook_health_snapshot"]
            .as_object()
            .map(|o| o.len()),
        Some(1)
    );
    // The small tier's grid: 16 rows × 6 columns of one level per second.
    assert_eq!(info["prior"]["seq_len"], 16 * 6);
    assert_eq!(info["prior"]["hidden_size"], 32);
    assert_eq!(
        info["first_token_distribution"].as_array().map(Vec::len),
        Some(64)
    );

    // Prior only, on the trained VQ-VAE.
    let c = dir.path().join("c.distill");
    let o = distill(&[
        "train",
        "--stage",
        "prior",
        "--model",
        a.to_str().expect("utf-8"),
        "--data",
        data.to_str().expect("utf-8"),
        "-o",
        c.to_str().expect("utf-8"),
        "--epochs",
        "1",
        "--hidden-size",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn unusable_data_is_a_clear_error_before_training() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("notes.txt"), b"no audio here").expect("write");
    let out = dir.path().join("m.distill");
    let o = train(dir.path(), &out, "1", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no usable audio"), "{}", stderr(&o));
    assert!(!out.exists());
    let o = distill(&[
        "train",
        "--data",
        dir.path().join("missing").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing"));
    // Invalid settings are refused, naming the problem, on a folder that does hold audio
    // (so it is the settings, not the data, that fail) and before any file is written.
    let data = dir.path().join("sounds");
    std::fs::create_dir(&data).expect("mkdir");
    synthetic_collection(&data, 3);
    let o = distill(&[
        "train",
        "--data",
        data.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
        "--heads",
        "3",
        "--hidden-size",
        "32",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("num_heads (3) must divide hidden_size (32)"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn shipped_presets_work_with_config_and_unknown_keys_are_refused() {
    let (dir, data) = sounds(3);
    // One epoch of the VQ-VAE only: a preset must parse and resolve, not train. Returns the
    // run's resolved settings, the preset as TOML and the model written.
    let resolve = |name: &str| -> (serde_json::Value, toml::Table, PathBuf) {
        let preset = crate::util::root().join(format!("configs/{name}.toml"));
        let out = dir.path().join(format!("{name}.distill"));
        let path = preset.to_str().expect("utf-8");
        let extra = ["--config", path, "--stage", "vqvae", "--epochs", "1"];
        let o = train_json(&data, &out, &extra);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let text = std::fs::read_to_string(&preset).expect("preset");
        let table: toml::Table = toml::from_str(&text).expect("preset is TOML");
        (config_event(&o), table, out)
    };
    for tier in ["small", "medium", "large"] {
        let (config, table, _) = resolve(&format!("prior-{tier}"));
        let hidden = table["prior"]["hidden_size"]
            .as_integer()
            .expect("hidden_size");
        assert_eq!(config["prior_config"]["hidden_size"], hidden, "{tier}");
    }
    // The grid presets: their [vqvae] grid and the prior's row embedding reach the run, and
    // the model's code grid is the one they name (coarse-grid differs from the small tier's).
    for name in ["coarse-grid", "vqvae-hits", "fine-grid"] {
        let (config, table, out) = resolve(name);
        let setting = |key: &str| table["vqvae"][key].as_integer().expect(key);
        for key in ["freq_downsample", "num_quantizers"] {
            assert_eq!(config["vqvae_config"][key], setting(key), "{name} {key}");
        }
        let rows = 128 / setting("freq_downsample");
        assert_eq!(
            info_json(&out)["code_grid"]["tokens_per_second"],
            rows * 6 * setting("num_quantizers"),
            "{name}"
        );
        let embed = table["prior"]["row_embedding"]
            .as_bool()
            .expect("row_embedding");
        let recorded = config["prior_config"]["row_embedding"].as_bool();
        assert_eq!(recorded.unwrap_or(false), embed, "{name}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[prior]\nhidden_sise = 64\n").expect("write");
    let o = distill(&[
        "train",
        "--data",
        data.to_str().expect("utf-8"),
        "--config",
        bad.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown prior setting 'hidden_sise'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_interrupted_run_resumes_to_the_same_model() {
    let (dir, data) = sounds(3);
    let full = dir.path().join("full.distill");
    let o = train(&data, &full, "5", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !dir.path().join("full.distill.ckpt").exists(),
        "checkpoints are removed after success"
    );

    // Stopped after 2 of the 3 VQ-VAE epochs (as Ctrl-C would leave it), then resumed.
    let part = dir.path().join("part.distill");
    let o = train(&data, &part, "5", &["--stop-after-epochs", "2"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let ckpt = dir.path().join("part.distill.ckpt");
    assert!(ckpt.join("checkpoint.json").exists());
    let o = distill(&["train", "--resume", ckpt.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    assert_eq!(epochs(&o, "vqvae").len(), 1, "only the missing epoch runs");
    assert_eq!(
        std::fs::read(&full).expect("full"),
        std::fs::read(&part).expect("resumed"),
        "resumed run differs from the uninterrupted one"
    );

    // Stopped during the prior stage (3 VQ-VAE epochs + 1 prior epoch), then resumed: the
    // prior continues from its checkpoint on the saved VQ-VAE.
    let late = dir.path().join("late.distill");
    let o = train(&data, &late, "5", &["--stop-after-epochs", "4"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(epochs(&o, "prior").len(), 1);
    let ckpt = dir.path().join("late.distill.ckpt");
    let meta = json_file(&ckpt.join("checkpoint.json"));
    assert_eq!(
        (meta["stage"].as_str(), meta["epoch"].as_u64()),
        (Some("prior"), Some(1))
    );
    let o = distill(&["train", "--resume", ckpt.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    assert_eq!(
        epochs(&o, "vqvae").len(),
        0,
        "the VQ-VAE is not trained again"
    );
    assert_eq!(
        epochs(&o, "prior").len(),
        2,
        "only the missing prior epochs run"
    );
    assert_eq!(
        std::fs::read(&full).expect("full"),
        std::fs::read(&late).expect("resumed"),
        "a run resumed in the prior stage differs from the uninterrupted one"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_keeps_a_resumable_checkpoint_and_writes_the_report() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let (dir, data) = sounds(3);
    let out = dir.path().join("m.distill");
    let mut args: Vec<&str> = vec![
        "train",
        "--data",
        data.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
        "--seed",
        "2",
        "--epochs",
        "400",
        "--preview-every",
        "1",
    ];
    args.extend_from_slice(&TINY[2..]); // all but TINY's own --epochs
    args.push("--json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    // Wait for the second VQ-VAE epoch, then press Ctrl-C.
    let mut seen = 0;
    for line in lines.by_ref() {
        let v: serde_json::Value = serde_json::from_str(&line.expect("line")).unwrap_or_default();
        if v["event"] == "epoch" {
            seen += 1;
            if seen == 2 {
                break;
            }
        }
    }
    assert_eq!(seen, 2, "training reported its epochs");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(130), "exit status of a Ctrl-C stop");
    assert!(
        rest.iter().any(|l| l.contains("\"interrupted\"")),
        "an interrupted event: {rest:?}"
    );
    let ckpt = dir.path().join("m.distill.ckpt");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ckpt.join("checkpoint.json")).expect("checkpoint kept"),
    )
    .expect("checkpoint json");
    let saved = meta["epoch"].as_u64().expect("epoch");
    assert!(
        saved >= 2,
        "the completed epochs are checkpointed ({saved})"
    );
    // The report so far: VQ-VAE loss curve and per-epoch previews.
    let report = dir.path().join("m.report");
    assert!(report.join("loss_vqvae.png").exists());
    assert!(report.join("previews/vqvae_epoch001_chunk0.png").exists());
    assert!(report.join("previews/vqvae_epoch001_chunk0.wav").exists());

    // Resuming continues from the checkpoint (stopped again after one epoch to stay quick).
    let o = distill(&[
        "train",
        "--resume",
        ckpt.to_str().expect("utf-8"),
        "--json",
        "--stop-after-epochs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let resumed = epochs(&o, "vqvae");
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0]["epoch"].as_u64(), Some(saved + 1));
}

#[test]
fn the_log_power_weight_reaches_the_training_loss_and_the_model_file() {
    let (dir, data) = sounds(4);
    let first_epoch_loss = |weight: &str| {
        let config = dir.path().join(format!("w{weight}.toml"));
        std::fs::write(&config, format!("[vqvae]\nlog_power_weight = {weight}\n")).expect("write");
        let out = dir.path().join(format!("w{weight}.distill"));
        let o = train(
            &data,
            &out,
            "3",
            &[
                "--stage",
                "vqvae",
                "--config",
                config.to_str().expect("utf-8"),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let info = info_json(&out);
        assert_eq!(
            info["vqvae_config"]["log_power_weight"].as_f64(),
            weight.parse::<f64>().ok(),
            "the weight is recorded"
        );
        let loss = info["vqvae_training"]["history"][0]["train_loss"].as_f64();
        loss.expect("train loss")
    };
    // Same seed and data: the first steps start from the same weights, and a log-power term of
    // several nepers at weight 2 must show in the training loss.
    let (mse_only, with_log_power) = (first_epoch_loss("0"), first_epoch_loss("2"));
    assert!(
        with_log_power > mse_only + 1.0,
        "weight 0: {mse_only}, weight 2: {with_log_power}"
    );
}

#[test]
fn many_short_files_train_with_the_small_tier() {
    // 24 files: the medium tier by count, but 24 one-second chunks of 0.3-s hits are small;
    // the same count of 0.6–7.5-s sounds (over a hundred chunks) stays medium.
    let dir = tempfile::tempdir().expect("temp dir");
    let short = dir.path().join("short");
    std::fs::create_dir(&short).expect("mkdir");
    for i in 0..24 {
        let name = short.join(format!("hit{i}.wav"));
        crate::util::tone_with_noise_burst(&name, 110.0 + 20.0 * i as f32, 13_230, 99 + i);
    }
    let long = dir.path().join("long");
    std::fs::create_dir(&long).expect("mkdir");
    crate::util::synthetic_collection(&long, 24);
    let resolved = |data: &Path, name: &str| {
        let out = dir.path().join(name);
        let o = train_json(data, &out, &["--stage", "vqvae", "--epochs", "1"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let c = config_event(&o);
        let pick = |section: &str, key: &str| c[section][key].as_u64();
        (
            pick("vqvae_config", "freq_downsample"),
            pick("vqvae_config", "num_quantizers"),
            pick("prior_config", "num_layers"),
            // Written only when set.
            c["prior_config"]["row_embedding"]
                .as_bool()
                .unwrap_or(false),
        )
    };
    assert_eq!(
        resolved(&short, "short.distill"),
        (Some(8), Some(1), Some(2), true)
    );
    assert_eq!(
        resolved(&long, "long.distill"),
        (Some(16), Some(3), Some(4), false)
    );
}

#[test]
fn quantiser_dropout_reaches_the_training_loss_and_the_model_file() {
    let (dir, data) = sounds(4);
    let run = |name: &str, share: &str| {
        let config = dir.path().join(format!("{name}.toml"));
        // Two levels: the small tier's one leaves nothing to drop.
        let toml = format!("[vqvae]\nnum_quantizers = 2\nquantizer_dropout = {share}\n");
        std::fs::write(&config, toml).expect("write");
        let out = dir.path().join(format!("{name}.distill"));
        let args = [
            "--stage",
            "vqvae",
            "--config",
            config.to_str().expect("utf-8"),
        ];
        (train(&data, &out, "3", &args), out)
    };
    let history = |out: &Path| {
        let info = info_json(out);
        let loss = |e: usize| info["vqvae_training"]["history"][e]["train_loss"].as_f64();
        (
            info["vqvae_config"]["quantizer_dropout"].as_f64(),
            loss(0),
            loss(1),
        )
    };
    let (o, plain) = run("plain", "0");
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, dropped) = run("dropped", "1");
    assert!(o.status.success(), "{}", stderr(&o));
    let (plain, dropped) = (history(&plain), history(&dropped));
    // Not written when unused (reference files have no such field); recorded when used.
    assert_eq!(plain.0, None);
    assert_eq!(dropped.0, Some(1.0));
    // Same seed and data: the decoder given fewer levels for some chunks learns otherwise.
    assert!(plain.1.is_some() && plain.2.is_some());
    assert_ne!((plain.1, plain.2), (dropped.1, dropped.2));
    let (o, _) = run("refused", "1.5");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("quantizer_dropout"), "{}", stderr(&o));
}

#[test]
fn the_native_prior_learns_no_padding_after_a_file_ends() {
    // 0.6 … 2.7 s: the one validation file (native models hold out 10 % below 50 files, at
    // least one) is longer than the 1-s window, so its padding would make a second window.
    let (dir, data, vq) = tiny_vq(8, "5");
    let prior = |name: &str, extra: &[&str]| {
        let (o, info) = prior_on(&vq, &data, name, "5", extra);
        let finished = events(&o, "stage_finished", "prior");
        assert_eq!(finished.len(), 1, "the prior stage finishes once");
        let trim = info["prior_config"]["trim_padding"].as_bool();
        (finished[0]["val_sequences"].as_u64().expect("count"), trim)
    };
    let (trimmed, trim) = prior("native", &[]);
    assert_eq!(trim, Some(true), "recorded in the model file");
    let config = dir.path().join("padded.toml");
    std::fs::write(&config, "[prior]\ntrim_padding = false\n").expect("write");
    let (padded, trim) = prior("padded", &["--config", config.to_str().expect("utf-8")]);
    assert_eq!(trim, None, "off is the reference's: not written");
    // Back-to-back 1-s validation windows: a 1.2-s file gives two with its padding, one without.
    assert!(
        trimmed < padded,
        "{trimmed} windows trimmed, {padded} padded"
    );
}

#[test]
fn a_step_budget_caps_the_epochs_and_explicit_epochs_lift_it() {
    let (dir, data) = sounds(4);
    let config = dir.path().join("steps.toml");
    std::fs::write(
        &config,
        "[vqvae]\nbatch_size = 1\nmax_epochs = 50\nmax_steps = 9\n\
         [prior]\nbatch_size = 1\nmax_epochs = 50\nmax_steps = 9\n\
         hidden_size = 32\nnum_layers = 1\nnum_heads = 2\n",
    )
    .expect("write");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["--config", config.to_str().expect("utf-8")];
        args.extend_from_slice(extra);
        let o = train_json(&data, &out, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        (o, out)
    };
    let (o, out) = run("budget.distill", &[]);
    let resolved = config_event(&o);
    let chunks = resolved["train_chunks"].as_u64().expect("train_chunks") as usize;
    // One chunk per step: 9 steps hold 9 / chunks whole epochs, far fewer than 50.
    let expected = (9 / chunks).max(1);
    assert!(expected < 50);
    for stage in ["vqvae", "prior"] {
        let key = format!("{stage}_config");
        assert_eq!(resolved[&key]["max_epochs"], expected, "{stage}");
        assert_eq!(epochs(&o, stage).len(), expected, "{stage}");
    }
    let info = info_json(&out);
    assert_eq!(
        info["vqvae_config"]["max_steps"], 9,
        "the budget is recorded"
    );
    assert_eq!(
        info["prior_config"]["max_steps"], 9,
        "the budget is recorded"
    );

    // --epochs names the epochs: they are trained in full, whatever the step budget said.
    let (o, _) = run("epochs.distill", &["--epochs", "3"]);
    assert_eq!(epochs(&o, "vqvae").len(), 3);
    assert_eq!(epochs(&o, "prior").len(), 3);
}

#[test]
fn a_frequency_layout_from_a_config_flows_through_training_encoding_and_generation() {
    let (dir, data) = sounds(4);
    // The reference's 8 rows of 3 levels, not the small tier's 16 rows of 1.
    let config = dir.path().join("rows8.toml");
    std::fs::write(
        &config,
        "[vqvae]\nfreq_downsample = 16\nnum_quantizers = 3\n",
    )
    .expect("write");
    let model = dir.path().join("rows8.distill");
    let o = train(
        &data,
        &model,
        "2",
        &["--config", config.to_str().expect("utf-8")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let m = model.to_str().expect("utf-8");
    let info = info_json(&model);
    assert_eq!(info["vqvae_config"]["freq_downsample"], 16, "recorded");
    // 128 mels in rows of 16 bands: 8 rows; the prior's context is one second of them.
    assert_eq!(info["prior_config"]["seq_len"], 8 * 6 * 3);

    let codes = dir.path().join("codes.json");
    let file = std::fs::read_dir(&data)
        .expect("sounds")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .min()
        .expect("a sound");
    let o = distill(&[
        "encode",
        "--model",
        m,
        file.to_str().expect("utf-8"),
        "-o",
        codes.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json_file(&codes);
    assert_eq!(j["grid"][0], 8, "{}", j["grid"]);
    let decoded = dir.path().join("decoded.wav");
    let o = distill(&[
        "decode",
        "--model",
        m,
        codes.to_str().expect("utf-8"),
        "-o",
        decoded.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(decoded.is_file());

    let out = dir.path().join("generated");
    let o = generate_seed_1(&model, &out, "1.5");
    assert!(o.status.success(), "{}", stderr(&o));
    let s = first_sidecar(&out);
    assert_eq!(s["codes"]["shape"]["rows"], 8);
    assert_eq!(s["codes"]["shape"]["steps"], 9, "1.5 s of 16-frame columns");
}

#[test]
fn the_small_tiers_one_level_codec_trains_generates_and_evaluates() {
    let (dir, data) = sounds(4);
    let model = dir.path().join("l1.distill");
    let o = train(&data, &model, "3", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = info_json(&model);
    assert_eq!(info["vqvae_config"]["num_quantizers"], 1, "recorded");
    // The small tier's 16 rows × 6 columns, one token each: the prior's second of context.
    assert_eq!(info["prior_config"]["seq_len"], 16 * 6);
    let o = distill(&["info", model.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("1 level x 64 codes"), "{text}");

    let out = dir.path().join("generated");
    let o = generate_seed_1(&model, &out, "1.5");
    assert!(o.status.success(), "{}", stderr(&o));
    let s = first_sidecar(&out);
    assert_eq!(s["codes"]["shape"]["levels"], 1, "{}", s["codes"]["shape"]);

    let r = crate::evaluate::evaluate(&model, &data);
    let by_levels = &r["reconstruction"]["codec_mel"]["log_mel_l1_by_levels"];
    assert_eq!(by_levels.as_array().map(Vec::len), Some(1), "{by_levels}");

    // Zero levels is no codec: refused before any training, naming the setting.
    let config = dir.path().join("l0.toml");
    std::fs::write(&config, "[vqvae]\nnum_quantizers = 0\n").expect("write");
    let args = ["--config", config.to_str().expect("utf-8")];
    let o = train(&data, &dir.path().join("l0.distill"), "3", &args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("num_quantizers"), "{}", stderr(&o));
}

#[test]
fn the_native_prior_draws_its_windows_file_by_file() {
    // 0.6 … 2.7 s: the long files have several windows each, the short ones one.
    let (dir, data, vq) = tiny_vq(8, "4");
    let prior = |name: &str, extra: &[&str]| {
        let (_, info) = prior_on(&vq, &data, name, "4", extra);
        let balance = info["prior_config"]["balance_files"].as_bool();
        let history = &info["prior_metadata"]["history"];
        let losses: Vec<f64> = history
            .as_array()
            .expect("history")
            .iter()
            .map(|e| e["train_loss"].as_f64().expect("train loss"))
            .collect();
        (balance, losses)
    };
    let (balance, by_file) = prior("native", &[]);
    assert_eq!(balance, Some(true), "recorded in the model file");
    let config = dir.path().join("alike.toml");
    std::fs::write(&config, "[prior]\nbalance_files = false\n").expect("write");
    let (balance, alike) = prior("alike", &["--config", config.to_str().expect("utf-8")]);
    assert_eq!(balance, None, "off is the reference's: not written");
    // Same seed, model and data: only the draw of windows differs, so the first epoch's
    // batches, and with them its training loss, differ.
    assert_eq!(by_file.len(), alike.len());
    assert_ne!(
        by_file[0], alike[0],
        "the flag must change which windows train the prior"
    );
    // And the draw is seeded: the same run again gives the same losses.
    let (_, again) = prior("native-again", &[]);
    assert_eq!(again, by_file);
}

#[test]
fn small_collections_learn_semitone_copies_recorded_and_switchable_off() {
    let (dir, data, vq) = tiny_vq(8, "4");
    let first_loss = |info: &serde_json::Value| {
        info["prior_metadata"]["history"][0]["train_loss"]
            .as_f64()
            .expect("train loss")
    };
    // Eight files: the small tier, whose prior also learns every file a semitone down and up.
    let (copies_out, copies) = prior_on(&vq, &data, "copies", "4", &[]);
    assert_eq!(
        copies["prior_config"]["augment_speeds"],
        serde_json::json!(prior_config::SEMITONE_COPIES)
    );
    let config = dir.path().join("speeds.toml");
    std::fs::write(&config, "[prior]\naugment_speeds = []\n").expect("write");
    let args = ["--config", config.to_str().expect("utf-8")];
    let (plain_out, plain) = prior_on(&vq, &data, "plain", "4", &args);
    assert!(
        plain["prior_config"].get("augment_speeds").is_none(),
        "switched off, and not written when off"
    );
    // Same seed and VQ-VAE: the copies add windows to draw from, so the first epoch differs.
    assert_ne!(first_loss(&plain), first_loss(&copies));
    // Validation is on the recorded files only, and an epoch draws as many windows: the
    // counts the stage reports are the same either way.
    let counts = |o: &Output| {
        let finished = events(o, "stage_finished", "prior");
        (
            finished[0]["train_sequences"].clone(),
            finished[0]["val_sequences"].clone(),
        )
    };
    assert_eq!(counts(&plain_out), counts(&copies_out));

    assert_prior_config_refused(
        &vq,
        &data,
        "[prior]\naugment_speeds = [3.0]\n",
        "augment_speeds",
    );
}

#[test]
fn the_small_tier_embeds_code_rows_recorded_as_one_vector_per_row() {
    let (dir, data, vq) = tiny_vq(8, "4");
    let (_, rows) = prior_on(&vq, &data, "rows", "4", &[]);
    assert_eq!(rows["prior_config"]["row_embedding"], true, "on by default");
    let config = dir.path().join("plain.toml");
    std::fs::write(&config, "[prior]\nrow_embedding = false\n").expect("write");
    let args = ["--config", config.to_str().expect("utf-8")];
    let (_, plain) = prior_on(&vq, &data, "plain", "4", &args);
    assert!(
        plain["prior_config"].get("row_embedding").is_none(),
        "not written when off"
    );
    // The only new weights: one vector of the prior's width per row of the code grid.
    let count = |info: &serde_json::Value, key: &str| info["prior"][key].as_u64().expect(key);
    let grid_rows = rows["code_grid"]["rows"].as_u64().expect("rows");
    assert_eq!(
        count(&rows, "parameters") - count(&plain, "parameters"),
        grid_rows * count(&rows, "hidden_size")
    );
    // A model with it generates (the host decoder adds each token's row as training did).
    let out = dir.path().join("generated");
    let o = generate_seed_1(&vq.with_file_name("rows.distill"), &out, "1");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_prior_config_refused(&vq, &data, "[prior]\nrow_embedding = 2\n", "row_embedding");
}

#[test]
fn the_prior_stops_on_a_validation_plateau_unless_epochs_are_given() {
    let (dir, data, vq) = tiny_vq(8, "4");
    let config = dir.path().join("patient.toml");
    std::fs::write(&config, "[prior]\nmax_epochs = 12\npatience = 1\n").expect("write");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(format!("{name}.distill"));
        let mut args = vec![
            "--seed",
            "3",
            "--batch-size",
            "2",
            "--lr",
            "0.02",
            "--stage",
            "prior",
            "--model",
            vq.to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let o = train_json(&data, &out, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        (o, info_json(&out))
    };
    let (o, info) = run("patient", &[]);
    assert_eq!(info["prior_config"]["patience"], 1);
    let trained = epochs(&o, "prior").len();
    let finished = events(&o, "stage_finished", "prior");
    let best = finished[0]["best_epoch"].as_u64().expect("best epoch") as usize;
    assert_eq!(
        info["prior_metadata"]["epochs_trained"].as_u64(),
        Some(trained as u64),
        "the model file records the epochs trained"
    );
    // At this learning rate the validation loss stops improving within a few epochs (seeded):
    // the stage ends one epoch after its best (a patience of 1), and says so.
    assert!(trained < 12, "trained all {trained} epochs");
    assert_eq!(trained, best + 1);
    let stop = &finished[0]["plateau_stop"];
    assert_eq!(stop["epochs_trained"], trained);
    assert_eq!(
        (stop["epochs"].as_u64(), stop["patience"].as_u64()),
        (Some(12), Some(1))
    );
    // `--epochs` trains exactly that many, plateau or not.
    let (o, info) = run("exact", &["--epochs", "12"]);
    assert_eq!(epochs(&o, "prior").len(), 12);
    assert!(info["prior_config"].get("patience").is_none());
}

#[test]
fn native_priors_keep_the_average_of_their_weights_unless_switched_off() {
    let (dir, data, vq) = tiny_vq(4, "6");
    let (avg_out, averaged) = prior_on(&vq, &data, "averaged", "6", &[]);
    assert_eq!(
        averaged["prior_config"]["weight_average"].as_f64(),
        Some(prior_config::NATIVE_WEIGHT_AVERAGE)
    );
    let config = dir.path().join("plain.toml");
    std::fs::write(&config, "[prior]\nweight_average = 0\n").expect("write");
    let args = ["--config", config.to_str().expect("utf-8")];
    let (plain_out, plain) = prior_on(&vq, &data, "plain", "6", &args);
    assert_eq!(plain["prior_config"]["weight_average"].as_f64(), Some(0.0));
    // The same training steps either way (the same seed): the training losses agree, while
    // what is validated (and kept) is the average in one run and the weights in the other.
    let losses = |o: &Output, key: &str| -> Vec<f64> {
        epochs(o, "prior")
            .iter()
            .filter_map(|e| e[key].as_f64())
            .collect()
    };
    let (a, p) = (
        losses(&avg_out, "train_loss"),
        losses(&plain_out, "train_loss"),
    );
    assert!(!a.is_empty() && a.len() == p.len());
    for (x, y) in a.iter().zip(&p) {
        assert!((x - y).abs() < 1e-9, "training differs: {a:?} vs {p:?}");
    }
    assert_ne!(losses(&avg_out, "val_loss"), losses(&plain_out, "val_loss"));

    assert_prior_config_refused(
        &vq,
        &data,
        "[prior]\nweight_average = 1.5\n",
        "weight_average",
    );
}
