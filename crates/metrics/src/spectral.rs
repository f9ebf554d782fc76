//! Reconstruction metrics: how far a reconstructed or generated spectrogram/signal is from a
//! reference of the same length. Mels are the models' `log1p` HTK power mels, `[n_mels][frames]`
//! row-major (`audio::mel::MelSpectrogram::log_mel`).

use audio::SpectrogramConfig;
use audio::mel::MelSpectrogram;
use audio::stft::Stft;
use serde::Serialize;

use crate::summary::median;
use crate::{MetricsError, Result};

/// Power floor added to both mels in [`log_spectral_distance`]. A full-scale sine gives a mel
/// band power of about 2.6e5 (|X| = n_fft/4 = 512), so 1e-5 sits ~104 dB below it: far below
/// anything audible in peak-normalised audio, yet large enough that silence against silence is
/// exactly 0 dB and f32 rounding near zero does not count. A band that is silent in one mel
/// and at power 0.01 (log1p ≈ 0.01) in the other still counts 30 dB: LSD punishes noise in
/// silence, which is why [`noise_floor`] is reported beside it.
pub const LSD_POWER_EPS: f64 = 1e-5;

/// (n_fft, hop) of the multi-resolution STFT distance (Yamamoto et al. 2020, Parallel WaveGAN).
pub const MRSTFT_RESOLUTIONS: [(usize, usize); 3] = [(512, 128), (1024, 256), (2048, 512)];

/// Magnitude floor in the log-magnitude term of the MR-STFT distance. Magnitudes here are
/// unnormalised FFT sums (a full-scale tone peaks at n_fft/4), so 1e-5 is ≥ 140 dB below a
/// tone and near the f32 FFT's rounding noise, which must not dominate the mean over bins.
pub const MRSTFT_MAG_EPS: f64 = 1e-5;

/// A mel of `len` values holds `n_mels × frames` of them.
pub(crate) fn check_mel_shape(len: usize, n_mels: usize, frames: usize) -> Result<()> {
    if n_mels * frames != len {
        return Err(MetricsError::SizeMismatch {
            what: "n_mels × frames against the mel length",
            left: n_mels * frames,
            right: len,
        });
    }
    Ok(())
}

fn check_same(a: &[f32], b: &[f32], what: &'static str) -> Result<()> {
    if a.len() != b.len() {
        return Err(MetricsError::SizeMismatch {
            what,
            left: a.len(),
            right: b.len(),
        });
    }
    if a.is_empty() {
        return Err(MetricsError::Empty { what });
    }
    Ok(())
}

/// Mean absolute difference of two log1p mels of equal shape (the VQ-VAE's L1 loss scale).
pub fn log_mel_l1(a: &[f32], b: &[f32]) -> Result<f64> {
    check_same(a, b, "log mels")?;
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .sum();
    Ok(sum / a.len() as f64)
}

/// Where a log1p mel counts as loud for [`loud_bias`]: 6 nepers, a mel power of ~400 in a
/// peak-normalised recording — the bodies of drum hits and the partials of notes, the top
/// few per cent of a one-shot collection's cells.
pub const LOUD_LOG_MEL: f32 = 6.0;

/// Mean signed difference `decoded − truth` (log1p units) over the cells where `truth` is at
/// least `threshold`: how far a codec flattens the loudest parts of a sound (negative) or
/// overshoots them. A codec that blurs across bands and frames keeps the average level (the
/// L1 hardly moves) but lowers the peaks, so the body of a hit falls below its click. `None`
/// when no cell reaches the threshold.
pub fn loud_bias(decoded: &[f32], truth: &[f32], threshold: f32) -> Result<Option<f64>> {
    check_same(decoded, truth, "log mels")?;
    let (sum, n) = decoded
        .iter()
        .zip(truth)
        .filter(|&(_, t)| *t >= threshold)
        .fold((0.0f64, 0usize), |(s, n), (d, t)| {
            (s + f64::from(*d) - f64::from(*t), n + 1)
        });
    Ok((n > 0).then(|| sum / n as f64))
}

/// Log-spectral distance in dB between two log1p mels `[n_mels][frames]`: per frame
/// `sqrt(mean over bands m ≥ first_band of (10·log10((expm1(a)+ε)/(expm1(b)+ε)))²)`, then the
/// mean over frames, with ε = [`LSD_POWER_EPS`]. Symmetric in `a` and `b`. A gain g on the
/// power mel of bands well above ε gives exactly |10·log10 g| dB.
pub fn log_spectral_distance(
    a: &[f32],
    b: &[f32],
    n_mels: usize,
    frames: usize,
    first_band: usize,
) -> Result<f64> {
    check_same(a, b, "log mels")?;
    check_mel_shape(a.len(), n_mels, frames)?;
    if first_band >= n_mels {
        return Err(MetricsError::InvalidParameter {
            name: "first_band",
            reason: "must be below n_mels",
        });
    }
    let power = |v: f32| f64::from(v).exp_m1().max(0.0) + LSD_POWER_EPS;
    let bands = (n_mels - first_band) as f64;
    let mut total = 0.0;
    for t in 0..frames {
        let mut sq = 0.0;
        for m in first_band..n_mels {
            let i = m * frames + t;
            let d = 10.0 * (power(a[i]) / power(b[i])).log10();
            sq += d * d;
        }
        total += (sq / bands).sqrt();
    }
    Ok(total / frames as f64)
}

/// A log1p mel `[n_mels][frames]` with each cell of a code grid (`bands_per_row` bands ×
/// `frames_per_col` frames from band 0 and frame 0; the last row and column may be narrower)
/// replaced by the geometric mean of its power floored at [`LSD_POWER_EPS`] — the level that
/// minimises the cell's squared dB error. What a codec that knew each cell's level exactly,
/// and nothing finer, would decode: its distance from the mel is the part of a codec's
/// distance that lies in detail finer than the grid.
pub fn grid_cell_mean(
    mel: &[f32],
    n_mels: usize,
    frames: usize,
    bands_per_row: usize,
    frames_per_col: usize,
) -> Result<Vec<f32>> {
    if mel.is_empty() {
        return Err(MetricsError::Empty { what: "log mel" });
    }
    check_mel_shape(mel.len(), n_mels, frames)?;
    if bands_per_row == 0 || frames_per_col == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "grid cell",
            reason: "must span at least one band and one frame",
        });
    }
    let log_power = |v: f32| (f64::from(v).exp_m1().max(0.0) + LSD_POWER_EPS).ln();
    let mut out = vec![0.0f32; mel.len()];
    for b0 in (0..n_mels).step_by(bands_per_row) {
        let bands = b0..(b0 + bands_per_row).min(n_mels);
        for t0 in (0..frames).step_by(frames_per_col) {
            let cols = t0..(t0 + frames_per_col).min(frames);
            let cells = bands
                .clone()
                .flat_map(|m| cols.clone().map(move |t| m * frames + t));
            let n = (bands.len() * cols.len()) as f64;
            let mean = cells.clone().map(|i| log_power(mel[i])).sum::<f64>() / n;
            let level = (mean.exp() - LSD_POWER_EPS).max(0.0).ln_1p() as f32;
            for i in cells {
                out[i] = level;
            }
        }
    }
    Ok(out)
}

fn hz_to_mel_htk(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz_htk(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// Centre frequencies (Hz) of the mel bands of `cfg` (HTK scale, edges evenly spaced in mel
/// between `f_min` and `f_max`, band m peaking at edge m + 1), as torchaudio builds them.
pub fn band_centres_hz(cfg: &SpectrogramConfig) -> Vec<f64> {
    let lo = hz_to_mel_htk(cfg.f_min);
    let hi = hz_to_mel_htk(cfg.f_max_hz());
    let step = (hi - lo) / (cfg.n_mels + 1) as f64;
    (0..cfg.n_mels)
        .map(|m| mel_to_hz_htk(lo + step * (m + 1) as f64))
        .collect()
}

/// The first mel band whose centre lies above `hz` (`n_mels` when none does). For the default
/// config (128 bands, 0–24 kHz) and 8 kHz this is band 91: bands 91..128 form the "high band".
pub fn band_above_hz(cfg: &SpectrogramConfig, hz: f64) -> usize {
    band_centres_hz(cfg)
        .iter()
        .position(|&c| c > hz)
        .unwrap_or(cfg.n_mels)
}

/// The two terms of the multi-resolution STFT distance, each averaged over the resolutions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MrStft {
    /// ‖|X|−|Y|‖_F / ‖|Y|‖_F.
    pub spectral_convergence: f64,
    /// Mean over bins and frames of |ln(|X|+ε) − ln(|Y|+ε)|.
    pub log_magnitude: f64,
    /// Their sum: the distance.
    pub total: f64,
}

/// Multi-resolution STFT distance of `x` from the reference `y` (Yamamoto et al. 2020):
/// for each (n_fft, hop) of [`MRSTFT_RESOLUTIONS`] (periodic Hann, centred, reflect padding)
/// spectral convergence plus mean absolute log-magnitude difference (natural log, ε =
/// [`MRSTFT_MAG_EPS`]); both averaged over the resolutions. Signals of different length are
/// compared over the shorter. A silent reference has no scale for the spectral convergence:
/// 0 when `x` is silent too, otherwise [`MetricsError::Undefined`].
pub fn multi_resolution_stft(x: &[f32], y: &[f32]) -> Result<MrStft> {
    let n = x.len().min(y.len());
    if n == 0 {
        return Err(MetricsError::Empty { what: "signal" });
    }
    let (x, y) = (&x[..n], &y[..n]);
    let (mut sc_sum, mut lm_sum) = (0.0, 0.0);
    for (n_fft, hop) in MRSTFT_RESOLUTIONS {
        let stft = Stft::new(n_fft, hop);
        let (sx, sy) = (stft.forward(x), stft.forward(y));
        let (mut diff2, mut ref2, mut logabs) = (0.0f64, 0.0f64, 0.0f64);
        for (cx, cy) in sx.data.iter().zip(&sy.data) {
            let mx = f64::from(cx.norm());
            let my = f64::from(cy.norm());
            diff2 += (mx - my) * (mx - my);
            ref2 += my * my;
            logabs += ((mx + MRSTFT_MAG_EPS) / (my + MRSTFT_MAG_EPS)).ln().abs();
        }
        sc_sum += if ref2 > 0.0 {
            (diff2 / ref2).sqrt()
        } else if diff2 == 0.0 {
            0.0
        } else {
            return Err(MetricsError::Undefined(
                "spectral convergence against a silent reference",
            ));
        };
        lm_sum += logabs / sx.data.len() as f64;
    }
    let r = MRSTFT_RESOLUTIONS.len() as f64;
    let (sc, lm) = (sc_sum / r, lm_sum / r);
    Ok(MrStft {
        spectral_convergence: sc,
        log_magnitude: lm,
        total: sc + lm,
    })
}

/// [`multi_resolution_stft`]'s total: the single number a report prints.
pub fn multi_resolution_stft_distance(x: &[f32], y: &[f32]) -> Result<f64> {
    multi_resolution_stft(x, y).map(|m| m.total)
}

/// The "noise floor" of a log1p mel: the median of its values. Generated or reconstructed
/// sounds whose floor sits well above the collection's have hiss where the originals have
/// silence; the median ignores the loud part of a sound as long as it is under half.
pub fn noise_floor(log_mel: &[f32]) -> Result<f64> {
    let values: Vec<f64> = log_mel.iter().map(|&v| f64::from(v)).collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(MetricsError::NonFinite { what: "log mel" });
    }
    median(&values).ok_or(MetricsError::Empty { what: "log mel" })
}

/// Energy of the 2-periodic ("checkerboard") pattern of a log1p mel `[n_mels][frames]`: the
/// mean square of the difference between each cell and the mean of its two neighbours, along
/// frequency (rows) and along time (frames), added. A decoder whose upsampling overlaps
/// unevenly (stride-2 transposed convolutions with a 3-wide kernel) paints such a pattern; a
/// smooth or a naturally varying mel has little of it. Compare a decoded mel with the true one.
pub fn checkerboard_energy(mel: &[f32], n_mels: usize, frames: usize) -> Result<f64> {
    if mel.len() != n_mels * frames {
        return Err(MetricsError::SizeMismatch {
            what: "mel cells",
            left: mel.len(),
            right: n_mels * frames,
        });
    }
    if n_mels < 3 || frames < 3 {
        return Err(MetricsError::Empty {
            what: "mel (needs 3 rows and 3 frames)",
        });
    }
    let at = |r: usize, t: usize| f64::from(mel[r * frames + t]);
    let (mut rows, mut cols) = (0.0, 0.0);
    for r in 1..n_mels - 1 {
        for t in 1..frames - 1 {
            rows += (at(r, t) - 0.5 * (at(r - 1, t) + at(r + 1, t))).powi(2);
            cols += (at(r, t) - 0.5 * (at(r, t - 1) + at(r, t + 1))).powi(2);
        }
    }
    Ok((rows + cols) / ((n_mels - 2) * (frames - 2)) as f64)
}

/// All reconstruction metrics of `reconstruction` against `original`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reconstruction {
    pub log_mel_l1: f64,
    /// LSD over all bands, dB.
    pub lsd_db: f64,
    /// LSD over bands centred above 8 kHz, dB.
    pub lsd_high_db: f64,
    pub mr_stft: MrStft,
    pub noise_floor_original: f64,
    pub noise_floor_reconstruction: f64,
}

/// Frequency above which [`Reconstruction::lsd_high_db`] is measured.
pub const HIGH_BAND_HZ: f64 = 8000.0;

/// Computes every reconstruction metric from two signals (compared over the shorter length).
pub fn reconstruction(
    original: &[f32],
    reconstruction: &[f32],
    mel: &MelSpectrogram,
) -> Result<Reconstruction> {
    let n = original.len().min(reconstruction.len());
    if n == 0 {
        return Err(MetricsError::Empty { what: "signal" });
    }
    let (orig, recon) = (&original[..n], &reconstruction[..n]);
    let (a, b) = (mel.log_mel(orig), mel.log_mel(recon));
    let n_mels = mel.config.n_mels;
    let frames = mel.frames_for(n);
    let high = band_above_hz(&mel.config, HIGH_BAND_HZ).min(n_mels.saturating_sub(1));
    Ok(Reconstruction {
        log_mel_l1: log_mel_l1(&a, &b)?,
        lsd_db: log_spectral_distance(&a, &b, n_mels, frames, 0)?,
        lsd_high_db: log_spectral_distance(&a, &b, n_mels, frames, high)?,
        mr_stft: multi_resolution_stft(recon, orig)?,
        noise_floor_original: noise_floor(&a)?,
        noise_floor_reconstruction: noise_floor(&b)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_bias_sees_only_the_loud_cells_and_their_sign() {
        let truth = [0.5f32, 7.0, 9.0, 2.0];
        assert_eq!(loud_bias(&truth, &truth, LOUD_LOG_MEL), Ok(Some(0.0)));
        // Peaks one neper low, the quiet cells raised: only the peaks count.
        let flat = [1.5f32, 6.0, 8.0, 3.0];
        assert_eq!(loud_bias(&flat, &truth, LOUD_LOG_MEL), Ok(Some(-1.0)));
        let over = [0.5f32, 7.5, 9.5, 2.0];
        assert_eq!(loud_bias(&over, &truth, LOUD_LOG_MEL), Ok(Some(0.5)));
        assert_eq!(loud_bias(&[1.0; 3], &[1.0; 3], LOUD_LOG_MEL), Ok(None));
        assert!(loud_bias(&[1.0; 3], &[1.0; 2], LOUD_LOG_MEL).is_err());
    }

    #[test]
    fn checkerboard_energy_sees_the_alternating_pattern_and_not_smooth_mels() {
        let (n, f) = (16, 20);
        let smooth: Vec<f32> = (0..n * f)
            .map(|i| ((i / f) as f32 * 0.3).sin() + (i % f) as f32 * 0.05)
            .collect();
        let checkered: Vec<f32> = smooth
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v + if ((i / f) + (i % f)) % 2 == 0 {
                    0.2
                } else {
                    -0.2
                }
            })
            .collect();
        let (a, b) = (
            checkerboard_energy(&smooth, n, f).expect("valid"),
            checkerboard_energy(&checkered, n, f).expect("valid"),
        );
        assert!(a < 0.01, "smooth {a}");
        // ±0.2 alternating: each cell is 0.4 from its neighbours' mean, on both axes.
        assert!((b - a - 2.0 * 0.16).abs() < 0.03, "checkered {b}");
        assert!(checkerboard_energy(&smooth, n, f + 1).is_err());
    }
    use crate::testutil::{decaying_noise, mel, noise};

    #[test]
    fn identical_inputs_are_at_distance_zero() {
        let mel = mel();
        let x = noise(48_000, 0.5, 1);
        let a = mel.log_mel(&x);
        let frames = mel.frames_for(x.len());
        assert_eq!(log_mel_l1(&a, &a), Ok(0.0));
        assert_eq!(log_spectral_distance(&a, &a, 128, frames, 0), Ok(0.0));
        assert_eq!(multi_resolution_stft_distance(&x, &x), Ok(0.0));
        let r = reconstruction(&x, &x, &mel).expect("metrics");
        assert_eq!(
            (r.log_mel_l1, r.lsd_db, r.lsd_high_db, r.mr_stft.total),
            (0.0, 0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn a_power_gain_gives_its_decibels() {
        let mel = mel();
        let x = noise(48_000, 1.0, 2);
        let a = mel.log_mel(&x);
        let frames = mel.frames_for(x.len());
        // Gain 4 applied to the power mel directly: exactly 10·log10(4) dB per band.
        let b: Vec<f32> = a.iter().map(|&v| (4.0 * v.exp_m1()).ln_1p()).collect();
        let lsd = log_spectral_distance(&a, &b, 128, frames, 0).expect("lsd");
        assert!((lsd - 10.0 * 4f64.log10()).abs() < 1e-3, "lsd {lsd}");
        // Amplitude ×0.5 on the signal is power ×0.25: 6.02 dB, and L1 ≈ ln 4 for loud bands.
        let half: Vec<f32> = x.iter().map(|v| v * 0.5).collect();
        let c = mel.log_mel(&half);
        let lsd = log_spectral_distance(&a, &c, 128, frames, 0).expect("lsd");
        assert!((lsd - 20.0 * 2f64.log10()).abs() < 1e-3, "lsd {lsd}");
        let high = band_above_hz(&mel.config, 8000.0);
        let lsd_high = log_spectral_distance(&a, &c, 128, frames, high).expect("lsd");
        assert!(
            (lsd_high - 20.0 * 2f64.log10()).abs() < 1e-3,
            "lsd {lsd_high}"
        );
        let l1 = log_mel_l1(&a, &c).expect("l1");
        assert!((l1 - 4f64.ln()).abs() < 0.05, "l1 {l1}");
    }

    #[test]
    fn grid_cell_mean_keeps_each_cells_geometric_level() {
        // 4 bands × 3 frames, cells of 2 × 2: the last column is one frame wide.
        let power = [1.0, 4.0, 2.0, 16.0, 64.0, 8.0, 0.0, 0.0, 5.0, 0.0, 0.0, 5.0];
        let mel: Vec<f32> = power.iter().map(|p: &f64| p.ln_1p() as f32).collect();
        let out = grid_cell_mean(&mel, 4, 3, 2, 2).expect("grid");
        let level = |v: f32| f64::from(v).exp_m1();
        // Powers 1, 4, 16, 64: geometric mean 8 (the floor ε shifts it by < 1e-5).
        for i in [0, 1, 3, 4] {
            assert!(
                (level(out[i]) - 8.0).abs() < 1e-3,
                "cell {i}: {}",
                level(out[i])
            );
        }
        // The narrow column holds 2 and 8 → 4; the silent cell stays silent.
        assert!((level(out[2]) - 4.0).abs() < 1e-3 && (level(out[5]) - 4.0).abs() < 1e-3);
        for i in [6, 7, 9, 10] {
            assert!(level(out[i]).abs() < 1e-6, "silent cell {i}");
        }
        // A mel already constant over its cells comes back as it was.
        let again = grid_cell_mean(&out, 4, 3, 2, 2).expect("grid");
        let lsd = log_spectral_distance(&again, &out, 4, 3, 0).expect("lsd");
        assert!(lsd < 1e-3, "lsd {lsd}");
        // Detail finer than the grid is a distance; a one-cell grid is the mel itself.
        assert!(log_spectral_distance(&out, &mel, 4, 3, 0).expect("lsd") > 1.0);
        let cells = grid_cell_mean(&mel, 4, 3, 1, 1).expect("grid");
        assert!(log_spectral_distance(&cells, &mel, 4, 3, 0).expect("lsd") < 1e-3);
        assert!(grid_cell_mean(&mel, 4, 3, 0, 2).is_err());
        assert!(grid_cell_mean(&mel, 4, 2, 2, 2).is_err());
        assert!(grid_cell_mean(&[], 0, 0, 2, 2).is_err());
    }

    #[test]
    fn lsd_is_symmetric_and_finite_against_silence() {
        let (a, z) = (vec![3.0f32; 128 * 4], vec![0.0f32; 128 * 4]);
        assert_eq!(log_spectral_distance(&z, &z, 128, 4, 0), Ok(0.0));
        let ab = log_spectral_distance(&a, &z, 128, 4, 0).expect("lsd");
        let ba = log_spectral_distance(&z, &a, 128, 4, 0).expect("lsd");
        assert!(
            ab.is_finite() && ab > 50.0 && (ab - ba).abs() < 1e-9,
            "{ab} {ba}"
        );
        assert!(matches!(
            log_spectral_distance(&a, &z, 128, 3, 0),
            Err(MetricsError::SizeMismatch { .. })
        ));
        assert!(log_spectral_distance(&a, &z, 128, 4, 128).is_err());
        assert!(matches!(
            log_mel_l1(&a, &z[1..]),
            Err(MetricsError::SizeMismatch { .. })
        ));
        assert!(matches!(
            log_mel_l1(&[], &[]),
            Err(MetricsError::Empty { .. })
        ));
    }

    #[test]
    fn the_high_band_starts_at_band_91() {
        let cfg = SpectrogramConfig::default();
        let c = band_centres_hz(&cfg);
        assert!(c.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(band_above_hz(&cfg, 8000.0), 91);
        assert!(c[90] <= 8000.0 && c[91] > 8000.0, "{} {}", c[90], c[91]);
        assert_eq!(band_above_hz(&cfg, 30_000.0), 128);
    }

    #[test]
    fn mr_stft_grows_with_delay() {
        let x = decaying_noise(24_000, 0.15, 3);
        let delayed = |d: usize| -> Vec<f32> {
            let mut y = vec![0.0; d];
            y.extend_from_slice(&x[..x.len() - d]);
            y
        };
        let ds: Vec<f64> = [16, 128, 1024, 4800]
            .iter()
            .map(|&d| multi_resolution_stft_distance(&delayed(d), &x).expect("mrstft"))
            .collect();
        assert!(ds[0] > 0.0, "{ds:?}");
        assert!(ds.windows(2).all(|w| w[1] > w[0]), "{ds:?}");
    }

    #[test]
    fn mr_stft_edge_cases() {
        let x = noise(5000, 0.5, 4);
        let z = vec![0.0f32; 5000];
        assert_eq!(multi_resolution_stft_distance(&z, &z), Ok(0.0));
        assert!(matches!(
            multi_resolution_stft_distance(&x, &z),
            Err(MetricsError::Undefined(_))
        ));
        assert!(multi_resolution_stft_distance(&z, &x).expect("mrstft") > 0.0);
        // Longer x: compared over y's length only.
        let mut longer = x.clone();
        longer.extend(noise(3000, 1.0, 5));
        assert_eq!(multi_resolution_stft_distance(&longer, &x), Ok(0.0));
        assert!(matches!(
            multi_resolution_stft_distance(&[], &x),
            Err(MetricsError::Empty { .. })
        ));
    }

    #[test]
    fn noise_floor_is_the_median_of_the_mel() {
        let mel = mel();
        let mut x = noise(24_000, 0.5, 6);
        x.extend(vec![0.0; 48_000]);
        assert!(noise_floor(&mel.log_mel(&x)).expect("floor") < 1e-6);
        let hiss = noise(72_000, 0.01, 7);
        assert!(noise_floor(&mel.log_mel(&hiss)).expect("floor") > 0.005);
        assert_eq!(noise_floor(&[1.0, 5.0, 2.0]), Ok(2.0));
        assert!(noise_floor(&[]).is_err());
    }
}
