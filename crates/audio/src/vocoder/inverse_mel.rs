//! The mel filterbank's inverse: mel power back to linear power, by the reference's clamped
//! least squares or by non-negative least squares.

use rayon::prelude::*;
use realfft::num_complex::Complex32;

use crate::SpectrogramConfig;
use crate::mel::mel_filterbank;

/// Inverse of the mel filterbank for one configuration.
pub struct InverseMel {
    n_freqs: usize,
    n_mels: usize,
    /// `[n_freqs][n_mels]`
    fb: Vec<f32>,
    /// Minimum-norm pseudo-inverse `fb (fbᵀ fb)⁻¹`, transposed: `[n_mels][n_freqs]`.
    pinv_t: Vec<f32>,
    /// Per mel band: first bin and weights (sparse columns of `fb`).
    bands: Vec<(usize, Vec<f32>)>,
    /// Largest eigenvalue of `fbᵀ fb` (step size of the projected gradient).
    lipschitz: f32,
    /// Per bin, 1 / (sum of its filter weights), 0 for bins no filter covers.
    coverage_inv: Vec<f32>,
}

/// Largest amplitude gain [`InverseMel::follow_mel`] applies in one step (+30 dB): a band
/// the current spectrum has almost no energy in is raised over a few iterations instead of
/// multiplying rounding noise by an arbitrary factor.
const MAX_BAND_GAIN: f32 = 30.0;

impl InverseMel {
    pub fn new(config: &SpectrogramConfig) -> Self {
        let n_freqs = config.n_fft / 2 + 1;
        let n_mels = config.n_mels;
        let fb = mel_filterbank(
            n_freqs,
            config.f_min,
            config.f_max_hz(),
            n_mels,
            config.sample_rate,
        );
        // Gram matrix fbᵀ fb in f64, Cholesky, then pinv = fb G⁻¹.
        let mut g = vec![0.0f64; n_mels * n_mels];
        for f in 0..n_freqs {
            let row = &fb[f * n_mels..(f + 1) * n_mels];
            for i in 0..n_mels {
                if row[i] == 0.0 {
                    continue;
                }
                for j in 0..n_mels {
                    g[i * n_mels + j] += f64::from(row[i]) * f64::from(row[j]);
                }
            }
        }
        let chol = cholesky(&g, n_mels);
        let mut pinv_t = vec![0.0f32; n_mels * n_freqs];
        for f in 0..n_freqs {
            let row: Vec<f64> = fb[f * n_mels..(f + 1) * n_mels]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let sol = chol_solve(&chol, n_mels, &row);
            for (m, v) in sol.into_iter().enumerate() {
                // Flush values that would be subnormal in f32: they change nothing but
                // make every multiply by them ~100× slower on x86.
                let v = v as f32;
                pinv_t[m * n_freqs + f] = if v.is_normal() { v } else { 0.0 };
            }
        }
        let bands = (0..n_mels)
            .map(|m| {
                let col: Vec<f32> = (0..n_freqs).map(|f| fb[f * n_mels + m]).collect();
                let first = col.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = col.iter().rposition(|&w| w > 0.0).unwrap_or(first);
                (first, col[first..=last].to_vec())
            })
            .collect();
        let lipschitz = largest_eigenvalue(&g, n_mels) as f32;
        let coverage_inv = (0..n_freqs)
            .map(|f| {
                let c: f32 = fb[f * n_mels..(f + 1) * n_mels].iter().sum();
                if c > 1e-6 { 1.0 / c } else { 0.0 }
            })
            .collect();
        Self {
            n_freqs,
            n_mels,
            fb,
            pinv_t,
            bands,
            lipschitz,
            coverage_inv,
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Magnitudes of one frame drawn to the mel: `spectrum`'s magnitudes, each bin scaled by
    /// the filter-weighted mean of its bands' amplitude ratios `(target / current)^(1/power)`
    /// (`power`: the exponent of |X| the mel was taken of). The shape inside a band stays
    /// the spectrum's own (consistent) one; only band energies move. Bins no filter covers
    /// take `fallback`. `gain` is scratch; `out` and `gain` hold `n_freqs` values.
    pub(super) fn follow_mel(
        &self,
        spectrum: &[Complex32],
        band_power: &[f32],
        fallback: &[f32],
        power: f32,
        out: &mut [f32],
        gain: &mut [f32],
    ) {
        // Power 2 (the default) is a square and a square root: much cheaper than powf.
        let squared = power == 2.0;
        // Powers first (bins are shared between bands), roots at the end; no hypot: magnitudes
        // are far from f32 limits.
        for (o, c) in out.iter_mut().zip(spectrum) {
            *o = c.re * c.re + c.im * c.im;
        }
        gain.iter_mut().for_each(|g| *g = 0.0);
        for ((first, w), &target) in self.bands.iter().zip(band_power) {
            let bins = &out[*first..*first + w.len()];
            let current: f32 = if squared {
                w.iter().zip(bins).map(|(w, p)| w * p).sum()
            } else {
                w.iter()
                    .zip(bins)
                    .map(|(w, p)| w * p.powf(0.5 * power))
                    .sum()
            };
            // A silent target band (0 / ε) silences its bins: the inverse's leakage goes.
            let ratio = target / (current + 1e-20);
            let ratio = if squared {
                ratio.sqrt()
            } else {
                ratio.powf(1.0 / power)
            };
            let ratio = ratio.min(MAX_BAND_GAIN);
            for (g, wv) in gain[*first..].iter_mut().zip(w) {
                *g += wv * ratio;
            }
        }
        for (((o, g), c), f) in out
            .iter_mut()
            .zip(gain.iter())
            .zip(&self.coverage_inv)
            .zip(fallback)
        {
            *o = if *c > 0.0 { o.sqrt() * g * c } else { *f };
        }
    }

    pub fn filterbank(&self) -> &[f32] {
        &self.fb
    }

    /// The reference's estimate: `relu(lstsq(fbᵀ, mel))`. Input `[n_mels][frames]` power
    /// mel, output `[n_freqs][frames]` linear power.
    pub fn least_squares(&self, mel: &[f32], frames: usize) -> Vec<f32> {
        self.solve(mel, frames, 0, |x| x)
    }

    /// `fbᵀ x` for one frame.
    fn project(&self, x: &[f32], out: &mut [f32]) {
        for (o, (first, w)) in out.iter_mut().zip(&self.bands) {
            *o = dot(w, &x[*first..*first + w.len()]);
        }
    }

    /// Non-negative least squares, `[n_mels][frames]` → `[n_freqs][frames]`: FISTA on
    /// `½‖fbᵀx − mel‖²` with `x ≥ 0`, from the clamped least-squares solution.
    pub fn nonneg(&self, mel: &[f32], frames: usize, iterations: usize) -> Vec<f32> {
        self.solve(mel, frames, iterations, |x| x)
    }

    /// Solves every frame of a `[n_mels][frames]` power mel (in parallel: frames are
    /// independent problems) and returns `map(x)` frame-major, `[frames][n_freqs]`.
    pub(super) fn solve_frames(
        &self,
        mel: &[f32],
        frames: usize,
        iterations: usize,
        map: impl Fn(f32) -> f32 + Sync,
    ) -> Vec<f32> {
        let (nf, nm) = (self.n_freqs, self.n_mels);
        // Frame-major mel so that each frame's column is contiguous.
        let mut columns = vec![0.0f32; frames * nm];
        for m in 0..nm {
            for t in 0..frames {
                columns[t * nm + m] = mel[m * frames + t];
            }
        }
        let mut out = vec![0.0f32; frames * nf];
        out.par_chunks_mut(nf.max(1))
            .zip(columns.par_chunks(nm.max(1)))
            .for_each_init(
                || FistaScratch::new(nf, nm),
                |scratch, (x, column)| {
                    self.solve_frame(column, iterations, scratch, x);
                    x.iter_mut().for_each(|v| *v = map(*v));
                },
            );
        out
    }

    /// Like [`Self::solve_frames`] but `[n_freqs][frames]`, the layout of the public API.
    fn solve(
        &self,
        mel: &[f32],
        frames: usize,
        iterations: usize,
        map: impl Fn(f32) -> f32 + Sync,
    ) -> Vec<f32> {
        let by_frame = self.solve_frames(mel, frames, iterations, map);
        let nf = self.n_freqs;
        let mut out = vec![0.0f32; nf * frames];
        for (t, x) in by_frame.chunks_exact(nf.max(1)).enumerate() {
            for (f, v) in x.iter().enumerate() {
                out[f * frames + t] = *v;
            }
        }
        out
    }

    /// One frame: clamped least squares, then `iterations` of FISTA (none = the reference).
    fn solve_frame(
        &self,
        mel: &[f32],
        iterations: usize,
        scratch: &mut FistaScratch,
        x: &mut [f32],
    ) {
        // x = pinv · mel as a sum of scaled pinv columns: contiguous axpys vectorise without
        // a reduction chain, unlike one dot product per frequency.
        x.iter_mut().for_each(|v| *v = 0.0);
        for (m, &c) in mel.iter().enumerate() {
            if c != 0.0 {
                let col = &self.pinv_t[m * self.n_freqs..(m + 1) * self.n_freqs];
                for (o, p) in x.iter_mut().zip(col) {
                    *o += c * p;
                }
            }
        }
        x.iter_mut().for_each(|v| *v = v.max(0.0));
        if iterations == 0 {
            return;
        }
        let step = 1.0 / self.lipschitz.max(1e-12);
        let FistaScratch { x_prev, y, r, grad } = scratch;
        x_prev.copy_from_slice(x);
        y.copy_from_slice(x);
        let mut tk = 1.0f32;
        for _ in 0..iterations {
            self.project(y, r);
            for (rv, m) in r.iter_mut().zip(mel) {
                *rv -= m;
            }
            grad.iter_mut().for_each(|g| *g = 0.0);
            for ((first, w), rv) in self.bands.iter().zip(r.iter()) {
                for (g, wv) in grad[*first..].iter_mut().zip(w) {
                    *g += wv * rv;
                }
            }
            let t_next = 0.5 * (1.0 + (1.0 + 4.0 * tk * tk).sqrt());
            let beta = (tk - 1.0) / t_next;
            for f in 0..self.n_freqs {
                let xn = (y[f] - step * grad[f]).max(0.0);
                y[f] = xn + beta * (xn - x_prev[f]);
                x_prev[f] = xn;
                x[f] = xn;
            }
            tk = t_next;
        }
    }
}

/// Per-worker buffers of the FISTA solver.
struct FistaScratch {
    x_prev: Vec<f32>,
    y: Vec<f32>,
    r: Vec<f32>,
    grad: Vec<f32>,
}

impl FistaScratch {
    fn new(n_freqs: usize, n_mels: usize) -> Self {
        Self {
            x_prev: vec![0.0; n_freqs],
            y: vec![0.0; n_freqs],
            r: vec![0.0; n_mels],
            grad: vec![0.0; n_freqs],
        }
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it
/// (a single running float sum cannot be reordered).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn cholesky(a: &[f64], n: usize) -> Vec<f64> {
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                // The filterbank has full column rank; guard against round-off anyway.
                l[i * n + i] = s.max(1e-18).sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    l
}

fn chol_solve(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0f64; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0.0f64; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    x
}

fn largest_eigenvalue(a: &[f64], n: usize) -> f64 {
    let mut v = vec![1.0f64; n];
    let mut lambda = 0.0;
    for _ in 0..200 {
        let w: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| a[i * n + j] * v[j]).sum())
            .collect();
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
        lambda = norm / v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
        v = w.into_iter().map(|x| x / norm).collect();
    }
    lambda
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonneg_inverse_reproduces_the_mel_and_stays_non_negative() {
        let cfg = SpectrogramConfig::default();
        let inv = InverseMel::new(&cfg);
        // A peaky linear spectrum (two partials over a noise floor), 3 frames.
        let frames = 3;
        let mut lin = vec![1e-3f32; 1025 * frames];
        for t in 0..frames {
            lin[40 * frames + t] = 50.0;
            lin[300 * frames + t] = 5.0;
        }
        let mut mel = vec![0.0f32; 128 * frames];
        for t in 0..frames {
            let x: Vec<f32> = (0..1025).map(|f| lin[f * frames + t]).collect();
            let mut r = vec![0.0f32; 128];
            inv.project(&x, &mut r);
            for m in 0..128 {
                mel[m * frames + t] = r[m];
            }
        }
        let residual = |est: &[f32]| -> f64 {
            let mut num = 0.0f64;
            for t in 0..frames {
                let x: Vec<f32> = (0..1025).map(|f| est[f * frames + t]).collect();
                let mut r = vec![0.0f32; 128];
                inv.project(&x, &mut r);
                num += r
                    .iter()
                    .enumerate()
                    .map(|(m, v)| f64::from(v - mel[m * frames + t]).powi(2))
                    .sum::<f64>();
            }
            num.sqrt()
        };
        let ls = inv.least_squares(&mel, frames);
        let nn = inv.nonneg(&mel, frames, 30);
        assert!(nn.iter().all(|&v| v >= 0.0));
        assert!(
            residual(&nn) < residual(&ls),
            "{} vs {}",
            residual(&nn),
            residual(&ls)
        );
    }

    #[test]
    fn follow_mel_moves_band_powers_to_the_target() {
        let cfg = SpectrogramConfig::default();
        let inv = InverseMel::new(&cfg);
        let (n_freqs, n_mels) = (cfg.n_fft / 2 + 1, cfg.n_mels);
        // A spectrum with some structure: a slope plus a ripple, random-ish phases.
        let spectrum: Vec<Complex32> = (0..n_freqs)
            .map(|f| {
                let a = 1.0 / (1.0 + f as f32 / 50.0) * (1.3 + (f as f32 * 0.7).sin());
                Complex32::from_polar(a, f as f32 * 2.1)
            })
            .collect();
        let band_power = |mag: &[f32]| -> Vec<f32> {
            let power: Vec<f32> = mag.iter().map(|a| a * a).collect();
            let mut out = vec![0.0f32; n_mels];
            inv.project(&power, &mut out);
            out
        };
        let current = band_power(&spectrum.iter().map(|c| c.norm()).collect::<Vec<_>>());
        let (mut out, mut gain) = (vec![0.0f32; n_freqs], vec![0.0f32; n_freqs]);
        let fallback = vec![7.0f32; n_freqs];
        // The spectrum's own mel: nothing moves (bins no filter covers take the fallback).
        inv.follow_mel(&spectrum, &current, &fallback, 2.0, &mut out, &mut gain);
        for (f, (o, c)) in out.iter().zip(&spectrum).enumerate() {
            let want = if inv.coverage_inv[f] > 0.0 {
                c.norm()
            } else {
                7.0
            };
            assert!(
                (o - want).abs() <= 1e-4 * want.max(1e-3),
                "bin {f}: {o} vs {want}"
            );
        }
        // Targets 4× the power in the lower half of the bands, ¼ in the upper: every band
        // moves towards its target (neighbours share bins, so one step does not land exactly;
        // the two bands at each side of the step are pulled both ways).
        let target: Vec<f32> = current
            .iter()
            .enumerate()
            .map(|(m, p)| if m < n_mels / 2 { 4.0 * p } else { 0.25 * p })
            .collect();
        inv.follow_mel(&spectrum, &target, &fallback, 2.0, &mut out, &mut gain);
        let moved = band_power(&out);
        for m in (0..n_mels).filter(|m| m.abs_diff(n_mels / 2) > 2) {
            let before = (current[m] / target[m]).ln().abs();
            let after = (moved[m] / target[m]).ln().abs();
            assert!(after < before, "band {m}: {after} vs {before}");
        }
        // A silent target silences the bins only silent bands cover.
        inv.follow_mel(
            &spectrum,
            &vec![0.0; n_mels],
            &fallback,
            2.0,
            &mut out,
            &mut gain,
        );
        assert!(
            out.iter()
                .zip(&inv.coverage_inv)
                .all(|(o, c)| *c == 0.0 || *o == 0.0)
        );
    }
}
