//! Griffin-Lim phase retrieval: the fast variant with momentum (Perraudin, Balazs &
//! Søndergaard 2013), its starting phases, and an optional magnitude target that follows the
//! mel spectrogram instead of one fixed estimate of the linear spectrum.

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use realfft::num_complex::Complex32;

use super::{GriffinLim, InverseMel, PhaseInit, pghi_phases};
use crate::stft::{Spectrum, Stft};

/// What Griffin-Lim's magnitudes are drawn towards after some iterations: a power mel. The
/// mel is all a vocoder knows; the linear spectrum handed to Griffin-Lim is only one of the
/// many spectra with that mel, and usually not a consistent one.
pub(super) struct MelTarget<'a> {
    pub inverse: &'a InverseMel,
    /// Power mel, frame-major `[frames][n_mels]`.
    pub power_mel: &'a [f32],
    /// First iteration whose magnitudes follow the mel.
    pub from_iteration: usize,
    /// Exponent of |X| the mel was taken of.
    pub power: f32,
}

/// Phase-locked phase-vocoder phases for a magnitude spectrogram `[frames][bins]`.
pub fn phase_locked_phases(
    mag: &[f32],
    frames: usize,
    bins: usize,
    n_fft: usize,
    hop: usize,
) -> Vec<f32> {
    let two_pi = 2.0 * std::f32::consts::PI;
    let advance = two_pi * hop as f32 / n_fft as f32;
    // ψ: phase of each bin's sinusoid at the frame centre, carried from frame to frame.
    let mut psi_prev = vec![0.0f32; bins];
    let mut psi = vec![0.0f32; bins];
    let mut phases = vec![0.0f32; frames * bins];
    for t in 0..frames {
        let m = &mag[t * bins..(t + 1) * bins];
        let floor = m.iter().fold(0.0f32, |a, &b| a.max(b)) * 1e-6;
        let peaks: Vec<usize> = (0..bins)
            .filter(|&k| {
                m[k] > floor && (k == 0 || m[k] > m[k - 1]) && (k + 1 == bins || m[k] >= m[k + 1])
            })
            .collect();
        if peaks.is_empty() {
            for k in 0..bins {
                psi[k] = psi_prev[k] + advance * k as f32;
            }
        } else {
            let mut region_start = 0;
            for (i, &p) in peaks.iter().enumerate() {
                // Quadratic interpolation of log magnitude gives the peak's true frequency.
                let delta = if p > 0 && p + 1 < bins {
                    let (a, b, c) = (
                        m[p - 1].max(1e-30).ln(),
                        m[p].max(1e-30).ln(),
                        m[p + 1].max(1e-30).ln(),
                    );
                    let den = a - 2.0 * b + c;
                    if den.abs() > 1e-12 {
                        (0.5 * (a - c) / den).clamp(-0.5, 0.5)
                    } else {
                        0.0
                    }
                } else {
                    0.0
                };
                let peak_psi = psi_prev[p] + advance * (p as f32 + delta);
                let region_end = match peaks.get(i + 1) {
                    Some(&next) => (p + next) / 2 + 1,
                    None => bins,
                };
                for v in &mut psi[region_start..region_end] {
                    *v = peak_psi;
                }
                region_start = region_end;
            }
        }
        for k in 0..bins {
            psi[k] = psi[k].rem_euclid(two_pi);
            // Frames start N/2 before their centre: bin k picks up a phase of -πk.
            phases[t * bins + k] = psi[k] - std::f32::consts::PI * (k % 2) as f32;
        }
        std::mem::swap(&mut psi, &mut psi_prev);
    }
    phases
}

impl GriffinLim {
    /// Reconstructs a signal from a magnitude spectrogram `[frames][bins]` of `stft`'s
    /// geometry; output length `length` (or `hop * (frames - 1)`).
    pub fn run(&self, stft: &Stft, mag: &[f32], frames: usize, length: Option<usize>) -> Vec<f32> {
        self.run_towards(stft, mag, frames, length, None)
    }

    /// [`Self::run`], with the magnitudes following `mel` from its `from_iteration` on.
    pub(super) fn run_towards(
        &self,
        stft: &Stft,
        mag: &[f32],
        frames: usize,
        length: Option<usize>,
        mel: Option<&MelTarget<'_>>,
    ) -> Vec<f32> {
        let bins = stft.bins();
        let phases: Vec<f32> = match self.init {
            PhaseInit::Random(seed) => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                (0..frames * bins)
                    .map(|_| rng.random::<f32>() * 2.0 * std::f32::consts::PI)
                    .collect()
            }
            PhaseInit::Zero => vec![0.0; frames * bins],
            PhaseInit::PhaseLocked => phase_locked_phases(mag, frames, bins, stft.n_fft, stft.hop),
            PhaseInit::Pghi(tolerance) => {
                pghi_phases(mag, frames, bins, stft.n_fft, stft.hop, tolerance)
            }
        };
        let len = length.unwrap_or(stft.hop * frames.saturating_sub(1));
        let alpha = self.momentum / (1.0 + self.momentum);
        let zero = Complex32::new(0.0, 0.0);
        // The spectrum to invert: target magnitudes with the current phases.
        let mut spec = Spectrum {
            frames,
            bins,
            data: phases
                .iter()
                .zip(mag)
                .map(|(&p, &m)| Complex32::from_polar(m, p))
                .collect(),
        };
        // Work buffers reused across iterations (each is megabytes for a few seconds).
        let mut rebuilt = Spectrum {
            frames: 0,
            bins,
            data: Vec::new(),
        };
        let mut prev: Vec<Complex32> = vec![zero; frames * bins];
        let (mut frames_time, mut signal) = (Vec::new(), Vec::new());
        let chunk = bins.max(1);
        for iteration in 0..self.iterations {
            stft.inverse_into(&spec, Some(len), &mut frames_time, &mut signal);
            stft.forward_into(&signal, &mut rebuilt);
            // The centred STFT of `len` samples can have one frame more or fewer than the
            // target; compare frame by frame over the common part.
            rebuilt.data.resize(frames * bins, zero);
            let momentum = if iteration > 0 { alpha } else { 0.0 };
            let follow = mel.filter(|m| iteration >= m.from_iteration);
            // New phase = that of the rebuilt spectrum minus momentum × the previous one;
            // frames are independent, so update them in parallel.
            spec.data
                .par_chunks_mut(chunk)
                .zip(rebuilt.data.par_chunks(chunk))
                .zip(prev.par_chunks(chunk))
                .zip(mag.par_chunks(chunk))
                .enumerate()
                .for_each_init(
                    || (vec![0.0f32; bins], vec![0.0f32; bins]),
                    |(target, gain), (t, (((s, r), p), m))| {
                        let m: &[f32] = match follow {
                            Some(mt) => {
                                let n_mels = mt.inverse.n_mels();
                                let band_power = &mt.power_mel[t * n_mels..(t + 1) * n_mels];
                                mt.inverse
                                    .follow_mel(r, band_power, m, mt.power, target, gain);
                                target
                            }
                            None => m,
                        };
                        for (((s, r), p), m) in s.iter_mut().zip(r).zip(p).zip(m) {
                            let v = r - p * momentum;
                            // |v| without hypot's overflow care: magnitudes are far from f32
                            // limits.
                            let norm = (v.re * v.re + v.im * v.im).sqrt() + 1e-16;
                            *s = v * (m / norm);
                        }
                    },
                );
            std::mem::swap(&mut prev, &mut rebuilt.data);
        }
        stft.inverse(&spec, Some(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocoder::spectral_convergence;

    #[test]
    fn phase_locked_griffin_lim_beats_random_on_a_chord() {
        let stft = Stft::new(512, 128);
        let sig: Vec<f32> = (0..16_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                (2.0 * std::f32::consts::PI * 220.0 * t).sin() * 0.5
                    + (2.0 * std::f32::consts::PI * 330.0 * t).sin() * 0.3
                    + (2.0 * std::f32::consts::PI * 1250.0 * t).sin() * 0.1
            })
            .collect();
        let spec = stft.forward(&sig);
        let mag: Vec<f32> = spec.data.iter().map(|c| c.norm()).collect();
        let sc = |init| {
            let gl = GriffinLim {
                iterations: 16,
                momentum: 0.99,
                init,
            };
            let y = gl.run(&stft, &mag, spec.frames, Some(sig.len()));
            spectral_convergence(&stft, &y, &mag)
        };
        let random = sc(PhaseInit::Random(1));
        let locked = sc(PhaseInit::PhaseLocked);
        assert!(locked < random, "phase-locked {locked} vs random {random}");
        assert!(locked < 0.1, "phase-locked SC {locked}");
    }
}
