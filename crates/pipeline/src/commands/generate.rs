//! `distill generate`: new audio from a trained model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use audio::vocoder::Vocoder;
use audio::wav::{BitDepth, WavOptions, encode_wav};
use burn::prelude::*;
use prior_model::sample::{SamplingParams, sample, sample_distribution};
use prior_model::{CodePrior, HostDecoder, HostState};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use vqvae::ConvVqvae;

use crate::cli::{GenerateArgs, WavDepth};
use crate::fsutil::atomic_write;
use crate::modelfile::ModelFile;
use crate::train::{TIME_MAJOR, epoch_seed};

/// Sounds generated together (one step of the prior serves all of them).
const BATCH: usize = 8;

/// Crossfade between independently generated 1 s chunks (raster-order priors only).
pub const CROSSFADE_SAMPLES: usize = 2_400;

fn host_vec(t: Tensor<2>) -> anyhow::Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))
}

/// Everything needed to turn a seed into audio.
pub struct Generator<'a> {
    pub prior: &'a CodePrior,
    pub vq: &'a ConvVqvae,
    pub first_token: Vec<f64>,
    pub params: SamplingParams,
    pub rows: usize,
    pub levels: usize,
    pub device: &'a Device,
    pub time_major: bool,
    pub vocoder: &'a Vocoder,
    /// Host copy of the prior for CPU backends (`None`: step on the device).
    pub host: Option<&'a HostDecoder>,
}

impl Generator<'_> {
    /// Tokens one sound of `samples` samples needs.
    pub fn tokens_for(&self, samples: usize) -> usize {
        let spec = &self.vocoder.config;
        if self.time_major {
            spec.frames_for(samples).div_ceil(16) * self.rows * self.levels
        } else {
            samples.div_ceil(48_000 - CROSSFADE_SAMPLES).max(1) * self.prior.shape().seq_len
        }
    }

    /// One sound of exactly `samples` samples at 48 kHz.
    pub fn render(
        &self,
        samples: usize,
        rng: &mut StdRng,
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<f32>> {
        let mut sounds = self.render_many(samples, std::slice::from_mut(rng), on_token)?;
        sounds
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no sound was generated"))
    }

    /// Several sounds at once, one per random generator. On the host decoding path the
    /// sequences step together, so the prior's weights are read once per step for all of
    /// them; each result is exactly what [`Self::render`] gives for its generator alone.
    pub fn render_many(
        &self,
        samples: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        let spec = &self.vocoder.config;
        if self.time_major {
            let frames = spec.frames_for(samples);
            let steps = frames.div_ceil(16);
            let streams = self.time_major(steps, rngs, on_token)?;
            return streams
                .iter()
                .map(|stream| {
                    let mel = self.decode_time_major(stream, steps, spec.n_mels, frames)?;
                    Ok(self.vocoder.synthesize(&mel, frames, Some(samples)))
                })
                .collect();
        }
        rngs.iter_mut()
            .map(|rng| self.render_raster(samples, rng, on_token))
            .collect()
    }

    /// Raster-order (reference) priors: independent 1 s chunks joined by a crossfade.
    fn render_raster(
        &self,
        samples: usize,
        rng: &mut StdRng,
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<f32>> {
        let spec = &self.vocoder.config;
        let seq_len = self.prior.shape().seq_len;
        let grid = (self.rows, seq_len / self.levels / self.rows);
        let chunk_frames = spec.frames_for(48_000);
        let chunk_count = samples.div_ceil(48_000 - CROSSFADE_SAMPLES).max(1);
        let mut chunks = Vec::with_capacity(chunk_count);
        for _ in 0..chunk_count {
            let tokens = self
                .continue_all(&[Vec::new()], seq_len, std::slice::from_mut(rng), on_token)?
                .pop()
                .unwrap_or_default();
            let mel = self.decode_raster(tokens, grid, spec.n_mels, chunk_frames)?;
            chunks.push(self.vocoder.synthesize(&mel, chunk_frames, Some(48_000)));
        }
        let mut joined = crossfade_join(&chunks, CROSSFADE_SAMPLES);
        joined.resize(samples, 0.0);
        Ok(joined)
    }

    /// Samples `count` tokens after each context (fed first, from position 0), one sequence
    /// per random generator: on the host path all sequences step together, on a device one
    /// after the other.
    fn continue_all(
        &self,
        contexts: &[Vec<i64>],
        count: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Vec<i64>>> {
        match self.host {
            Some(host) => self.continue_many(host, contexts, count, rngs, on_token),
            None => contexts
                .iter()
                .zip(rngs.iter_mut())
                .map(|(c, rng)| self.continue_on_device(c, count, rng, on_token))
                .collect(),
        }
    }

    /// One sequence through the backend's key/value cache.
    fn continue_on_device(
        &self,
        context: &[i64],
        count: usize,
        rng: &mut StdRng,
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<i64>> {
        let mut cache = self.prior.new_cache(1, self.device);
        let mut out = Vec::with_capacity(count);
        let mut logits = if context.is_empty() {
            None
        } else {
            let prefix = Tensor::<2, Int>::from_data(
                TensorData::new(context.to_vec(), [1, context.len()]),
                self.device,
            );
            Some(host_vec(self.prior.prefill(prefix, &mut cache)?)?)
        };
        for _ in 0..count {
            let next = match &logits {
                Some(l) => sample(l, &self.params, rng) as i64,
                None => sample_distribution(&self.first_token, rng) as i64,
            };
            out.push(next);
            on_token();
            if out.len() < count {
                let t = Tensor::<1, Int>::from_data(TensorData::new(vec![next], [1]), self.device);
                logits = Some(host_vec(self.prior.step(t, &mut cache)?)?);
            }
        }
        Ok(out)
    }

    /// [`Self::continue_all`] on the host path: the sequences step in lockstep.
    fn continue_many(
        &self,
        host: &HostDecoder,
        contexts: &[Vec<i64>],
        count: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Vec<i64>>> {
        let mut states: Vec<HostState> = contexts.iter().map(|_| host.new_state()).collect();
        let mut logits: Vec<Option<Vec<f32>>> = Vec::with_capacity(contexts.len());
        for (state, context) in states.iter_mut().zip(contexts) {
            logits.push(if context.is_empty() {
                None
            } else {
                let tokens: Vec<usize> = context.iter().map(|&t| t as usize).collect();
                Some(host.prefill(state, &tokens)?.to_vec())
            });
        }
        let mut out: Vec<Vec<i64>> = vec![Vec::with_capacity(count); contexts.len()];
        for produced in 1..=count {
            let next: Vec<usize> = logits
                .iter()
                .zip(rngs.iter_mut())
                .map(|(l, rng)| match l {
                    Some(l) => sample(l, &self.params, rng),
                    None => sample_distribution(&self.first_token, rng),
                })
                .collect();
            for (o, &t) in out.iter_mut().zip(&next) {
                o.push(t as i64);
                on_token();
            }
            if produced < count {
                host.step_many(&mut states, &next)?;
                for (l, st) in logits.iter_mut().zip(&states) {
                    *l = Some(st.logits().to_vec());
                }
            }
        }
        Ok(out)
    }

    /// Time-major streams of `steps` grid columns, one per generator, continued across
    /// windows: each new window keeps the last half of the previous one as context.
    fn time_major(
        &self,
        steps: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Vec<i64>>> {
        let per_step = self.rows * self.levels;
        let window = self.prior.shape().seq_len / per_step;
        if window == 0 {
            bail!("the prior's context is shorter than one time step of the code grid");
        }
        let keep = window / 2;
        let want = steps * per_step;
        let mut contexts: Vec<Vec<i64>> = vec![Vec::new(); rngs.len()];
        let mut streams: Vec<Vec<i64>> = vec![Vec::with_capacity(want); rngs.len()];
        let mut done = 0;
        while done < want {
            let n = if done == 0 {
                (window * per_step).min(want)
            } else {
                ((window - keep) * per_step).min(want - done)
            };
            let more = self.continue_all(&contexts, n, rngs, on_token)?;
            for ((stream, context), m) in streams.iter_mut().zip(&mut contexts).zip(more) {
                stream.extend(m);
                *context = stream[stream.len().saturating_sub(keep * per_step)..].to_vec();
            }
            done += n;
        }
        Ok(streams)
    }

    /// Log-mel `[n_mels][frames]` of a time-major stream of `steps` columns.
    fn decode_time_major(
        &self,
        stream: &[i64],
        steps: usize,
        n_mels: usize,
        frames: usize,
    ) -> anyhow::Result<Vec<f32>> {
        let (h, q) = (self.rows, self.levels);
        let mut raster = vec![0i64; h * steps * q];
        for w in 0..steps {
            for r in 0..h {
                for l in 0..q {
                    raster[(r * steps + w) * q + l] = stream[(w * h + r) * q + l];
                }
            }
        }
        self.decode_raster(raster, (h, steps), n_mels, frames)
    }

    fn decode_raster(
        &self,
        codes: Vec<i64>,
        grid: (usize, usize),
        n_mels: usize,
        frames: usize,
    ) -> anyhow::Result<Vec<f32>> {
        let idx = Tensor::<3, Int>::from_data(
            TensorData::new(codes, [1, grid.0 * grid.1, self.levels]),
            self.device,
        );
        let z = self.vq.codes_to_embeddings(idx, grid)?;
        self.vq
            .decode(z, (n_mels, frames))
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading mel: {e:?}"))
    }
}

/// Joins chunks with an equal-power crossfade: the outgoing chunk fades out (cos) while
/// the incoming one fades in (sin), so the summed power stays constant.
pub fn crossfade_join(chunks: &[Vec<f32>], overlap: usize) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::new();
    for c in chunks {
        let ov = overlap.min(out.len()).min(c.len());
        let start = out.len() - ov;
        for i in 0..ov {
            let t = (i as f32 + 0.5) / ov as f32 * std::f32::consts::FRAC_PI_2;
            out[start + i] = out[start + i] * t.cos() + c[i] * t.sin();
        }
        out.extend_from_slice(&c[ov..]);
    }
    out
}

pub fn run(args: &GenerateArgs, device: &Device) -> anyhow::Result<ExitCode> {
    if !(args.duration > 0.0 && args.duration <= 3600.0) {
        bail!(
            "--duration must be between 0 and 3600 seconds, got {}",
            args.duration
        );
    }
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let model = ModelFile::load(&args.model)?;
    let prior = crate::models::prior(&model, device)?;
    let vq = crate::models::vqvae(&model, device)?;
    let spec = model.spectrogram_config.clone();
    let time_major = model.extra.get("token_order").and_then(|v| v.as_str()) == Some(TIME_MAJOR);
    let k = prior.shape().codebook_size;
    let first_token: Vec<f64> = model
        .extra
        .get("first_token_distribution")
        .and_then(|v| serde_json::from_value::<Vec<f64>>(v.clone()).ok())
        .filter(|v| v.len() == k)
        .unwrap_or_else(|| vec![1.0; k]);
    let params = SamplingParams {
        temperature: args.temperature as f32,
        top_k: args.top_k,
        top_p: args.top_p as f32,
    };
    // On CPU backends single-token steps run on a host copy of the weights (parity-tested
    // against the backend's forward pass); a GPU keeps the backend path.
    let host = if args.backend_name == "wgpu" {
        None
    } else {
        Some(HostDecoder::new(&prior)?)
    };
    let mut vocoder = Vocoder::new(spec.clone());
    vocoder.griffin_lim.iterations = args.iterations;
    let generator = Generator {
        prior: &prior,
        vq: &vq,
        first_token,
        params,
        rows: spec.n_mels.div_ceil(16),
        levels: prior.shape().num_quantizers,
        device,
        time_major,
        vocoder: &vocoder,
        host: host.as_ref(),
    };
    let base_seed = args.seed.unwrap_or_else(rand::random);
    let samples = (args.duration * 48_000.0).round() as usize;
    let tokens_per_file = generator.tokens_for(samples);
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let bar = crate::progress::bar(
        (tokens_per_file * args.count) as u64,
        "generating",
        args.json,
    );
    // Distinct, non-overlapping seeds per file (the reference's seed+i+j repeated chunks).
    let seeds: Vec<u64> = (0..args.count)
        .map(|i| {
            if args.count == 1 {
                base_seed
            } else {
                epoch_seed(base_seed, 100, i)
            }
        })
        .collect();
    let mut results = Vec::new();
    for (batch_index, batch) in seeds.chunks(BATCH).enumerate() {
        let started = std::time::Instant::now();
        let mut rngs: Vec<StdRng> = batch.iter().map(|&s| StdRng::seed_from_u64(s)).collect();
        let mut tick = || bar.inc(1);
        let sounds = generator.render_many(samples, &mut rngs, &mut tick)?;
        let wall = started.elapsed().as_secs_f64() / batch.len() as f64;
        for (j, (audio, &seed)) in sounds.iter().zip(batch).enumerate() {
            let i = batch_index * BATCH + j;
            write_sound(
                args,
                &model,
                audio,
                seed,
                base_seed,
                i,
                time_major,
                wall,
                &bar,
                &mut results,
            )?;
        }
    }
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            if bar.is_hidden() {
                println!("{}", r["file"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one generated sound and its JSON sidecar, and records it in `results`.
#[allow(clippy::too_many_arguments)]
fn write_sound(
    args: &GenerateArgs,
    model: &ModelFile,
    audio: &[f32],
    seed: u64,
    base_seed: u64,
    i: usize,
    time_major: bool,
    wall: f64,
    bar: &indicatif::ProgressBar,
    results: &mut Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    let opts = WavOptions {
        sample_rate: args.sample_rate,
        bit_depth: match args.bit_depth {
            WavDepth::Pcm16 => BitDepth::Pcm16,
            WavDepth::Pcm24 => BitDepth::Pcm24,
            WavDepth::Float32 => BitDepth::Float32,
        },
        normalize_dbfs: (!args.no_normalize).then_some(-1.0),
        fade_ms: 5.0,
    };
    let wav: PathBuf = args.output.join(format!("gen_{seed}.wav"));
    atomic_write(&wav, &encode_wav(audio, &opts)?)
        .with_context(|| format!("writing {}", wav.display()))?;
    let sidecar = json!({
        "file": wav.file_name().map(|n| n.to_string_lossy().into_owned()),
        "model": args.model.display().to_string(),
        "model_id": model.metadata.get("model_id"),
        "seed": seed,
        "base_seed": base_seed,
        "index": i,
        "count": args.count,
        "duration_s": args.duration,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "sample_rate": args.sample_rate,
        "bit_depth": format!("{:?}", args.bit_depth),
        "normalize": !args.no_normalize,
        "griffin_lim_iterations": args.iterations,
        "token_order": if time_major { "time_major" } else { "raster" },
        "backend": args.backend_name,
        "generator": format!("distill {}", env!("CARGO_PKG_VERSION")),
    });
    let side = wav.with_extension("json");
    atomic_write(&side, serde_json::to_string_pretty(&sidecar)?.as_bytes())
        .with_context(|| format!("writing {}", side.display()))?;
    results.push(json!({"file": wav, "seed": seed, "seconds": args.duration, "wall_s": wall}));
    if !args.json {
        bar.println(format!(
            "{} ({:.1} s of audio in {:.1} s)",
            wav.display(),
            args.duration,
            wall
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_power_crossfade_keeps_a_constant_level() {
        let a = vec![1.0f32; 100];
        let b = vec![1.0f32; 100];
        let joined = crossfade_join(&[a, b], 20);
        assert_eq!(joined.len(), 180);
        // cos + sin of the same angle peaks at sqrt(2) in amplitude, but for uncorrelated
        // signals power is what matters: cos² + sin² = 1 at every sample.
        for i in 0..20 {
            let t = (i as f32 + 0.5) / 20.0 * std::f32::consts::FRAC_PI_2;
            assert!((t.cos().powi(2) + t.sin().powi(2) - 1.0).abs() < 1e-6);
            assert!((joined[80 + i] - (t.cos() + t.sin())).abs() < 1e-6);
        }
        // The outgoing chunk fades out: its weight falls from ~1 to ~0.
        let w_first = ((0.5f32 / 20.0) * std::f32::consts::FRAC_PI_2).cos();
        let w_last = ((19.5f32 / 20.0) * std::f32::consts::FRAC_PI_2).cos();
        assert!(w_first > 0.99 && w_last < 0.05);
    }
}
