//! Phase-gradient heuristic integration (PGHI; Průša, Balazs & Søndergaard, "A noniterative
//! method for reconstruction of phase from STFT magnitude", IEEE/ACM TASLP 2017): STFT phases
//! from the magnitude alone.
//!
//! For a Gaussian window `exp(−π t²/λ)` the STFT is, up to a known factor, an analytic
//! function, so the phase gradient follows from the log-magnitude gradient. With the phase
//! referred to each frame's centre, `s = ln|V|`, time `x` in samples and frequency `ω` in
//! cycles per sample:
//!
//! * `∂φ/∂x = 2πω + (1/λ)·∂s/∂ω` (instantaneous frequency),
//! * `∂φ/∂ω = −λ·∂s/∂x` (local group delay).
//!
//! A Hann window is close enough to the Gaussian of `λ = 0.25645·n²` (the paper's fit; 0.8×
//! and 1.25× that are both worse on a chirp). The phase is then integrated over the
//! time-frequency grid, always from the largest coefficient already known to its unknown
//! neighbours (the paper's max-heap; here a bucket queue over 0.4 dB classes), because the
//! gradient estimates are reliable where the magnitude is large. Coefficients below a
//! tolerance carry noise only: they get random phases.

use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// λ of the Gaussian standing in for a Hann window of `n` samples, in samples².
pub fn hann_lambda(n: usize) -> f64 {
    0.25645 * (n as f64).powi(2)
}

/// PGHI's threshold: coefficients below this fraction of the largest magnitude get random
/// phases. Always in (0, 1).
#[derive(Debug, Clone, Copy)]
pub struct Tolerance(f32);

impl Tolerance {
    /// `None` unless `0 < fraction < 1`.
    pub fn new(fraction: f32) -> Option<Self> {
        (fraction > 0.0 && fraction < 1.0).then_some(Self(fraction))
    }

    pub fn get(self) -> f32 {
        self.0
    }
}

impl Default for Tolerance {
    /// 10⁻⁴ (−80 dB). On real recordings 10⁻³…10⁻⁷ all measure within noise of each other
    /// (`crates/metrics/tests/vocoder_study.rs`); 10⁻⁴ was marginally best on drums.
    fn default() -> Self {
        Self(1e-4)
    }
}

// Never NaN (checked in `new`), so bitwise equality is an equivalence.
impl PartialEq for Tolerance {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Tolerance {}

/// Seed of the random phases of coefficients below the tolerance (fixed: synthesis repeats).
const NOISE_SEED: u64 = 0x5047_4849;

/// Width of the log-magnitude classes the integration order uses, nepers (0.4 dB): finer
/// than the gradient estimates' own accuracy, and it turns the paper's max-heap into a bucket
/// queue with O(1) steps.
const CLASS_NEPERS: f32 = 0.05;

/// PGHI phases for a magnitude spectrogram `[frames][bins]` of a centred STFT with a periodic
/// Hann window of `n_fft` samples and hop `hop`, in that STFT's phase convention (each frame
/// transformed from its first sample).
pub fn pghi_phases(
    mag: &[f32],
    frames: usize,
    bins: usize,
    n_fft: usize,
    hop: usize,
    tolerance: Tolerance,
) -> Vec<f32> {
    let n = frames * bins;
    // Indices are held in 32 bits: up to 12 hours at hop 512. Beyond that (never for a sound
    // here), zero phases.
    if n == 0 || n > u32::MAX as usize {
        return vec![0.0; n];
    }
    let mag = &mag[..n];
    let two_pi = 2.0 * std::f32::consts::PI;
    let max = mag.iter().fold(0.0f32, |a, &b| a.max(b));
    let threshold = max * tolerance.get();
    // Log magnitude floored at the threshold: below it the derivatives would only measure
    // the floor's depth, and the integration never starts from there anyway.
    let floor = threshold.max(f32::MIN_POSITIVE).ln();
    let s: Vec<f32> = mag.par_iter().map(|&m| m.ln().max(floor)).collect();
    let (time_step, freq_step) = phase_steps(&s, frames, bins, n_fft, hop);
    let mut phase = vec![0.0f32; n];
    let mut known = vec![false; n];
    let mut rng = rand::rngs::StdRng::seed_from_u64(NOISE_SEED);
    for ((p, k), &m) in phase.iter_mut().zip(known.iter_mut()).zip(mag) {
        if m <= threshold {
            *p = rng.random::<f32>() * two_pi;
            *k = true;
        }
    }
    let classes = ((max.max(f32::MIN_POSITIVE).ln() - floor) / CLASS_NEPERS) as usize + 1;
    let class = |i: usize| (((s[i] - floor) / CLASS_NEPERS) as usize).min(classes - 1);
    // Restart points, largest first: each starts a new region at phase 0 where the regions
    // before did not reach.
    let mut starts = Classes::new(classes);
    for (i, _) in known.iter().enumerate().filter(|(_, k)| !**k) {
        starts.push(class(i), i as u32);
    }
    let mut frontier = Classes::new(classes);
    loop {
        // Always continue from the largest coefficient whose phase is known.
        while let Some(i) = frontier.pop() {
            let i = i as usize;
            let (t, k) = (i / bins, i % bins);
            let base = phase[i];
            let mut visit = |j: usize, delta: f32| {
                if !known[j] {
                    known[j] = true;
                    phase[j] = (base + delta).rem_euclid(two_pi);
                    frontier.push(class(j), j as u32);
                }
            };
            // Trapezoidal rule between the two coefficients' gradient estimates.
            if t + 1 < frames {
                visit(i + bins, 0.5 * (time_step[i] + time_step[i + bins]));
            }
            if t > 0 {
                visit(i - bins, -0.5 * (time_step[i] + time_step[i - bins]));
            }
            if k + 1 < bins {
                visit(i + 1, 0.5 * (freq_step[i] + freq_step[i + 1]));
            }
            if k > 0 {
                visit(i - 1, -0.5 * (freq_step[i] + freq_step[i - 1]));
            }
        }
        // Nothing known borders an unknown coefficient any more: restart at the largest left.
        let Some(start) = std::iter::from_fn(|| starts.pop())
            .map(|s| s as usize)
            .find(|&s| !known[s])
        else {
            break;
        };
        known[start] = true;
        frontier.push(class(start), start as u32);
    }
    // Frames are transformed from their first sample, N/2 before the centre: bin k picks up
    // a factor (−1)^k.
    for row in phase.chunks_exact_mut(bins) {
        for p in row.iter_mut().skip(1).step_by(2) {
            *p += std::f32::consts::PI;
        }
    }
    phase
}

/// Coefficient indices by magnitude class, popped from the highest non-empty class (a bucket
/// queue; last in, first out within a class).
struct Classes {
    lists: Vec<Vec<u32>>,
    top: usize,
}

impl Classes {
    fn new(classes: usize) -> Self {
        Self {
            lists: vec![Vec::new(); classes.max(1)],
            top: 0,
        }
    }

    fn push(&mut self, class: usize, index: u32) {
        self.lists[class].push(index);
        self.top = self.top.max(class);
    }

    fn pop(&mut self) -> Option<u32> {
        loop {
            if let Some(i) = self.lists[self.top].pop() {
                return Some(i);
            }
            if self.top == 0 {
                return None;
            }
            self.top -= 1;
        }
    }
}

/// Phase advance per frame step and per bin step at every coefficient (radians), from the
/// log-magnitude `s` gradient. The per-frame advance is kept modulo 2π so that f32 holds it
/// precisely even at high bins.
fn phase_steps(
    s: &[f32],
    frames: usize,
    bins: usize,
    n_fft: usize,
    hop: usize,
) -> (Vec<f32>, Vec<f32>) {
    let lambda = hann_lambda(n_fft);
    let (a, m_len) = (hop as f64, n_fft as f64);
    let along_freq = (a * m_len / lambda) as f32;
    let along_time = (-lambda / (a * m_len)) as f32;
    let carrier: Vec<f32> = (0..bins)
        .map(|k| {
            ((2.0 * std::f64::consts::PI * a * k as f64 / m_len) % (2.0 * std::f64::consts::PI))
                as f32
        })
        .collect();
    let mut time_step = vec![0.0f32; s.len()];
    let mut freq_step = vec![0.0f32; s.len()];
    time_step
        .par_chunks_mut(bins)
        .zip(freq_step.par_chunks_mut(bins))
        .enumerate()
        .for_each(|(t, (ts, fs))| {
            let row = &s[t * bins..(t + 1) * bins];
            let before = &s[t.saturating_sub(1) * bins..][..bins];
            let after = &s[(t + 1).min(frames - 1) * bins..][..bins];
            // Centred differences inside, one-sided at the edges.
            let dt_scale = if t == 0 || t + 1 == frames { 1.0 } else { 0.5 };
            for k in 0..bins {
                let (lo, hi) = (k.saturating_sub(1), (k + 1).min(bins - 1));
                let ds_dk = (row[hi] - row[lo]) / (hi - lo).max(1) as f32;
                let ds_dt = (after[k] - before[k]) * dt_scale;
                ts[k] = carrier[k] + along_freq * ds_dk;
                fs[k] = along_time * ds_dt;
            }
        });
    (time_step, freq_step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stft::Stft;
    use crate::vocoder::{GriffinLim, PhaseInit, spectral_convergence};

    /// A 200 Hz → 6 kHz linear chirp, a steady 440 Hz tone and a click, at 48 kHz.
    fn chirp_tone_click(len: usize) -> Vec<f32> {
        let sr = 48_000.0f64;
        (0..len)
            .map(|i| {
                let t = i as f64 / sr;
                let chirp = (2.0 * std::f64::consts::PI * (200.0 * t + 2900.0 * t * t)).sin();
                let tone = (2.0 * std::f64::consts::PI * 440.0 * t).sin();
                let click = if i == len / 2 { 4.0 } else { 0.0 };
                (0.4 * chirp + 0.3 * tone + click) as f32
            })
            .collect()
    }

    #[test]
    fn pghi_beats_zero_and_random_phases_at_equal_iterations() {
        // The models' geometry: n_fft 2048, hop 512.
        let stft = Stft::new(2048, 512);
        let signal = chirp_tone_click(48_000);
        let spec = stft.forward(&signal);
        let mag: Vec<f32> = spec.data.iter().map(|c| c.norm()).collect();
        let sc = |init, iterations| {
            let gl = GriffinLim {
                iterations,
                momentum: 0.99,
                init,
            };
            let y = gl.run(&stft, &mag, spec.frames, Some(signal.len()));
            spectral_convergence(&stft, &y, &mag)
        };
        for iterations in [0, 8] {
            let pghi = sc(PhaseInit::Pghi(Tolerance::default()), iterations);
            let zero = sc(PhaseInit::Zero, iterations);
            let random = sc(PhaseInit::Random(3), iterations);
            assert!(
                pghi < 0.5 * zero.min(random),
                "{iterations} iterations: PGHI {pghi}, zero {zero}, random {random}"
            );
        }
        // Without any iteration PGHI alone is already close (0.10 measured).
        assert!(sc(PhaseInit::Pghi(Tolerance::default()), 0) < 0.15);
    }

    #[test]
    fn pghi_recovers_a_steady_tone_s_phase_advance() {
        // A 1 kHz tone: between frames each bin near the peak must advance by 2π·f·hop/sr.
        let (n_fft, hop) = (2048, 512);
        let stft = Stft::new(n_fft, hop);
        let tone: Vec<f32> = (0..24_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
            .collect();
        let spec = stft.forward(&tone);
        let mag: Vec<f32> = spec.data.iter().map(|c| c.norm()).collect();
        let bins = spec.bins;
        let phase = pghi_phases(&mag, spec.frames, bins, n_fft, hop, Tolerance::default());
        let peak = (1000.0 * n_fft as f64 / 48_000.0).round() as usize;
        let expected = 2.0 * std::f64::consts::PI * 1000.0 * hop as f64 / 48_000.0;
        for t in 5..spec.frames - 5 {
            let got = f64::from(phase[(t + 1) * bins + peak] - phase[t * bins + peak]);
            let err = (got - expected).rem_euclid(2.0 * std::f64::consts::PI);
            let err = err.min(2.0 * std::f64::consts::PI - err);
            assert!(err < 0.05, "frame {t}: advance error {err} rad");
        }
    }

    #[test]
    fn tolerance_is_validated_and_edge_cases_are_finite() {
        assert!(Tolerance::new(0.0).is_none());
        assert!(Tolerance::new(1.0).is_none());
        assert!(Tolerance::new(-1e-3).is_none());
        assert!(Tolerance::new(f32::NAN).is_none());
        assert_eq!(Tolerance::new(1e-3).map(Tolerance::get), Some(1e-3));
        assert_eq!(Tolerance::new(1e-4), Some(Tolerance::default()));
        assert!(pghi_phases(&[], 0, 1025, 2048, 512, Tolerance::default()).is_empty());
        // Silence: every coefficient is below the tolerance; phases are random but finite.
        let silent = pghi_phases(&[0.0; 3 * 5], 3, 5, 8, 2, Tolerance::default());
        assert!(silent.len() == 15 && silent.iter().all(|p| p.is_finite()));
        // One frame, one bin: no neighbours to integrate to.
        assert_eq!(
            pghi_phases(&[1.0], 1, 1, 2, 1, Tolerance::default()).len(),
            1
        );
    }
}
