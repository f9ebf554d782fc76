//! Log-mel spectrogram exactly as the reference computes it: torchaudio's
//! `MelSpectrogram(power=2, HTK, norm=None, center=True, reflect)` followed by `log1p`.

use crate::SpectrogramConfig;
use crate::stft::Stft;

fn hz_to_mel_htk(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

#[cfg(test)]
fn mel_to_hz_htk(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// `torch.linspace` in float32 as PyTorch's CPU kernel computes it: `start + step·i` for the
/// first half and `end − step·(n−1−i)` for the rest, each a fused multiply-add.
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|idx| {
            if idx < halfway {
                step.mul_add(idx as f32, start)
            } else {
                (-step).mul_add((steps - idx - 1) as f32, end)
            }
        })
        .collect()
}

/// torchaudio's `melscale_fbanks(..., norm=None, mel_scale="htk")`: `[n_freqs][n_mels]`,
/// row-major. Computed in float32 with torch's operations (FMA linspace, SLEEF `powf`): the
/// mel edges' last bits move filter weights by up to 1e-5, and the reference is matched to
/// ≤ 1e-6 only this way.
pub fn mel_filterbank(
    n_freqs: usize,
    f_min: f64,
    f_max: f64,
    n_mels: usize,
    sample_rate: u32,
) -> Vec<f32> {
    let all_freqs = torch_linspace_f32(0.0, (sample_rate / 2) as f32, n_freqs);
    // The mel edges are Python floats (f64) before torch.linspace casts them.
    let m_pts = torch_linspace_f32(
        hz_to_mel_htk(f_min) as f32,
        hz_to_mel_htk(f_max) as f32,
        n_mels + 2,
    );
    let f_pts: Vec<f32> = m_pts
        .iter()
        .map(|&m| 700.0f32 * (crate::torchmath::powf(10.0, m / 2595.0f32) - 1.0f32))
        .collect();
    let f_diff: Vec<f32> = f_pts.windows(2).map(|w| w[1] - w[0]).collect();
    let mut fb = vec![0.0f32; n_freqs * n_mels];
    for (i, &f) in all_freqs.iter().enumerate() {
        for m in 0..n_mels {
            // torch: (-1.0 * (f_pts - f)) / f_diff; IEEE negation makes this identical.
            let down = (f - f_pts[m]) / f_diff[m];
            let up = (f_pts[m + 2] - f) / f_diff[m + 1];
            fb[i * n_mels + m] = down.min(up).max(0.0);
        }
    }
    fb
}

/// A reusable log-mel front end.
pub struct MelSpectrogram {
    pub config: SpectrogramConfig,
    stft: Stft,
    /// `[n_freqs][n_mels]` row-major.
    filterbank: Vec<f32>,
    /// Per mel band, the first frequency bin and its weights (the filters are narrow, so a
    /// sparse form makes the projection ~10x cheaper than a dense matrix product).
    sparse: Vec<(usize, Vec<f32>)>,
}

impl MelSpectrogram {
    pub fn new(config: SpectrogramConfig) -> Self {
        let n_freqs = config.n_fft / 2 + 1;
        let filterbank = mel_filterbank(
            n_freqs,
            config.f_min,
            config.f_max_hz(),
            config.n_mels,
            config.sample_rate,
        );
        let sparse = (0..config.n_mels)
            .map(|m| {
                let col: Vec<f32> = (0..n_freqs)
                    .map(|f| filterbank[f * config.n_mels + m])
                    .collect();
                let first = col.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = col.iter().rposition(|&w| w > 0.0).unwrap_or(0);
                (first, col[first..=last.max(first)].to_vec())
            })
            .collect();
        Self {
            stft: Stft::new(config.n_fft, config.hop_length),
            config,
            filterbank,
            sparse,
        }
    }

    pub fn filterbank(&self) -> &[f32] {
        &self.filterbank
    }

    pub fn frames_for(&self, samples: usize) -> usize {
        self.stft.frames_for(samples)
    }

    /// Power mel spectrogram, `[n_mels][frames]` row-major.
    pub fn power_mel(&self, signal: &[f32]) -> Vec<f32> {
        let spec = self.stft.forward(signal);
        let n_mels = self.config.n_mels;
        let frames = spec.frames;
        let mut out = vec![0.0f32; n_mels * frames];
        let mut power = vec![0.0f32; spec.bins];
        for t in 0..frames {
            for (p, c) in power.iter_mut().zip(spec.frame(t)) {
                *p = c.re * c.re + c.im * c.im;
            }
            for (m, (first, weights)) in self.sparse.iter().enumerate() {
                let acc: f32 = weights
                    .iter()
                    .zip(&power[*first..])
                    .map(|(w, p)| w * p)
                    .sum();
                out[m * frames + t] = acc;
            }
        }
        out
    }

    /// `log1p` of the power mel spectrogram: what the models see. `[n_mels][frames]`.
    pub fn log_mel(&self, signal: &[f32]) -> Vec<f32> {
        let mut m = self.power_mel(signal);
        for v in &mut m {
            *v = v.ln_1p();
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htk_scale_round_trips() {
        for f in [0.0, 100.0, 1000.0, 8000.0, 24000.0] {
            assert!((mel_to_hz_htk(hz_to_mel_htk(f)) - f).abs() < 1e-6);
        }
        assert!((hz_to_mel_htk(1000.0) - 999.9855).abs() < 1e-3);
    }

    #[test]
    fn filters_are_triangles_peaking_at_one() {
        let fb = mel_filterbank(1025, 0.0, 24000.0, 128, 48000);
        for m in 0..128 {
            let peak = (0..1025).map(|f| fb[f * 128 + m]).fold(0.0f32, f32::max);
            assert!(peak > 0.0 && peak <= 1.0, "filter {m} peak {peak}");
        }
    }

    #[test]
    fn one_second_gives_94_frames_and_a_tone_lands_in_its_band() {
        let mel = MelSpectrogram::new(SpectrogramConfig::default());
        let tone: Vec<f32> = (0..48_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
            .collect();
        let m = mel.log_mel(&tone);
        assert_eq!(m.len(), 128 * 94);
        let frame = 47;
        let band = (0..128)
            .max_by(|&a, &b| m[a * 94 + frame].total_cmp(&m[b * 94 + frame]))
            .unwrap_or(0);
        // 1 kHz on the HTK scale from 0 to 24 kHz sits near band 128 * 1000 / 3817 ≈ 33.
        let expected = hz_to_mel_htk(1000.0) / hz_to_mel_htk(24000.0) * 129.0 - 1.0;
        assert!(
            (band as f64 - expected).abs() <= 1.5,
            "band {band}, expected ≈ {expected}"
        );
    }
}
