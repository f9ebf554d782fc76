//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference system's drums20 model (a PyTorch `.distill` file).
pub fn fixture_model() -> PathBuf {
    root().join("tests/fixtures/upstream-drums20/model.distill")
}

/// Runs the `distill` binary.
pub fn distill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// `distill generate --model MODEL -o OUT EXTRA…`.
pub fn generate_from(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "generate",
        "--model",
        model.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    distill(&args)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The WAV files of a folder, sorted.
pub fn wavs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    v.sort();
    v
}

/// A temporary folder holding a `sounds/` folder of `files` synthetic recordings.
pub fn sounds(files: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("sounds");
    std::fs::create_dir(&data).expect("mkdir");
    synthetic_collection(&data, files);
    (dir, data)
}

/// Writes `n` short synthetic sounds (decaying tones with a noise burst) as 44.1 kHz WAVs.
pub fn synthetic_collection(dir: &Path, n: usize) {
    for i in 0..n {
        let samples = (44_100.0 * (0.6 + 0.3 * i as f32)) as usize;
        let freq = 110.0 * (1.0 + i as f32 * 0.37);
        tone_with_noise_burst(
            &dir.join(format!("hit{i}.wav")),
            freq,
            samples,
            12345 + i as u32,
        );
    }
}

/// A 44.1 kHz 16-bit WAV of `samples` samples: a sine at `freq` Hz decaying over ~1 s plus a
/// short noise burst drawn from `noise_seed`.
pub fn tone_with_noise_burst(path: &Path, freq: f32, samples: usize, noise_seed: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create");
    let mut noise = noise_seed;
    for s in 0..samples {
        let t = s as f32 / 44_100.0;
        noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let white = (noise >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        let v = (2.0 * std::f32::consts::PI * freq * t).sin() * (-t * 4.0).exp()
            + white * (-t * 30.0).exp();
        w.write_sample((v * 12_000.0) as i16).expect("sample");
    }
    w.finalize().expect("finalize");
}

/// `distill info PATH --json`, which must succeed, parsed.
pub fn info_json(path: &Path) -> serde_json::Value {
    let o = distill(&["info", path.to_str().expect("utf-8 path"), "--json"]);
    assert!(o.status.success(), "info failed: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("info --json prints JSON")
}

/// A JSON file (code grid, sidecar, checkpoint metadata), parsed.
pub fn json_file(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
