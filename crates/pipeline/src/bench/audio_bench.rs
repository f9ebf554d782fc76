//! `bench audio`: the vocoders on real recordings — on their true mels and, given a model,
//! on the mels its VQ-VAE decodes from them — and decode / mel throughput.
//!
//! Recipes: `ours` (today's default: non-negative inverse mel, PGHI start, Griffin-Lim
//! following the mel), `previous` (the phase-locked phase-vocoder start of earlier versions,
//! Griffin-Lim on the fixed inverse) and `reference` (the original system's: clamped least
//! squares, random phases, 128 iterations). Metrics per recording as `distill evaluate`
//! measures a chain: log-mel L1 and LSD (all bands, above 8 kHz) between the mel handed to
//! the vocoder and the mel of its output, MR-STFT against the recording, noise floor of the
//! peak-normalised output; the floor of the output as it comes (not normalised) beside the
//! floor of the mel handed over, and their distance (a vocoder should neither raise the floor
//! nor dig below it); and seconds of compute per second of audio.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use audio::mel::MelSpectrogram;
use audio::vocoder::{PhaseInit, Vocoder};
use burn::prelude::*;
use metrics::Summary;
use metrics::spectral::{checkerboard_energy, noise_floor};
use serde_json::{Value as Json, json};

use super::{RATE, secs};
use crate::evaluate::floats;
use crate::evaluate::reconstruction::{ChainMetrics, chain};
use crate::modelfile::ModelFile;

/// Seconds of each recording used (the first ones).
const EXCERPT_S: f64 = 4.0;

/// The vocoders compared, by name.
fn recipes(cfg: &audio::SpectrogramConfig) -> Vec<(&'static str, Vocoder)> {
    let mut previous = Vocoder::new(cfg.clone());
    previous.griffin_lim.init = PhaseInit::PhaseLocked;
    previous.follow_mel_from = None;
    vec![
        ("ours", Vocoder::new(cfg.clone())),
        ("previous", previous),
        ("reference", Vocoder::reference(cfg.clone(), 1234)),
    ]
}

/// One recording through one recipe: its chain metrics, the seconds of compute per second
/// of audio, and the noise floors of the mel it was handed and of its output's mel (both at
/// the level they come at).
type Row = (ChainMetrics, f64, (f64, f64));

/// Median of each chain metric, of the output floor's distance from the handed mel's and of
/// the time per second of audio.
fn summarise(rows: &[Row]) -> anyhow::Result<Json> {
    let median = |v: Vec<f64>| -> anyhow::Result<f64> { Ok(Summary::of(&v)?.median) };
    let pick = |f: fn(&ChainMetrics) -> f64| -> anyhow::Result<f64> {
        median(rows.iter().map(|(m, _, _)| f(m)).collect())
    };
    Ok(json!({
        "log_mel_l1": pick(|m| m.log_mel_l1)?,
        "lsd_db": pick(|m| m.lsd_db)?,
        "lsd_high_db": pick(|m| m.lsd_high_db)?,
        "mr_stft": pick(|m| m.mr_stft)?,
        "noise_floor": pick(|m| m.noise_floor)?,
        "handed_noise_floor": median(rows.iter().map(|(_, _, (h, _))| *h).collect())?,
        "output_noise_floor": median(rows.iter().map(|(_, _, (_, o))| *o).collect())?,
        "noise_floor_gap": median(rows.iter().map(|(_, _, (h, o))| (o - h).abs()).collect())?,
        "seconds_per_audio_second": median(rows.iter().map(|(_, t, _)| *t).collect())?,
    }))
}

/// Runs the comparison on up to `max_files` recordings of `data` (their first
/// [`EXCERPT_S`] seconds); with `model`, also on the mels its VQ-VAE decodes.
pub fn audio(data: &Path, max_files: usize, model: Option<&Path>) -> anyhow::Result<Json> {
    let report =
        audio::scan::scan_dataset(data).with_context(|| format!("scanning {}", data.display()))?;
    let files: Vec<PathBuf> = report
        .usable()
        .map(|f| f.path.clone())
        .take(max_files)
        .collect();
    if files.is_empty() {
        bail!("{}: no usable recordings", data.display());
    }
    let device = Device::flex();
    let loaded = model.map(ModelFile::load).transpose()?;
    let cfg = loaded
        .as_ref()
        .map(|m| m.spectrogram_config.clone())
        .unwrap_or_default();
    let mel = MelSpectrogram::new(cfg.clone());
    let vq = loaded
        .as_ref()
        .map(|m| crate::models::vqvae(m, &device))
        .transpose()?;
    let recipes = recipes(&cfg);
    let n_mels = cfg.n_mels;
    let (mut decode_s, mut mel_s, mut audio_s) = (0.0, 0.0, 0.0);
    let mut true_rows: Vec<Vec<Row>> = vec![Vec::new(); recipes.len()];
    let mut decoded_rows: Vec<Vec<Row>> = vec![Vec::new(); recipes.len()];
    let (mut board_decoded, mut board_true) = (Vec::new(), Vec::new());
    for path in &files {
        let t = Instant::now();
        let full = audio::load_48k(path)?;
        decode_s += secs(t);
        let mut x = full[..((EXCERPT_S * RATE) as usize).min(full.len())].to_vec();
        audio::chunk::peak_normalise(&mut x);
        let seconds = x.len() as f64 / RATE;
        audio_s += seconds;
        let t = Instant::now();
        let true_mel = mel.log_mel(&x);
        mel_s += secs(t);
        let frames = true_mel.len() / n_mels;
        let decoded = match &vq {
            Some(vq) => {
                let input = Tensor::<4>::from_data(
                    TensorData::new(true_mel.clone(), [1, 1, n_mels, frames]),
                    &device,
                );
                Some(floats(vq.forward(input).recon, "decoded mel")?)
            }
            None => None,
        };
        if let Some(d) = &decoded {
            board_decoded.push(checkerboard_energy(d, n_mels, frames)?);
            board_true.push(checkerboard_energy(&true_mel, n_mels, frames)?);
        }
        let true_floor = noise_floor(&true_mel)?;
        let decoded_floor = decoded.as_deref().map(noise_floor).transpose()?;
        for (i, (_, vocoder)) in recipes.iter().enumerate() {
            for (handed, rows) in [
                (Some((&true_mel, true_floor)), &mut true_rows),
                (decoded.as_ref().zip(decoded_floor), &mut decoded_rows),
            ] {
                let Some((handed, handed_floor)) = handed else {
                    continue;
                };
                let t = Instant::now();
                let out = vocoder.synthesize(handed, frames, Some(x.len()));
                let per_second = secs(t) / seconds;
                rows[i].push((
                    chain(handed, &out, &x, &mel)?,
                    per_second,
                    // The output's mel once more, unnormalised (`chain` measures the
                    // peak-normalised one); outside the timed synthesis.
                    (handed_floor, noise_floor(&mel.log_mel(&out))?),
                ));
            }
        }
        eprintln!("{}: {seconds:.1} s", crate::train::data::short(path));
    }
    let table = |rows: &[Vec<Row>]| -> anyhow::Result<Json> {
        let mut out = serde_json::Map::new();
        for ((name, _), r) in recipes.iter().zip(rows) {
            if !r.is_empty() {
                out.insert((*name).to_string(), summarise(r)?);
            }
        }
        Ok(Json::Object(out))
    };
    Ok(json!({
        "bench": "audio",
        "data": data.display().to_string(),
        "model": model.map(|m| m.display().to_string()),
        "recordings": files.len(),
        "excerpt_s": EXCERPT_S,
        "recipes": {
            "ours": format!("non-negative inverse mel, PGHI start, {} iterations of fast Griffin-Lim following the mel from iteration {}", audio::vocoder::DEFAULT_ITERATIONS, audio::vocoder::FOLLOW_MEL_FROM),
            "previous": format!("non-negative inverse mel, phase-locked phase-vocoder start, {} iterations of fast Griffin-Lim", audio::vocoder::DEFAULT_ITERATIONS),
            "reference": "clamped least-squares inverse mel, random phases, 128 iterations of fast Griffin-Lim (the original system)",
        },
        "true_mels": table(&true_rows)?,
        "decoded_mels": if vq.is_some() { table(&decoded_rows)? } else { Json::Null },
        // 2-periodic pattern energy (median): a decoder that paints a checkerboard shows more
        // than the recordings' own mels.
        "checkerboard": if board_decoded.is_empty() { Json::Null } else { json!({
            "decoded": Summary::of(&board_decoded)?.median,
            "recordings": Summary::of(&board_true)?.median,
        }) },
        "throughput_audio_s_per_s": {
            "decode_and_resample": audio_s / decode_s.max(1e-9),
            "log_mel": audio_s / mel_s.max(1e-9),
        },
    }))
}
