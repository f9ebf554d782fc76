//! End-to-end tests of the `distill` binary.

use crate::util::{distill, fixture_model, info_json, json_file, root, stderr, stdout};
use std::path::Path;

#[test]
fn help_names_the_default_backend_and_the_train_flags() {
    let o = distill(&["--help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("--backend"));
    assert!(text.contains("Default: flex"), "{text}");
    let o = distill(&["train", "--help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for flag in [
        "--epochs",
        "--hidden-size",
        "--layers",
        "--heads",
        "--lr",
        "--batch-size",
        "--seed",
        "--backend",
    ] {
        assert!(text.contains(flag), "train --help lacks {flag}");
    }
}

#[test]
fn info_reads_the_reference_model() {
    let j = info_json(&fixture_model());
    assert_eq!(j["format"], "reference-pytorch");
    assert_eq!(j["has_prior"], true);
    assert_eq!(j["vqvae_config"]["codebook_size"], 64);
    assert_eq!(j["vqvae_config"]["num_quantizers"], 3);
    assert_eq!(j["vqvae_config"]["decay"], 0.8);
    assert_eq!(j["prior_config"]["hidden_size"], 128);
    assert_eq!(j["prior_config"]["num_layers"], 2);
    assert_eq!(j["prior_config"]["seq_len"], 144);
    let grid = &j["code_grid"];
    assert_eq!(
        [&grid["rows"], &grid["columns_per_second"], &grid["levels"]],
        [8, 6, 3]
    );
    assert_eq!(grid["tokens_per_second"], 144, "the prior's window");
    assert_eq!(j["spectrogram_config"]["n_mels"], 128);
    assert_eq!(j["spectrogram_config"]["f_max"], serde_json::Value::Null);
    // Counts documented for the reference model: 842,753 trainable VQ-VAE parameters and
    // 432,000 prior parameters.
    assert_eq!(j["parameters"]["vqvae"], 842_753);
    assert_eq!(j["parameters"]["prior"], 432_000);
    assert_eq!(j["metadata"]["dataset_name"], "drums20");
    assert_eq!(j["prior_metadata"]["epochs_trained"], 20);

    let o = distill(&["info", fixture_model().to_str().expect("utf-8")]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.contains("432,000"), "{text}");
    assert!(text.contains("level_0"), "{text}");
}

#[test]
fn import_then_info_reports_the_same_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("ours.distill");
    let o = distill(&[
        "import",
        fixture_model().to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "import failed: {}", stderr(&o));
    let ours = info_json(&out);
    let reference = info_json(&fixture_model());
    assert_eq!(ours["format"], "distill-safetensors");
    for key in [
        "vqvae_config",
        "prior_config",
        "spectrogram_config",
        "parameters",
        "prior",
        "metadata",
        "prior_metadata",
        "codebook_health_snapshot",
    ] {
        assert_eq!(ours[key], reference[key], "{key} differs after import");
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn bad_model_files_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.distill", vec![]),
        ("text.distill", b"hello, I am not a model\n".to_vec()),
        (
            "truncated.distill",
            std::fs::read(fixture_model()).expect("fixture")[..4000].to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        let o = distill(&["info", p.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = stderr(&o);
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(
            err.contains(name),
            "{name}: error does not name the file: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let o = distill(&[
        "info",
        dir.path().join("missing.distill").to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.distill"));
}

#[test]
fn scan_reports_usable_files_and_problems() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    for f in ["drum_snare_hard.flac", "drum_splash_hard.flac"] {
        std::fs::copy(root().join("examples/drums").join(f), data.join(f)).expect("copy");
    }
    std::fs::create_dir(data.join("sub")).expect("mkdir");
    std::fs::copy(
        root().join("examples/drums/drum_roll.flac"),
        data.join("sub/roll.wav"),
    )
    .expect("copy");
    std::fs::write(data.join("notes.txt"), b"not audio").expect("write");
    std::fs::write(data.join("broken.wav"), b"RIFF\x24\x00\x00\x00WAVEfmt ").expect("write");
    std::fs::write(data.join(".hidden.wav"), b"ignored").expect("write");
    let o = distill(&["scan", data.to_str().expect("utf-8"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(j["totals"]["files"], 5, "hidden file skipped");
    assert_eq!(
        j["totals"]["usable"], 3,
        "flac content under a .wav name is still read"
    );
    let files = j["files"].as_array().expect("files");
    let by_name = |n: &str| {
        files
            .iter()
            .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(n)))
            .unwrap_or_else(|| panic!("{n} listed"))
    };
    assert_eq!(by_name("roll.wav")["info"]["sample_rate"], 44_100);
    assert_eq!(by_name("notes.txt")["problems"][0]["kind"], "unsupported");
    assert!(by_name("broken.wav")["info"].is_null());

    let o = distill(&["scan", data.to_str().expect("utf-8")]);
    let text = stdout(&o);
    assert!(text.contains("SKIP  notes.txt"), "{text}");
    assert!(text.contains("3 usable"), "{text}");

    let empty = tempfile::tempdir().expect("temp dir");
    let o = distill(&["scan", empty.path().to_str().expect("utf-8")]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "no usable audio is a non-zero exit"
    );
    let o = distill(&["scan", data.join("nope").to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"));
}

#[test]
fn encode_matches_the_reference_codes_and_decode_writes_audio() {
    let dir = tempfile::tempdir().expect("temp dir");
    let codes = dir.path().join("codes.json");
    let audio = root().join("tests/fixtures/upstream-drums20/audio/drum_roll.flac");
    // The fixture's `mel_indices` are the reference's codes for this file's 2 s from 1.0 s,
    // peak-normalised.
    let o = distill(&[
        "encode",
        "--model",
        fixture_model().to_str().expect("utf-8"),
        audio.to_str().expect("utf-8"),
        "--start",
        "1.0",
        "--duration",
        "2.0",
        "-o",
        codes.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "encode failed: {}", stderr(&o));
    let j = json_file(&codes);
    assert_eq!(j["grid"], serde_json::json!([8, 12]));
    assert_eq!(j["shape"], serde_json::json!([96, 3]));
    assert_eq!(j["time_major"].as_array().map(Vec::len), Some(3));
    let got: Vec<i64> = j["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .flat_map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_i64().expect("int"))
        })
        .collect();
    let vectors = std::fs::read(root().join("tests/fixtures/upstream-drums20/vectors.safetensors"))
        .expect("vectors");
    let (t, _) = weights::st::from_bytes(&vectors).expect("parse");
    let expected = t["mel_indices"].to_i64("mel_indices").expect("ints");
    // Every code equals the reference's (measured: 0 of 288 differ; the fixture's margins
    // show no code within 1e-5 of a tie, see the VQ-VAE parity test).
    let differing = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(got.len(), expected.len());
    assert_eq!(
        differing,
        0,
        "{differing} of {} codes differ from the reference's",
        expected.len()
    );

    let wav = dir.path().join("back.wav");
    let o = distill(&[
        "decode",
        "--model",
        fixture_model().to_str().expect("utf-8"),
        codes.to_str().expect("utf-8"),
        "-o",
        wav.to_str().expect("utf-8"),
        "--sample-rate",
        "44100",
    ]);
    assert!(o.status.success(), "decode failed: {}", stderr(&o));
    let r = hound::WavReader::open(&wav).expect("valid wav");
    assert_eq!(r.spec().sample_rate, 44_100);
    assert_eq!(r.duration(), 88_200, "exactly the encoded 2 s");

    std::fs::write(dir.path().join("bad.json"), b"{\"format\": \"x\"}").expect("write");
    let o = distill(&[
        "decode",
        "--model",
        fixture_model().to_str().expect("utf-8"),
        dir.path().join("bad.json").to_str().expect("utf-8"),
        "-o",
        wav.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.json"), "{}", stderr(&o));
}

/// The wgpu backend (a GPU, or a software adapter such as llvmpipe) gives the same codes as
/// flex. Machines without any adapter get a clear error instead, and the test says so.
#[test]
#[ignore = "needs a GPU adapter for wgpu: run `cargo test -- --ignored` on a machine with one"]
fn wgpu_backend_encodes_like_flex() {
    let dir = tempfile::tempdir().expect("temp dir");
    let audio = root().join("examples/drums/drum_snare_hard.flac");
    let run = |backend: &str| {
        let out = dir.path().join(format!("{backend}.json"));
        let o = distill(&[
            "--backend",
            backend,
            "encode",
            "--model",
            fixture_model().to_str().expect("utf-8"),
            audio.to_str().expect("utf-8"),
            "-o",
            out.to_str().expect("utf-8"),
        ]);
        (o, out)
    };
    let (o, flex) = run("flex");
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, wgpu) = run("wgpu");
    assert!(o.status.success(), "{}", stderr(&o));
    let codes = |p: &Path| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).expect("codes"))
            .expect("json")["codes"]
            .clone()
    };
    assert_eq!(codes(&wgpu), codes(&flex));
}
