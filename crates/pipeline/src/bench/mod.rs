//! Benchmarks behind `cargo xtask bench <name>`: each writes `target/bench/<name>.json`.
//! Ratios are against a baseline measured in the same process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use audio::SpectrogramConfig;
use serde_json::json;

mod audio_bench;
pub use audio_bench::audio;

/// Samples per second of every model.
const RATE: f64 = audio::SAMPLE_RATE as f64;

/// Sounds generated together in the batched end-to-end measurement.
const BATCHED: usize = 4;

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Writes a report to `target/bench/<name>.json` under `root` and returns the path.
pub fn write_report(
    root: &Path,
    name: &str,
    report: &serde_json::Value,
) -> anyhow::Result<PathBuf> {
    let dir = root.join("target").join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    crate::fsutil::atomic_write(&path, serde_json::to_string_pretty(report)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `bench generate`: prior sampling speed with and without the key/value cache (same
/// process, same model), and end-to-end real-time factor (sampling + decoding + vocoder),
/// for each size tier with randomly initialised models.
pub fn generate(seconds: f64) -> anyhow::Result<serde_json::Value> {
    use burn::prelude::*;
    use prior_model::sample::{SamplingParams, sample};
    use prior_model::{CodePrior, PriorShape};
    use rand::SeedableRng;
    use vqvae::{ConvVqvae, VqvaeShape};

    let device = Device::flex();
    let params = SamplingParams::default();
    let mut tiers = Vec::new();
    for (files, tier) in [
        (20, "<=20 files"),
        (60, "21-100 files"),
        (200, ">100 files"),
    ] {
        let pc = prior_config::get_adaptive_prior_config(files);
        let vc = vqvae::get_adaptive_vqvae_config(files);
        device.seed(1);
        let shape = PriorShape {
            codebook_size: vc.codebook_size,
            seq_len: 144,
            num_quantizers: vc.num_quantizers,
            hidden_size: pc.hidden_size,
            num_layers: pc.num_layers,
            num_heads: pc.num_heads,
            dropout: pc.dropout,
        };
        let prior = CodePrior::new(shape, &device)?;
        let vq = ConvVqvae::with_arch(VqvaeShape::from(&vc), vc.arch(), &device)?;
        let n = shape.seq_len;
        let logits_of = |t: Tensor<2>| crate::evaluate::floats(t, "logits");

        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let t = Instant::now();
        let mut cache = prior.new_cache(1, &device);
        let mut tok = 0i64;
        for _ in 0..n {
            let l = prior.step(
                Tensor::from_data(TensorData::new(vec![tok], [1]), &device),
                &mut cache,
            )?;
            tok = sample(&logits_of(l)?, &params, &mut rng) as i64;
        }
        let cached = n as f64 / secs(t);

        // The same cached steps on the host copy of the weights (what CPU generation uses).
        let host = prior_model::HostDecoder::new(&prior)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let t = Instant::now();
        let mut state = host.new_state();
        let mut tok = 0usize;
        for _ in 0..n {
            tok = sample(host.step(&mut state, tok)?, &params, &mut rng);
        }
        let host_cached = n as f64 / secs(t);

        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let t = Instant::now();
        let mut seq = vec![0i64];
        while seq.len() < n {
            let x =
                Tensor::<2, Int>::from_data(TensorData::new(seq.clone(), [1, seq.len()]), &device);
            let all = prior.forward(x)?;
            let last = all
                .slice([0..1, seq.len() - 1..seq.len(), 0..shape.codebook_size])
                .reshape([1, shape.codebook_size]);
            seq.push(sample(&logits_of(last)?, &params, &mut rng) as i64);
        }
        let uncached = (n - 1) as f64 / secs(t);

        let generator = crate::generate::Generator::from_parts(
            prior,
            vq,
            vec![1.0; shape.codebook_size],
            prior_model::TokenOrder::TimeMajor,
            8,
            SpectrogramConfig::default(),
            &device,
            crate::backend::Decoding::Host,
            crate::generate::GenerateSettings::default(),
        )?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let t = Instant::now();
        let audio = generator
            .render((seconds * RATE) as usize, &mut rng, &mut || {})?
            .audio;
        let wall = secs(t);
        // --count 4: the sequences step together through one pass over the weights.
        let mut rngs: Vec<_> = (0..BATCHED)
            .map(|i| rand::rngs::StdRng::seed_from_u64(20 + i as u64))
            .collect();
        let t = Instant::now();
        generator.render_many((seconds * RATE) as usize, &mut rngs, &mut || {})?;
        let batched_wall = secs(t);
        eprintln!(
            "{tier}: host cached {host_cached:.0} tokens/s, backend cached {cached:.0}, uncached {uncached:.0} ({:.1}x); {seconds} s of audio in {wall:.2} s ({:.1}x real time); {BATCHED} at once {:.1}x",
            host_cached / uncached,
            seconds / wall,
            BATCHED as f64 * seconds / batched_wall
        );
        tiers.push(json!({
            "tier": tier,
            "prior": {"hidden_size": shape.hidden_size, "num_layers": shape.num_layers, "num_heads": shape.num_heads, "codebook_size": shape.codebook_size},
            "tokens_per_s": {
                "cached_host": host_cached,
                "cached_backend": cached,
                "uncached": uncached,
                "ratio_cached_host_over_uncached": host_cached / uncached,
                "ratio_cached_backend_over_uncached": cached / uncached,
            },
            "end_to_end": {"audio_s": audio.len() as f64 / RATE, "wall_s": wall, "real_time_factor": seconds / wall},
            "end_to_end_count_4": {"audio_s": BATCHED as f64 * seconds, "wall_s": batched_wall, "real_time_factor": BATCHED as f64 * seconds / batched_wall},
        }));
    }
    Ok(json!({
        "bench": "generate",
        "backend": "flex",
        "vocoder_iterations": audio::vocoder::DEFAULT_ITERATIONS,
        "tiers": tiers,
        "targets": {"tokens_per_s_small_tier": 2000, "real_time_factor": 10},
    }))
}

/// The reference system's drums20 run (`shared/docs/reference-runs.md`, default tiers).
const REF_VQ_BEST_VAL_LOSS: f64 = 2.792;
const REF_VQ_SECONDS: f64 = 104.9;
const REF_PRIOR_BEST_PPL: f64 = 10.65;
const REF_PRIOR_SECONDS: f64 = 41.6;

/// `bench train`: runs `distill train --json` on a corpus (default tiers, seed 1) in a child
/// process and reports per stage seconds per epoch, validation metrics and peak memory,
/// next to the reference system's numbers for drums20 (`shared/docs/reference-runs.md`).
pub fn train(data: &Path, epochs: Option<usize>) -> anyhow::Result<serde_json::Value> {
    // The `distill` binary beside this benchmark's own.
    let exe =
        std::env::current_exe()?.with_file_name(format!("distill{}", std::env::consts::EXE_SUFFIX));
    let dir = std::env::temp_dir().join(format!("distill-bench-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("bench.distill");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["train", "--seed", "1", "--json", "--data"])
        .arg(data)
        .arg("-o")
        .arg(&out);
    if let Some(e) = epochs {
        cmd.args(["--epochs", &e.to_string()]);
    }
    let started = Instant::now();
    let o = cmd.output()?;
    let wall = secs(started);
    let _ = std::fs::remove_dir_all(&dir);
    if !o.status.success() {
        bail!("training failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let stage = |name: &str| -> serde_json::Value {
        let eps: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["event"] == "epoch" && e["stage"] == name)
            .collect();
        let secs: f64 = eps.iter().filter_map(|e| e["seconds"].as_f64()).sum();
        let best = eps.iter().min_by(|a, b| {
            a["val_loss"]
                .as_f64()
                .unwrap_or(f64::MAX)
                .total_cmp(&b["val_loss"].as_f64().unwrap_or(f64::MAX))
        });
        // Time to the reference's best validation result (its whole stage took `ref_s`).
        let (ref_loss, ref_s) = match name {
            "vqvae" => (REF_VQ_BEST_VAL_LOSS, REF_VQ_SECONDS),
            _ => (REF_PRIOR_BEST_PPL.ln(), REF_PRIOR_SECONDS),
        };
        let mut elapsed = 0.0;
        let reached = eps.iter().find_map(|e| {
            elapsed += e["seconds"].as_f64().unwrap_or(0.0);
            (e["val_loss"].as_f64()? <= ref_loss)
                .then(|| json!({"epoch": e["epoch"], "seconds": elapsed}))
        });
        json!({
            "epochs": eps.len(),
            "seconds_per_epoch": secs / eps.len().max(1) as f64,
            "reached_reference_best": reached,
            "reference_stage_seconds": ref_s,
            "best_val_loss": best.map(|b| b["val_loss"].clone()),
            "best_epoch": best.map(|b| b["epoch"].clone()),
            "final_val_loss": eps.last().map(|e| e["val_loss"].clone()),
            "best_extra": best.map(|b| b["extra"].clone()),
        })
    };
    let done = events
        .iter()
        .find(|e| e["event"] == "done")
        .cloned()
        .unwrap_or_default();
    Ok(json!({
        "bench": "train",
        "data": data.display().to_string(),
        "backend": "flex",
        "wall_s": wall,
        "peak_rss_mb": done["peak_rss_mb"],
        "vqvae": stage("vqvae"),
        "prior": stage("prior"),
        "reference_drums20_default_tiers": {
            "source": "shared/docs/reference-runs.md (PyTorch CPU, 1 thread, shared machine)",
            "vqvae": {"epochs": 100, "seconds_per_epoch": 0.95, "stage_wall_s": REF_VQ_SECONDS, "best_val_loss": REF_VQ_BEST_VAL_LOSS, "final_val_loss": 2.924,
                      "utilisation": [0.266, 0.094, 0.188], "peak_rss_mb": 958},
            "prior": {"epochs": 50, "seconds_per_epoch": 0.6, "stage_wall_s": REF_PRIOR_SECONDS, "best_val_perplexity": REF_PRIOR_BEST_PPL, "peak_rss_mb": 992},
        },
    }))
}
