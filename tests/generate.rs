//! `distill generate` end to end.

use std::path::Path;
use std::process::{Command, Output};

fn distill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn fixture_model() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upstream-drums20/model.distill")
}

fn generate(out: &Path, extra: &[&str]) -> Output {
    let model = fixture_model();
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
        "--iterations",
        "16",
    ];
    args.extend_from_slice(extra);
    distill(&args)
}

fn wavs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    v.sort();
    v
}

#[test]
fn same_seed_gives_identical_files_of_the_exact_length() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let o = generate(
            out,
            &[
                "--duration",
                "1.5",
                "--seed",
                "42",
                "--sample-rate",
                "44100",
                "--bit-depth",
                "16",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (wa, wb) = (wavs(&a), wavs(&b));
    assert_eq!(wa.len(), 1);
    assert_eq!(
        std::fs::read(&wa[0]).expect("a"),
        std::fs::read(&wb[0]).expect("b")
    );
    let r = hound::WavReader::open(&wa[0]).expect("wav");
    assert_eq!(
        (r.spec().sample_rate, r.spec().bits_per_sample),
        (44_100, 16)
    );
    assert_eq!(r.duration(), 66_150, "exactly 1.5 s at 44.1 kHz");
    let samples: Vec<i16> = hound::WavReader::open(&wa[0])
        .expect("wav")
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!(
        (29_000..=29_300).contains(&peak),
        "peak {peak} should sit at -1 dBFS"
    );
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(wa[0].with_extension("json")).expect("sidecar"))
            .expect("json");
    assert_eq!(sidecar["seed"], 42);
    assert_eq!(sidecar["token_order"], "raster");
    assert_eq!(sidecar["top_p"], 0.9);
}

#[test]
fn count_uses_distinct_seeds_and_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = generate(
        dir.path(),
        &["--duration", "0.5", "--seed", "3", "--count", "3", "--json"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = wavs(dir.path());
    assert_eq!(files.len(), 3);
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect();
    assert_ne!(bytes[0], bytes[1]);
    assert_ne!(bytes[1], bytes[2]);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json summary");
    assert_eq!(summary.as_array().map(Vec::len), Some(3));
}

#[test]
fn bad_requests_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = generate(dir.path(), &["--duration", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--duration"));
}
