//! WAV output: 16/24-bit PCM or 32-bit float, at 48 kHz or properly resampled.

use std::io::Cursor;

use crate::{AudioError, resample::resample};

/// Sample format of a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BitDepth {
    Pcm16,
    Pcm24,
    Float32,
}

/// How to render audio into a file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WavOptions {
    pub sample_rate: u32,
    pub bit_depth: BitDepth,
    /// Peak-normalise to this level in dBFS (e.g. -1.0); `None` keeps the level, clipping
    /// anything beyond full scale.
    pub normalize_dbfs: Option<f32>,
    /// Fade-in/out length in milliseconds to avoid clicks at the ends.
    pub fade_ms: f32,
}

impl Default for WavOptions {
    fn default() -> Self {
        Self {
            sample_rate: crate::SAMPLE_RATE,
            bit_depth: BitDepth::Pcm24,
            normalize_dbfs: Some(-1.0),
            fade_ms: 5.0,
        }
    }
}

/// Applies a raised-cosine fade of `n` samples at both ends.
pub fn fade_edges(x: &mut [f32], n: usize) {
    let n = n.min(x.len() / 2);
    let len = x.len();
    for i in 0..n {
        let g = 0.5 - 0.5 * (std::f32::consts::PI * i as f32 / n as f32).cos();
        x[i] *= g;
        x[len - 1 - i] *= g;
    }
}

/// Renders 48 kHz mono audio to WAV bytes according to `opts`.
pub fn encode_wav(samples_48k: &[f32], opts: &WavOptions) -> Result<Vec<u8>, AudioError> {
    let mut x = resample(samples_48k, crate::SAMPLE_RATE, opts.sample_rate)?;
    fade_edges(
        &mut x,
        (opts.fade_ms / 1000.0 * opts.sample_rate as f32) as usize,
    );
    if let Some(db) = opts.normalize_dbfs {
        let target = 10f32.powf(db / 20.0);
        let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if peak > 1e-9 {
            let g = target / peak;
            x.iter_mut().for_each(|v| *v *= g);
        }
    }
    let (bits, format) = match opts.bit_depth {
        BitDepth::Pcm16 => (16, hound::SampleFormat::Int),
        BitDepth::Pcm24 => (24, hound::SampleFormat::Int),
        BitDepth::Float32 => (32, hound::SampleFormat::Float),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: opts.sample_rate,
        bits_per_sample: bits,
        sample_format: format,
    };
    let err = |e: hound::Error| AudioError::Invalid(format!("WAV encoding failed: {e}"));
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).map_err(err)?;
        for &v in &x {
            let v = if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            };
            match opts.bit_depth {
                BitDepth::Pcm16 => w.write_sample((v * 32767.0).round() as i16).map_err(err)?,
                BitDepth::Pcm24 => w
                    .write_sample((v * 8_388_607.0).round() as i32)
                    .map_err(err)?,
                BitDepth::Float32 => w.write_sample(v).map_err(err)?,
            }
        }
        w.finalize().map_err(err)?;
    }
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(bytes: &[u8]) -> (hound::WavSpec, Vec<f32>) {
        let mut r = hound::WavReader::new(Cursor::new(bytes)).expect("valid wav");
        let spec = r.spec();
        let v = match spec.sample_format {
            hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.expect("sample")).collect(),
            hound::SampleFormat::Int => {
                let scale = (1i64 << (spec.bits_per_sample - 1)) as f32;
                r.samples::<i32>()
                    .map(|s| s.expect("sample") as f32 / scale)
                    .collect()
            }
        };
        (spec, v)
    }

    #[test]
    fn writes_every_format_with_the_right_header_and_length() {
        let x: Vec<f32> = (0..48_000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        for (depth, bits) in [
            (BitDepth::Pcm16, 16),
            (BitDepth::Pcm24, 24),
            (BitDepth::Float32, 32),
        ] {
            for rate in [44_100, 48_000, 96_000] {
                let opts = WavOptions {
                    sample_rate: rate,
                    bit_depth: depth,
                    ..WavOptions::default()
                };
                let (spec, y) = read_back(&encode_wav(&x, &opts).expect("encodes"));
                assert_eq!((spec.sample_rate, spec.bits_per_sample), (rate, bits));
                // One second in, one second out: the header rate matches the samples.
                assert_eq!(y.len(), rate as usize);
                let peak = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!((peak - 0.891).abs() < 0.01, "peak {peak} should be -1 dBFS");
                assert!(y[0].abs() < 1e-3, "fade-in starts at silence");
            }
        }
    }

    #[test]
    fn without_normalisation_loud_input_is_clamped_not_wrapped() {
        let x = vec![2.0f32; 4800];
        let opts = WavOptions {
            normalize_dbfs: None,
            fade_ms: 0.0,
            bit_depth: BitDepth::Pcm16,
            ..WavOptions::default()
        };
        let (_, y) = read_back(&encode_wav(&x, &opts).expect("encodes"));
        assert!(y.iter().all(|&v| v > 0.99));
    }
}
