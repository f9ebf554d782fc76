//! Level, envelope and onset statistics of one signal: how much of a sound is near silence,
//! how it starts and decays, and how many events it holds per second.

use audio::mel::MelSpectrogram;
use serde::Serialize;

use crate::summary::median;
use crate::{MetricsError, Result};

/// Frame of the level statistics: 2,400 samples, 50 ms at 48 kHz.
pub const LEVEL_FRAME: usize = 2400;
/// A 50 ms frame this far below the signal's peak counts as near silent.
pub const NEAR_SILENT_DB: f64 = -40.0;
/// Levels are clamped to this floor so a digital-silence frame is a finite number (-∞ cannot
/// go through JSON and would poison means).
pub const LEVEL_FLOOR_DB: f64 = -120.0;
/// Frame of the envelope descriptors: 240 samples, 5 ms, fine enough for drum attacks.
pub const ENVELOPE_FRAME: usize = 240;

/// Onset detection: half-width of the moving median, in mel frames (±8 × 10.7 ms ≈ ±85 ms:
/// long enough to span a hit's rise so the median stays at the background flux).
pub const ONSET_MEDIAN_RADIUS: usize = 8;
/// Onset detection: how far above the moving median the flux must rise, in log1p units per
/// band (mean over bands of the positive rise). Noise fluctuates by ~0.1–0.3 per frame; a hit
/// out of silence rises by several units; 0.5 ≈ every band up by ~2 dB on average.
pub const ONSET_DELTA: f64 = 0.5;
/// Onset detection: two onsets closer than 50 ms count as one (the first is kept), the
/// usual limit below which events fuse perceptually.
pub const ONSET_MIN_GAP_S: f64 = 0.05;

fn peak_abs(signal: &[f32]) -> f64 {
    signal.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())))
}

fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

fn db_re(value: f64, reference: f64) -> f64 {
    if value <= 0.0 || reference <= 0.0 {
        return LEVEL_FLOOR_DB;
    }
    (20.0 * (value / reference).log10()).max(LEVEL_FLOOR_DB)
}

/// RMS level in dB relative to the signal's peak sample of each non-overlapping `frame`-sample
/// frame (a sine scores −3 dB). A partial last frame counts when it holds at least half a
/// frame, or when it is the only one. Digital silence, and every frame of an all-zero
/// signal, is [`LEVEL_FLOOR_DB`]. An empty signal gives no frames.
pub fn frame_levels_db(signal: &[f32], frame: usize) -> Result<Vec<f64>> {
    if frame == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "frame",
            reason: "must be at least one sample",
        });
    }
    let peak = peak_abs(signal);
    let chunks = signal.chunks(frame);
    let total = chunks.len();
    Ok(chunks
        .enumerate()
        .filter(|(i, c)| c.len() * 2 >= frame || (*i == 0 && total == 1))
        .map(|(_, c)| db_re(rms(c), peak))
        .collect())
}

/// Share of 50 ms frames whose level re peak is below `threshold_db` (use [`NEAR_SILENT_DB`]).
/// An all-zero signal is entirely near silent (1.0); an empty one is an error.
pub fn near_silent_share(signal: &[f32], threshold_db: f64) -> Result<f64> {
    let levels = frame_levels_db(signal, LEVEL_FRAME)?;
    if levels.is_empty() {
        return Err(MetricsError::Empty { what: "signal" });
    }
    Ok(levels.iter().filter(|&&l| l < threshold_db).count() as f64 / levels.len() as f64)
}

/// Onset frames of a log1p mel `[n_mels][frames]` by spectral flux: the flux of frame t is
/// the mean over bands of max(0, L[m][t] − L[m][t−1]), the frame before the first counting as
/// silence (so a sound that starts at once has an onset at 0). A frame is an onset when its
/// flux is a local maximum, exceeds the moving median over ±[`ONSET_MEDIAN_RADIUS`] frames by
/// [`ONSET_DELTA`], and lies at least [`ONSET_MIN_GAP_S`] after the previous onset.
/// `hop_s` is the frame hop in seconds.
pub fn onset_frames(
    log_mel: &[f32],
    n_mels: usize,
    frames: usize,
    hop_s: f64,
) -> Result<Vec<usize>> {
    if n_mels == 0 || frames == 0 {
        return Err(MetricsError::Empty { what: "log mel" });
    }
    crate::spectral::check_mel_shape(log_mel.len(), n_mels, frames)?;
    if !(hop_s > 0.0 && hop_s.is_finite()) {
        return Err(MetricsError::InvalidParameter {
            name: "hop_s",
            reason: "must be positive",
        });
    }
    let flux: Vec<f64> = (0..frames)
        .map(|t| {
            let rise: f64 = (0..n_mels)
                .map(|m| {
                    let prev = if t == 0 {
                        0.0
                    } else {
                        log_mel[m * frames + t - 1]
                    };
                    f64::from((log_mel[m * frames + t] - prev).max(0.0))
                })
                .sum();
            rise / n_mels as f64
        })
        .collect();
    let min_gap = (ONSET_MIN_GAP_S / hop_s).ceil() as usize;
    let mut onsets: Vec<usize> = Vec::new();
    for t in 0..frames {
        let before = if t == 0 { 0.0 } else { flux[t - 1] };
        let after = flux.get(t + 1).copied().unwrap_or(0.0);
        // ≥ on the left and > on the right: a plateau's first frame is its peak.
        if flux[t] < before || flux[t] <= after {
            continue;
        }
        let lo = t.saturating_sub(ONSET_MEDIAN_RADIUS);
        let hi = (t + ONSET_MEDIAN_RADIUS + 1).min(frames);
        let threshold = median(&flux[lo..hi]).unwrap_or(0.0) + ONSET_DELTA;
        if flux[t] <= threshold {
            continue;
        }
        if onsets.last().is_none_or(|&last| t - last >= min_gap) {
            onsets.push(t);
        }
    }
    Ok(onsets)
}

/// Onsets per second of `signal` (see [`onset_frames`]). The signal is peak-normalised
/// first, so the rate does not depend on its gain; content far below the peak rises little
/// in log1p units and may go undetected.
pub fn onset_rate(signal: &[f32], mel: &MelSpectrogram) -> Result<f64> {
    if signal.is_empty() {
        return Err(MetricsError::Empty { what: "signal" });
    }
    let mut x = signal.to_vec();
    audio::chunk::peak_normalise(&mut x);
    let log_mel = mel.log_mel(&x);
    let cfg = &mel.config;
    let sr = f64::from(cfg.sample_rate);
    let hop_s = cfg.hop_length as f64 / sr;
    let onsets = onset_frames(&log_mel, cfg.n_mels, mel.frames_for(x.len()), hop_s)?;
    Ok(onsets.len() as f64 / (x.len() as f64 / sr))
}

/// Shape of a sound's amplitude envelope (5 ms RMS frames).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Envelope {
    /// From the first frame within 40 dB of the envelope's peak to the peak frame, seconds.
    pub attack_s: f64,
    /// From the peak frame to the first later frame 20 dB below it (or to the end), seconds.
    pub decay_s: f64,
    /// Peak sample over whole-signal RMS, dB (3 dB for a sine; 0 for silence).
    pub crest_db: f64,
}

/// Envelope descriptors of `signal` at `sample_rate`. All-zero signals give all zeros.
pub fn envelope(signal: &[f32], sample_rate: u32) -> Result<Envelope> {
    if signal.is_empty() {
        return Err(MetricsError::Empty { what: "signal" });
    }
    let env: Vec<f64> = signal.chunks(ENVELOPE_FRAME).map(rms).collect();
    let frame_s = ENVELOPE_FRAME as f64 / f64::from(sample_rate);
    let (peak_i, peak) = env
        .iter()
        .enumerate()
        .fold((0, 0.0f64), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
    let whole = rms(signal);
    if peak <= 0.0 || whole <= 0.0 {
        return Ok(Envelope {
            attack_s: 0.0,
            decay_s: 0.0,
            crest_db: 0.0,
        });
    }
    let start = env.iter().position(|&v| v >= peak * 0.01).unwrap_or(peak_i);
    let end = env[peak_i..]
        .iter()
        .position(|&v| v < peak * 0.1)
        .map_or(env.len() - 1, |k| peak_i + k);
    Ok(Envelope {
        attack_s: (peak_i - start.min(peak_i)) as f64 * frame_s,
        decay_s: (end - peak_i) as f64 * frame_s,
        crest_db: 20.0 * (peak_abs(signal) / whole).log10(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{SR, clicks, decaying_noise, mel, noise, sine};

    #[test]
    fn a_sine_sits_3_db_below_its_peak() {
        let levels = frame_levels_db(&sine(SR, 1000.0, 0.3), LEVEL_FRAME).expect("levels");
        assert_eq!(levels.len(), 20);
        assert!(
            levels.iter().all(|l| (l + 3.0103).abs() < 0.01),
            "{levels:?}"
        );
        // A partial frame counts only from half a frame, or when it is the only one.
        assert_eq!(frame_levels_db(&vec![0.1; 3600], 2400).expect("l").len(), 2);
        assert_eq!(frame_levels_db(&vec![0.1; 3599], 2400).expect("l").len(), 1);
        assert_eq!(frame_levels_db(&vec![0.1; 1000], 2400).expect("l").len(), 1);
        assert!(frame_levels_db(&[0.1], 0).is_err());
    }

    #[test]
    fn near_silent_share_of_a_half_burst_is_a_half() {
        let mut x = noise(SR / 2, 0.8, 1);
        x.extend(vec![0.0; SR / 2]);
        assert_eq!(near_silent_share(&x, NEAR_SILENT_DB), Ok(0.5));
        assert_eq!(near_silent_share(&vec![0.0; SR], NEAR_SILENT_DB), Ok(1.0));
        assert_eq!(
            near_silent_share(&noise(SR, 0.1, 2), NEAR_SILENT_DB),
            Ok(0.0)
        );
        assert!(near_silent_share(&[], NEAR_SILENT_DB).is_err());
    }

    #[test]
    fn a_4_hz_click_train_has_4_onsets_per_second() {
        let mel = mel();
        // 3 s, clicks at 0.1 s, 0.35 s, …: 12 clicks.
        let rate = onset_rate(&clicks(3 * SR, SR / 10, SR / 4), &mel).expect("rate");
        assert!((rate - 4.0).abs() < 1e-9, "rate {rate}");
        // Gain does not matter.
        let quiet: Vec<f32> = clicks(3 * SR, SR / 10, SR / 4)
            .iter()
            .map(|v| v * 0.01)
            .collect();
        assert_eq!(onset_rate(&quiet, &mel), Ok(rate));
    }

    #[test]
    fn steady_noise_has_one_onset_and_bursts_one_each() {
        let mel = mel();
        assert_eq!(onset_rate(&noise(2 * SR, 0.5, 3), &mel), Ok(0.5));
        let mut x = vec![0.0; SR / 5];
        for seed in 0..3 {
            x.extend(decaying_noise(SR / 2, 0.05, seed));
        }
        let log_mel = mel.log_mel(&x);
        let hop_s = 512.0 / 48_000.0;
        let on = onset_frames(&log_mel, 128, mel.frames_for(x.len()), hop_s).expect("onsets");
        // Bursts start at 0.2, 0.7 and 1.2 s: frames 18.75, 65.6 and 112.5.
        assert_eq!(on.len(), 3, "{on:?}");
        for (o, want) in on.iter().zip([18.75, 65.625, 112.5]) {
            assert!((*o as f64 - want).abs() <= 2.0, "{on:?}");
        }
        assert!(onset_frames(&log_mel, 127, 5, hop_s).is_err());
        assert!(onset_rate(&[], &mel).is_err());
    }

    #[test]
    fn envelope_of_a_decay() {
        // Amplitude e^(−t/0.1): −20 dB after 0.1·ln 10 = 0.230 s.
        let mut x = vec![0.0; SR / 10];
        x.extend(decaying_noise(SR, 0.1, 4));
        let e = envelope(&x, 48_000).expect("envelope");
        assert!(e.attack_s <= 0.01, "{e:?}");
        assert!((e.decay_s - 0.230).abs() < 0.02, "{e:?}");
        assert!(e.crest_db > 10.0, "{e:?}");
        let s = envelope(&sine(SR, 440.0, 0.5), 48_000).expect("envelope");
        assert!((s.crest_db - 3.0103).abs() < 0.01, "{s:?}");
        let z = envelope(&vec![0.0; 100], 48_000).expect("envelope");
        assert_eq!((z.attack_s, z.decay_s, z.crest_db), (0.0, 0.0, 0.0));
    }
}
