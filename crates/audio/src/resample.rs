//! Sample-rate conversion with rubato's FFT resampler, delay-compensated so that output
//! sample `i` lines up with input time `i / to` (as torchaudio's resampler does).

use rubato::{FftFixedIn, Resampler};

use crate::AudioError;

/// Resamples mono audio from `from` Hz to `to` Hz. Output length is
/// `ceil(len * to / from)`, like torchaudio.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let err = |message: String| AudioError::Resample { from, to, message };
    if from == 0 || to == 0 {
        return Err(err("sample rate must be positive".into()));
    }
    let expected = (input.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1)
        .map_err(|e| err(e.to_string()))?;
    let delay = r.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + 4096);
    let mut pos = 0;
    while pos + r.input_frames_next() <= input.len() {
        let n = r.input_frames_next();
        let o = r
            .process(&[&input[pos..pos + n]], None)
            .map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    if pos < input.len() {
        let o = r
            .process_partial(Some(&[&input[pos..]]), None)
            .map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&o[0]);
    }
    // Flush the filter's delay line with silence.
    while out.len() < expected + delay {
        let o = r
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| err(e.to_string()))?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    out.drain(..delay.min(out.len()));
    out.resize(expected, 0.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    /// Amplitude of `freq` in `x` by correlation with a complex exponential.
    fn amplitude(x: &[f32], freq: f32, rate: u32) -> f32 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &s) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * f64::from(freq) * i as f64 / f64::from(rate);
            re += f64::from(s) * ph.cos();
            im += f64::from(s) * ph.sin();
        }
        (2.0 * (re * re + im * im).sqrt() / x.len() as f64) as f32
    }

    #[test]
    fn a_sine_keeps_its_frequency_level_and_timing() {
        for from in [8_000, 22_050, 44_100, 96_000] {
            let x = sine(440.0, from, 1.0);
            let y = resample(&x, from, 48_000).expect("resamples");
            assert_eq!(
                y.len(),
                (x.len() as u64 * 48_000).div_ceil(u64::from(from)) as usize
            );
            let expected = sine(440.0, 48_000, 1.0);
            // Same phase (no delay) and level, away from the edges.
            let mid = &y[2000..y.len() - 2000];
            let err = mid
                .iter()
                .zip(&expected[2000..])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.01, "{from} Hz: max deviation {err}");
            assert!((amplitude(mid, 440.0, 48_000) - 0.5).abs() < 0.005);
        }
    }

    #[test]
    fn content_above_the_new_nyquist_is_removed() {
        // 30 kHz at 96 kHz cannot exist at 48 kHz; it must not alias down to 18 kHz.
        let x = sine(30_000.0, 96_000, 0.5);
        let y = resample(&x, 96_000, 48_000).expect("resamples");
        let alias = amplitude(&y[1000..y.len() - 1000], 18_000.0, 48_000);
        assert!(alias < 0.5 * 1e-3, "alias level {alias} (> -60 dB)");
    }
}
