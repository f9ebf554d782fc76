//! Short-time Fourier transform with torch's conventions: periodic Hann window, frames
//! centred by reflect padding of `n_fft / 2`, one-sided spectrum, and its inverse by
//! windowed overlap-add normalised by the summed squared window.

use std::sync::Arc;

use rayon::prelude::*;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Periodic Hann window (`torch.hann_window(n, periodic=True)`).
pub fn hann_periodic(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
            (0.5 - 0.5 * x.cos()) as f32
        })
        .collect()
}

/// Index into a reflect-padded signal (`numpy.pad(mode="reflect")`), bouncing as often as
/// needed so that signals shorter than the pad still work.
fn reflect_index(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as isize - 1);
    let mut j = i.rem_euclid(period);
    if j >= len as isize {
        j = period - j;
    }
    j as usize
}

/// Output samples per parallel task of the inverse STFT's overlap-add.
const OVERLAP_ADD_BLOCK: usize = 16_384;

/// Complex spectrogram `[frames][n_fft/2 + 1]`, frame-major.
#[derive(Debug, Clone)]
pub struct Spectrum {
    pub frames: usize,
    pub bins: usize,
    pub data: Vec<Complex32>,
}

impl Spectrum {
    pub fn frame(&self, t: usize) -> &[Complex32] {
        &self.data[t * self.bins..(t + 1) * self.bins]
    }
}

/// A reusable STFT/ISTFT plan.
pub struct Stft {
    pub n_fft: usize,
    pub hop: usize,
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl Stft {
    pub fn new(n_fft: usize, hop: usize) -> Self {
        let mut planner = RealFftPlanner::<f32>::new();
        Self {
            n_fft,
            hop,
            window: hann_periodic(n_fft),
            forward: planner.plan_fft_forward(n_fft),
            inverse: planner.plan_fft_inverse(n_fft),
        }
    }

    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames a centred STFT produces for `len` samples.
    pub fn frames_for(&self, len: usize) -> usize {
        len / self.hop + 1
    }

    /// Centred, reflect-padded, Hann-windowed one-sided STFT.
    pub fn forward(&self, signal: &[f32]) -> Spectrum {
        let mut spec = Spectrum {
            frames: 0,
            bins: self.bins(),
            data: Vec::new(),
        };
        self.forward_into(signal, &mut spec);
        spec
    }

    /// [`Stft::forward`] into an existing spectrum (its buffer is reused when large enough).
    pub fn forward_into(&self, signal: &[f32], spec: &mut Spectrum) {
        let bins = self.bins();
        let frames = self.frames_for(signal.len());
        spec.frames = frames;
        spec.bins = bins;
        if signal.is_empty() {
            spec.data.clear();
            spec.data.resize(frames * bins, Complex32::new(0.0, 0.0));
            return;
        }
        // Every value is written below: a reused buffer needs no clearing (megabytes per
        // Griffin-Lim iteration).
        spec.data.resize(frames * bins, Complex32::new(0.0, 0.0));
        let pad = (self.n_fft / 2) as isize;
        // Frames are independent: transform them in parallel, each worker with its buffers.
        spec.data.par_chunks_mut(bins).enumerate().for_each_init(
            || {
                (
                    self.forward.make_input_vec(),
                    self.forward.make_scratch_vec(),
                )
            },
            |(buf, scratch), (t, out)| {
                let start = (t * self.hop) as isize - pad;
                let inside = start >= 0 && start as usize + self.n_fft <= signal.len();
                if inside {
                    let s = &signal[start as usize..start as usize + self.n_fft];
                    for ((b, w), x) in buf.iter_mut().zip(&self.window).zip(s) {
                        *b = x * w;
                    }
                } else {
                    for (i, (b, w)) in buf.iter_mut().zip(&self.window).enumerate() {
                        *b = signal[reflect_index(start + i as isize, signal.len())] * w;
                    }
                }
                // Sizes come from the plan itself, so this cannot fail.
                let _ = self.forward.process_with_scratch(buf, out, scratch);
            },
        );
    }

    /// Inverse of [`Stft::forward`] (`torch.istft` with `center=True`): windowed overlap-add
    /// divided by the summed squared window, centre padding removed. Output length
    /// `hop * (frames - 1)` unless `length` is given.
    pub fn inverse(&self, spec: &Spectrum, length: Option<usize>) -> Vec<f32> {
        let mut out = Vec::new();
        self.inverse_into(spec, length, &mut Vec::new(), &mut out);
        out
    }

    /// [`Stft::inverse`] into `out`, with `frames_time` as a reusable work buffer.
    pub fn inverse_into(
        &self,
        spec: &Spectrum,
        length: Option<usize>,
        frames_time: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) {
        let n = self.n_fft;
        let total = n + self.hop * spec.frames.saturating_sub(1);
        // Inverse transforms in parallel (window and 1/n applied there), then the
        // overlap-add in parallel blocks of output.
        let scale = 1.0 / n as f32;
        // Every value is written below (no clearing of a reused buffer).
        frames_time.resize(spec.frames * n, 0.0);
        frames_time.par_chunks_mut(n).enumerate().for_each_init(
            || {
                (
                    self.inverse.make_input_vec(),
                    self.inverse.make_scratch_vec(),
                )
            },
            |(buf, scratch), (t, time)| {
                buf.copy_from_slice(spec.frame(t));
                // A real signal's DC and Nyquist bins are real; realfft insists on it.
                buf[0].im = 0.0;
                if let Some(last) = buf.last_mut() {
                    last.im = 0.0;
                }
                let _ = self.inverse.process_with_scratch(buf, time, scratch);
                for (v, w) in time.iter_mut().zip(&self.window) {
                    *v *= scale * w;
                }
            },
        );
        let pad = n / 2;
        let want = length.unwrap_or(self.hop * spec.frames.saturating_sub(1));
        out.clear();
        out.resize(total, 0.0);
        // Divide by the summed squared window; away from the edges it is the same constant
        // for every sample of a hop-periodic position, so compute it once per offset.
        let norm_at = |j: usize| -> f32 {
            let first = (j + 1).saturating_sub(n).div_ceil(self.hop);
            let last = (j / self.hop).min(spec.frames.saturating_sub(1));
            (first..=last)
                .map(|t| self.window[j - t * self.hop].powi(2))
                .sum()
        };
        let steady: Vec<f32> = (0..self.hop).map(|r| norm_at(n + r)).collect();
        let steady_range = n..total.saturating_sub(n);
        let kept = pad..pad + want;
        // Overlap-add and normalise in blocks of output, in parallel: each sample still sums
        // its frames in order from zero, so the result is the sequential one to the bit.
        out.par_chunks_mut(OVERLAP_ADD_BLOCK)
            .enumerate()
            .for_each(|(b, block)| {
                let start = b * OVERLAP_ADD_BLOCK;
                let end = start + block.len();
                if spec.frames > 0 {
                    let first = (start + 1).saturating_sub(n).div_ceil(self.hop);
                    let last = ((end - 1) / self.hop).min(spec.frames - 1);
                    for t in first..=last {
                        let off = t * self.hop;
                        let time = &frames_time[t * n..(t + 1) * n];
                        let (lo, hi) = (off.max(start), (off + n).min(end));
                        for (o, v) in block[lo - start..hi - start]
                            .iter_mut()
                            .zip(&time[lo - off..hi - off])
                        {
                            *o += v;
                        }
                    }
                }
                for i in start.max(kept.start)..end.min(kept.end) {
                    let norm = if steady_range.contains(&i) && spec.frames > 0 {
                        steady[(i - n) % self.hop]
                    } else if spec.frames == 0 || i >= total {
                        0.0
                    } else {
                        norm_at(i)
                    };
                    let o = &mut block[i - start];
                    *o = if norm > 1e-11 { *o / norm } else { 0.0 };
                }
            });
        out.drain(..pad.min(out.len()));
        out.resize(want, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_error(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    }

    #[test]
    fn reflect_padding_matches_numpy() {
        // numpy.pad([0,1,2,3], 5, mode="reflect") = [1,2,3,2,1,0,1,2,3,2,1,0,1,2]
        let got: Vec<usize> = (-5..9).map(|i| reflect_index(i, 4)).collect();
        assert_eq!(got, vec![1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
    }

    #[test]
    fn inverse_reconstructs_the_signal() {
        let stft = Stft::new(256, 64);
        let signal: Vec<f32> = (0..4000)
            .map(|i| (i as f32 * 0.031).sin() * 0.5 + (i as f32 * 0.17).cos() * 0.2)
            .collect();
        let spec = stft.forward(&signal);
        assert_eq!(spec.frames, 4000 / 64 + 1);
        let back = stft.inverse(&spec, Some(signal.len()));
        let err = max_abs_error(&signal, &back);
        assert!(err < 1e-4, "max reconstruction error {err}");
    }

    /// Long enough for several parallel overlap-add blocks, with frames straddling their
    /// edges (the hop does not divide the block): every sample still comes back.
    #[test]
    fn inverse_reconstructs_across_overlap_add_blocks() {
        let stft = Stft::new(512, 96);
        let mut state = 0x9e37_79b9u32;
        let signal: Vec<f32> = (0..3 * OVERLAP_ADD_BLOCK + 777)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as f32 / u32::MAX as f32 - 0.5
            })
            .collect();
        let back = stft.inverse(&stft.forward(&signal), Some(signal.len()));
        assert_eq!(back.len(), signal.len());
        let err = max_abs_error(&signal, &back);
        assert!(err < 1e-4, "max reconstruction error {err}");
    }
}
