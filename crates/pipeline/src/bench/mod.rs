//! Benchmarks behind `cargo xtask bench <name>`: each writes `target/bench/<name>.json`.
//! Ratios are against a baseline measured in the same process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use audio::SpectrogramConfig;
use serde_json::json;

mod audio_bench;
mod generate_bench;
mod presets_bench;
mod process;
mod train_bench;
pub use audio_bench::audio;
pub use generate_bench::versus_original;
pub use presets_bench::{PresetsOptions, presets};
pub use train_bench::train;

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
/// for each size tier with randomly initialised models of the shapes `distill train` gives
/// (the native tiers).
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
        // Three seconds a file: each file count's own tier.
        let pc = prior_config::native_prior_config(files, 3 * files);
        let vc = vqvae::native_vqvae_config(files, 3 * files);
        device.seed(1);
        let (rows, _) = vc.grid_per_second(&audio::SpectrogramConfig::default());
        let shape = PriorShape {
            codebook_size: vc.codebook_size,
            seq_len: 144,
            num_quantizers: vc.num_quantizers,
            hidden_size: pc.hidden_size,
            num_layers: pc.num_layers,
            num_heads: pc.num_heads,
            dropout: pc.dropout,
            rows: if pc.row_embedding { rows } else { 0 },
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

        // The same cached steps on the host copy of the weights (what CPU generation uses),
        // in f32 and in bfloat16; generation picks one by the prior's size.
        let host_rate = |kind: prior_model::HostWeights| -> anyhow::Result<f64> {
            let host = prior_model::HostDecoder::with_weights(&prior, kind)?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let t = Instant::now();
            let mut state = host.new_state();
            let mut tok = 0usize;
            for _ in 0..n {
                tok = sample(host.step(&mut state, tok)?, &params, &mut rng);
            }
            Ok(n as f64 / secs(t))
        };
        let host_f32 = host_rate(prior_model::HostWeights::F32)?;
        let host_bf16 = host_rate(prior_model::HostWeights::Bf16)?;
        let host_weights = prior_model::HostWeights::for_shape(&shape);
        let host_cached = match host_weights {
            prior_model::HostWeights::F32 => host_f32,
            prior_model::HostWeights::Bf16 => host_bf16,
        };

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
            // Speed per second of audio asked for: nothing cut.
            crate::generate::GenerateSettings {
                exact_duration: true,
                ..Default::default()
            },
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
            "{tier}: host cached {host_cached:.0} tokens/s ({host_weights:?}; f32 {host_f32:.0}, bf16 {host_bf16:.0}), backend cached {cached:.0}, uncached {uncached:.0} ({:.1}x); {seconds} s of audio in {wall:.2} s ({:.1}x real time); {BATCHED} at once {:.1}x",
            host_cached / uncached,
            seconds / wall,
            BATCHED as f64 * seconds / batched_wall
        );
        tiers.push(json!({
            "tier": tier,
            "prior": {"hidden_size": shape.hidden_size, "num_layers": shape.num_layers, "num_heads": shape.num_heads, "codebook_size": shape.codebook_size},
            "host_weights": format!("{host_weights:?}"),
            "tokens_per_s": {
                "cached_host": host_cached,
                "cached_host_f32": host_f32,
                "cached_host_bf16": host_bf16,
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
        "preset": "native",
        "vocoder_iterations": audio::vocoder::DEFAULT_ITERATIONS,
        "tiers": tiers,
        "targets": {"tokens_per_s_small_tier": 2000, "real_time_factor": 10},
    }))
}
