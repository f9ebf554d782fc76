//! Generation as a library type: a [`Generator`] built from a model file turns seeds into
//! sounds, each with the code grid that made it.
//!
//! Time-major priors (models trained here) write one continuous code grid per sound: the
//! prior keeps writing across 1 s boundaries with a sliding context window, and the whole
//! grid is decoded and vocoded once. Raster priors (the reference system's) are generated
//! 1 s at a time and joined with an equal-power crossfade.

mod output;
mod sampling;

use anyhow::bail;
use audio::vocoder::Vocoder;
use burn::prelude::*;
use prior_model::sample::SamplingParams;
use prior_model::{CodePrior, GridShape, HostDecoder, HostWeights, TokenOrder};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use vqvae::ConvVqvae;

pub use output::{SoundFile, WavFormat, sound_seeds, write_sound};

use crate::backend::Decoding;
use crate::evaluate::floats;
use crate::modelfile::ModelFile;

/// Sounds generated together (one step of the prior serves all of them).
pub const BATCH: usize = 8;

/// Crossfade between independently generated 1 s chunks (raster-order priors only).
pub const CROSSFADE_SAMPLES: usize = 2_400;

/// Samples per second of every model.
const RATE: usize = audio::SAMPLE_RATE as usize;

/// Longest sound one call may ask for, in seconds.
pub const MAX_DURATION_S: f64 = 3600.0;

/// How to sample and render (the values as the user gave them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GenerateSettings {
    /// 0 = always the most likely code.
    pub temperature: f64,
    /// Keep only the k most likely codes (0 = off).
    pub top_k: usize,
    /// Nucleus sampling mass (0 or 1 = off).
    pub top_p: f64,
    /// Griffin-Lim iterations of the vocoder.
    pub iterations: usize,
    /// Candidates sampled per sound; the one whose least likely code column is most likely
    /// under the prior is kept (1 = the first, as sampled).
    pub candidates: usize,
    /// Keep every sound exactly as long as asked, silence and all; otherwise a sound that
    /// dies away sooner ends there ([`end_of_sound`]).
    pub exact_duration: bool,
}

/// Most candidates per sound (each costs a full sampling pass).
pub const MAX_CANDIDATES: usize = 16;

impl Default for GenerateSettings {
    fn default() -> Self {
        // The sampler's defaults (SamplingParams, a test keeps them equal) as the user-facing
        // f64 values, which the CLI, `evaluate` and the studio take from here.
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            iterations: audio::vocoder::DEFAULT_ITERATIONS,
            candidates: 1,
            exact_duration: false,
        }
    }
}

impl GenerateSettings {
    /// The sampler's parameters.
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature as f32,
            top_k: self.top_k,
            top_p: self.top_p as f32,
        }
    }

    /// A rendered sound as these settings end it: exact, or cut after it has died away.
    pub fn end(&self, mut audio: Vec<f32>) -> Vec<f32> {
        if !self.exact_duration {
            trim_trailing_silence(&mut audio);
        }
        audio
    }

    /// Refuses settings that cannot give a sound.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            bail!(
                "temperature must be 0 (greedy) or positive, got {}",
                self.temperature
            );
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            bail!("top-p must be between 0 and 1, got {}", self.top_p);
        }
        if !(1..=MAX_CANDIDATES).contains(&self.candidates) {
            bail!(
                "candidates must be between 1 and {MAX_CANDIDATES}, got {}",
                self.candidates
            );
        }
        if !(1..=1000).contains(&self.iterations) {
            bail!(
                "Griffin-Lim iterations must be between 1 and 1000, got {}",
                self.iterations
            );
        }
        Ok(())
    }
}

/// Level re a sound's peak below which its tail counts as over: a sound ends after its last
/// 50 ms frame above it. The collection's own files end about here (drums20: cut after
/// their last frame above −60 dB, their median length goes from 0.71 to 0.68 s), while a
/// generated sound that has died away keeps a steady floor of codec and vocoder residue,
/// on drums20 mostly 60–75 dB below its peak. −65 dB rather than −60 keeps more of a real
/// decay and moved generated sounds less far from the collection's windows (README, "Where
/// a sound ends").
pub const END_OF_SOUND_DB: f64 = -65.0;

/// Where a sound ends: after its last [`metrics::levels::LEVEL_FRAME`] frame above
/// [`END_OF_SOUND_DB`] re its peak, plus one more frame for the fade-out
/// ([`trim_trailing_silence`]). A sound loud to its end, or all zero, keeps its length.
pub fn end_of_sound(audio: &[f32]) -> usize {
    let frame = metrics::levels::LEVEL_FRAME;
    let Ok(levels) = metrics::levels::frame_levels_db(audio, frame) else {
        return audio.len();
    };
    match levels.iter().rposition(|&l| l > END_OF_SOUND_DB) {
        // The last counted frame loud (or only a short partial frame after it): keep all.
        Some(last) if last + 1 >= levels.len() => audio.len(),
        Some(last) => ((last + 2) * frame).min(audio.len()),
        None => audio.len(),
    }
}

/// Cuts a sound's tail after [`end_of_sound`] and fades the kept quiet frame out (a raised
/// cosine), so the file ends in silence rather than a step.
pub fn trim_trailing_silence(audio: &mut Vec<f32>) {
    let end = end_of_sound(audio);
    if end == audio.len() {
        return;
    }
    audio.truncate(end);
    let fade = metrics::levels::LEVEL_FRAME.min(end);
    let start = end - fade;
    for (i, v) in audio[start..].iter_mut().enumerate() {
        let t = (i + 1) as f32 / fade as f32;
        *v *= 0.5 * (1.0 + (std::f32::consts::PI * t).cos());
    }
}

/// Samples of a sound of `seconds` (exact, at the model rate), after checking the range.
pub fn duration_samples(seconds: f64) -> anyhow::Result<usize> {
    if !(seconds > 0.0 && seconds <= MAX_DURATION_S) {
        bail!("the duration must be between 0 and {MAX_DURATION_S} seconds, got {seconds}");
    }
    Ok((seconds * RATE as f64).round().max(1.0) as usize)
}

/// The code grid a sound was decoded from. It covers the duration asked for: a sound cut
/// after it died away ([`trim_trailing_silence`]) is the start of the grid's decoding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoundCodes {
    pub order: TokenOrder,
    /// One grid for time-major sounds; one per 1 s chunk for raster ones.
    pub grids: Vec<Vec<i64>>,
    /// Shape of each grid.
    pub shape: GridShape,
}

/// A generated sound at 48 kHz and the codes it came from.
#[derive(Debug, Clone)]
pub struct Sound {
    pub audio: Vec<f32>,
    pub codes: SoundCodes,
}

impl Sound {
    /// Length of the audio in seconds.
    pub fn seconds(&self) -> f64 {
        self.audio.len() as f64 / RATE as f64
    }
}

/// Everything needed to turn a seed into audio.
pub struct Generator {
    prior: CodePrior,
    vq: ConvVqvae,
    first_token: Vec<f64>,
    settings: GenerateSettings,
    sampling: SamplingParams,
    order: TokenOrder,
    /// Rows and levels of the code grid (its steps follow the duration).
    grid: GridShape,
    device: Device,
    vocoder: Vocoder,
    /// Host copy of the prior for CPU backends (`None`: step on the device).
    host: Option<HostDecoder>,
}

impl Generator {
    /// The generator of a model file with a prior.
    pub fn new(
        model: &ModelFile,
        device: &Device,
        decoding: Decoding,
        settings: GenerateSettings,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        if settings.candidates > 1 && model.token_order() == TokenOrder::Raster {
            bail!(
                "candidates need a model trained by Distill (time-major codes); this model's \
                 prior writes independent 1 s grids"
            );
        }
        let prior = crate::models::prior(model, device)?;
        let vq = crate::models::vqvae(model, device)?;
        let k = prior.shape().codebook_size;
        let first_token = match &model.sections.first_token_distribution {
            Some(p) if p.len() == k => p.clone(),
            Some(p) => bail!(
                "the model's first-token distribution has {} entries for a codebook of {k}",
                p.len()
            ),
            // Reference files do not store one: every code is equally likely.
            None => vec![1.0; k],
        };
        let spec = model.spectrogram_config.clone();
        let (rows, _) = vq.grid_for(spec.n_mels, spec.frames_for(RATE));
        Self::from_parts(
            prior,
            vq,
            first_token,
            model.token_order(),
            rows,
            spec,
            device,
            decoding,
            settings,
        )
    }

    /// A generator of models already built (benchmarks of untrained models).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        prior: CodePrior,
        vq: ConvVqvae,
        first_token: Vec<f64>,
        order: TokenOrder,
        rows: usize,
        spectrogram: audio::SpectrogramConfig,
        device: &Device,
        decoding: Decoding,
        settings: GenerateSettings,
    ) -> anyhow::Result<Self> {
        let levels = prior.shape().num_quantizers;
        // On CPU backends single-token steps run on a host copy of the weights (parity-tested
        // against the backend's forward pass; priors too large for the CPU's caches in
        // bfloat16, which halves what each step reads); a GPU keeps the backend path.
        let host = match decoding {
            Decoding::Host => Some(HostDecoder::with_weights(
                &prior,
                HostWeights::for_shape(&prior.shape()),
            )?),
            Decoding::Device => None,
        };
        let mut vocoder = Vocoder::new(spectrogram);
        vocoder.griffin_lim.iterations = settings.iterations;
        Ok(Self {
            prior,
            vq,
            first_token,
            settings,
            sampling: settings.sampling(),
            order,
            grid: GridShape {
                rows,
                steps: 0,
                levels,
            },
            device: device.clone(),
            vocoder,
            host,
        })
    }

    pub fn token_order(&self) -> TokenOrder {
        self.order
    }

    pub fn settings(&self) -> &GenerateSettings {
        &self.settings
    }

    /// Code-grid time steps of a time-major sound of `samples` samples.
    fn steps_for(&self, samples: usize) -> usize {
        let frames = self.vocoder.config.frames_for(samples);
        self.vq.grid_for(self.vocoder.config.n_mels, frames).1
    }

    /// 1 s chunks a raster sound of `samples` samples is made of.
    fn chunks_for(samples: usize) -> usize {
        samples.div_ceil(RATE - CROSSFADE_SAMPLES).max(1)
    }

    /// Sample positions where a time-major sound of `samples` samples starts a new context
    /// window (where a seam could hide); none for raster sounds, whose 1 s chunks are
    /// independent.
    pub fn window_boundaries(&self, samples: usize) -> anyhow::Result<Vec<usize>> {
        if self.order == TokenOrder::Raster {
            return Ok(Vec::new());
        }
        let column = self.vq.arch().time_downsample * self.vocoder.config.hop_length;
        Ok(self
            .window_plan(self.steps_for(samples))?
            .into_iter()
            .skip(1)
            .map(|(start, _)| start * column)
            .collect())
    }

    /// Columns of the prior's context window and how many the next window keeps.
    pub fn context_columns(&self) -> anyhow::Result<(usize, usize)> {
        self.window_columns()
    }

    /// Tokens sampled for one sound of `samples` samples (every candidate's).
    pub fn tokens_for(&self, samples: usize) -> usize {
        match self.order {
            TokenOrder::TimeMajor => {
                self.steps_for(samples) * self.grid.tokens_per_step() * self.settings.candidates
            }
            TokenOrder::Raster => Self::chunks_for(samples) * self.prior.shape().seq_len,
        }
    }

    /// One sound of `samples` samples at 48 kHz (fewer where it dies away sooner, unless the
    /// settings ask for the exact duration).
    pub fn render(
        &self,
        samples: usize,
        rng: &mut StdRng,
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Sound> {
        let mut sounds = self.render_many(samples, std::slice::from_mut(rng), on_token)?;
        sounds
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no sound was generated"))
    }

    /// The sound of one seed.
    pub fn render_seed(
        &self,
        samples: usize,
        seed: u64,
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Sound> {
        self.render(samples, &mut StdRng::seed_from_u64(seed), on_token)
    }

    /// Several sounds at once, one per random generator. On the host decoding path the
    /// sequences step together, so the prior's weights are read once per step for all of
    /// them; each result is exactly what [`Self::render`] gives for its generator alone.
    pub fn render_many(
        &self,
        samples: usize,
        rngs: &mut [StdRng],
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Vec<Sound>> {
        if self.order == TokenOrder::Raster {
            return rngs
                .iter_mut()
                .map(|rng| self.render_raster(samples, rng, on_token))
                .collect();
        }
        let spec = &self.vocoder.config;
        let frames = spec.frames_for(samples);
        let shape = self.grid.with_steps(self.steps_for(samples));
        let streams = self.time_major(shape.steps, rngs, on_token)?;
        streams
            .iter()
            .map(|stream| {
                let grid = self.order.grid(stream, shape)?;
                let mel = self.decode(&grid, shape, frames)?;
                Ok(Sound {
                    audio: self
                        .settings
                        .end(self.vocoder.synthesize(&mel, frames, Some(samples))),
                    codes: SoundCodes {
                        order: self.order,
                        grids: vec![grid],
                        shape,
                    },
                })
            })
            .collect()
    }

    /// Raster-order (reference) priors: independent 1 s chunks joined by a crossfade.
    fn render_raster(
        &self,
        samples: usize,
        rng: &mut StdRng,
        on_token: &mut dyn FnMut(),
    ) -> anyhow::Result<Sound> {
        let spec = &self.vocoder.config;
        let seq_len = self.prior.shape().seq_len;
        let chunk_frames = spec.frames_for(RATE);
        let shape = self.grid.with_steps(seq_len / self.grid.tokens_per_step());
        let mut chunks = Vec::new();
        let mut grids = Vec::new();
        for _ in 0..Self::chunks_for(samples) {
            let tokens = self
                .continue_all(&[Vec::new()], seq_len, std::slice::from_mut(rng), on_token)?
                .pop()
                .ok_or_else(|| anyhow::anyhow!("no tokens were sampled"))?
                .tokens;
            let grid = self.order.grid(&tokens, shape)?;
            let mel = self.decode(&grid, shape, chunk_frames)?;
            chunks.push(self.vocoder.synthesize(&mel, chunk_frames, Some(RATE)));
            grids.push(grid);
        }
        let mut joined = crossfade_join(&chunks, CROSSFADE_SAMPLES);
        joined.resize(samples, 0.0);
        Ok(Sound {
            audio: self.settings.end(joined),
            codes: SoundCodes {
                order: self.order,
                grids,
                shape,
            },
        })
    }

    /// Log-mel `[n_mels][frames]` of a raster-order grid.
    fn decode(&self, grid: &[i64], shape: GridShape, frames: usize) -> anyhow::Result<Vec<f32>> {
        decode_grid(
            &self.vq,
            grid,
            shape,
            self.vocoder.config.n_mels,
            frames,
            &self.device,
        )
    }
}

/// Log-mel `[n_mels][frames]` decoded from a raster-order code grid.
pub fn decode_grid(
    vq: &ConvVqvae,
    grid: &[i64],
    shape: GridShape,
    n_mels: usize,
    frames: usize,
    device: &Device,
) -> anyhow::Result<Vec<f32>> {
    let idx = Tensor::<3, Int>::from_data(
        TensorData::new(grid.to_vec(), [1, shape.rows * shape.steps, shape.levels]),
        device,
    );
    let z = vq.codes_to_embeddings(idx, (shape.rows, shape.steps))?;
    floats(vq.decode(z, (n_mels, frames)), "decoded mel")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_facing_defaults_are_the_samplers() {
        assert_eq!(
            GenerateSettings::default().sampling(),
            SamplingParams::default()
        );
    }

    /// A 440 Hz tone decaying by `db_per_s`, `seconds` long.
    fn decaying_tone(db_per_s: f32, seconds: f32) -> Vec<f32> {
        let n = (seconds * RATE as f32) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / RATE as f32;
                10f32.powf(-db_per_s * t / 20.0) * (t * 440.0 * std::f32::consts::TAU).sin()
            })
            .collect()
    }

    #[test]
    fn a_sound_ends_one_frame_after_it_falls_below_the_end_level() {
        let frame = metrics::levels::LEVEL_FRAME;
        // 100 dB/s: a frame's RMS sits 3 dB under the envelope at its centre, so the last
        // frame above −65 dB re peak is the one ending at 0.60 s; the faded one ends at 0.65 s.
        let tone = decaying_tone(100.0, 2.0);
        let end = end_of_sound(&tone);
        assert_eq!(end % frame, 0, "cut on a frame boundary");
        let seconds = end as f64 / RATE as f64;
        assert!((0.64..0.66).contains(&seconds), "ends at {seconds} s");
        let levels = metrics::levels::frame_levels_db(&tone, frame).expect("levels");
        let kept = end / frame;
        assert!(
            levels[kept - 2] > END_OF_SOUND_DB,
            "the last loud frame is kept"
        );
        assert!(levels[kept - 1..].iter().all(|&l| l <= END_OF_SOUND_DB));

        let mut trimmed = tone.clone();
        trim_trailing_silence(&mut trimmed);
        assert_eq!(trimmed.len(), end);
        assert_eq!(
            trimmed[..end - frame],
            tone[..end - frame],
            "untouched before the fade"
        );
        assert!(trimmed[end - 1].abs() < 1e-6, "faded to silence");
        assert!(
            trimmed[end - frame..]
                .iter()
                .zip(&tone[end - frame..])
                .all(|(t, o)| t.abs() <= o.abs()),
            "the fade only lowers"
        );
    }

    #[test]
    fn settings_end_a_sound_unless_its_length_is_exact() {
        let tone = decaying_tone(100.0, 2.0);
        let ended = GenerateSettings::default().end(tone.clone());
        assert_eq!(ended.len(), end_of_sound(&tone));
        assert!(ended.len() < tone.len());
        let exact = GenerateSettings {
            exact_duration: true,
            ..GenerateSettings::default()
        };
        assert_eq!(exact.end(tone.clone()), tone);
    }

    #[test]
    fn sounds_loud_to_their_end_or_all_silent_keep_their_length() {
        for sound in [
            decaying_tone(0.0, 1.0),
            // 40 dB down at its end: still sounding.
            decaying_tone(40.0, 1.0),
            vec![0.0; RATE],
            vec![0.0; 100],
            Vec::new(),
        ] {
            let mut kept = sound.clone();
            trim_trailing_silence(&mut kept);
            assert_eq!(kept, sound);
        }
        // Dying away inside the last, partial frame: nothing worth cutting.
        let mut tone = decaying_tone(0.0, 1.0);
        tone.extend(vec![0.0; metrics::levels::LEVEL_FRAME / 3]);
        assert_eq!(end_of_sound(&tone), tone.len());
    }

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

    #[test]
    fn the_outgoing_chunk_fades_out_and_the_incoming_one_in() {
        // Distinguishable chunks (+1 then −1): swapped fades would start the overlap on the
        // incoming chunk (the original system's bug).
        let joined = crossfade_join(&[vec![1.0f32; 100], vec![-1.0f32; 100]], 20);
        assert!(
            joined[79] == 1.0,
            "before the overlap: the first chunk alone"
        );
        assert!(
            joined[80] > 0.9,
            "overlap starts on the outgoing chunk: {}",
            joined[80]
        );
        assert!(
            joined[99] < -0.9,
            "overlap ends on the incoming chunk: {}",
            joined[99]
        );
        assert!(
            joined[100] == -1.0,
            "after the overlap: the second chunk alone"
        );
        // Monotonic hand-over in between.
        assert!(joined[80..100].windows(2).all(|w| w[1] < w[0]));
    }
}
