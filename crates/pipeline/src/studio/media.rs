//! Media work for the page: checking uploads, FLAC downloads, mel thumbnails and kits.

use std::io::Write;
use std::path::Path;

use audio::SpectrogramConfig;
use audio::decode::decode_file;
use audio::mel::MelSpectrogram;
use serde_json::{Value as Json, json};

use super::error::{ApiError, ApiResult};

/// Whether an uploaded file is complete audio Distill can read; its facts when it is.
/// Refuses files that are not audio, are damaged, or are shorter than their header says.
pub fn check_audio(path: &Path, shown: &str) -> ApiResult<Json> {
    let d = decode_file(path).map_err(|e| match e {
        audio::AudioError::Unsupported { .. } => ApiError::unsupported(format!(
            "{shown} is not an audio file Distill can read (WAV, FLAC, MP3, Ogg Vorbis, AIFF…); it was not kept"
        )),
        audio::AudioError::Empty { .. } => {
            ApiError::unprocessable(format!("{shown} contains no audio; it was not kept"))
        }
        other => ApiError::unprocessable(format!(
            "{shown} could not be read ({}); it was not kept",
            other.to_string().rsplit(": ").next().unwrap_or("damaged")
        )),
    })?;
    if d.skipped_packets > 0 {
        return Err(ApiError::unprocessable(format!(
            "{shown} is damaged ({} parts could not be decoded); it was not kept",
            d.skipped_packets
        )));
    }
    if let Some(declared) = declared_frames(path)
        && (d.samples.len() as u64) < declared.saturating_mul(99) / 100
    {
        let rate = f64::from(d.sample_rate.max(1));
        return Err(ApiError::unprocessable(format!(
            "{shown} is truncated: its header promises {:.2} s but only {:.2} s of audio is there; it was not kept",
            declared as f64 / rate,
            d.samples.len() as f64 / rate
        )));
    }
    Ok(json!({
        "format": d.codec,
        "sample_rate": d.sample_rate,
        "channels": d.channels,
        "duration_s": d.duration_s(),
    }))
}

/// The frame count a file's header declares, when its format records one.
fn declared_frames(path: &Path) -> Option<u64> {
    use symphonia::core::codecs::CODEC_TYPE_NULL;
    use symphonia::core::io::MediaSourceStream;
    let file = std::fs::File::open(path).ok()?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        symphonia::default::get_probe()
            .format(
                &Default::default(),
                mss,
                &Default::default(),
                &Default::default(),
            )
            .ok()
    }))
    .ok()??;
    probed
        .format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .and_then(|t| t.codec_params.n_frames)
}

/// A sound file as 24-bit FLAC (pure-Rust encoder).
pub fn flac_bytes(wav: &Path) -> anyhow::Result<Vec<u8>> {
    use flacenc::component::BitRepr;
    use flacenc::error::Verify;
    let d = decode_file(wav)?;
    let scale = f64::from((1 << 23) - 1);
    let samples: Vec<i32> = d
        .samples
        .iter()
        .map(|&v| (f64::from(v.clamp(-1.0, 1.0)) * scale).round() as i32)
        .collect();
    let mut config = flacenc::config::Encoder::default();
    // No fixed-predictor subframes: symphonia (our decoder, and what the tests read back
    // with) failed on some of flacenc's and dropped whole 4096-sample frames — 11 of 1072
    // sounds; libsndfile read the same files whole. LPC subframes cover the same signals.
    config.subframe_coding.use_fixed = false;
    let config = config
        .into_verified()
        .map_err(|e| anyhow::anyhow!("FLAC encoder settings: {e:?}"))?;
    let source = flacenc::source::MemSource::from_samples(&samples, 1, 24, d.sample_rate as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| anyhow::anyhow!("FLAC encoding: {e:?}"))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| anyhow::anyhow!("FLAC encoding: {e:?}"))?;
    let mut bytes = sink.as_slice().to_vec();
    // STREAMINFO's minimum block size must leave out the last block (which may be
    // shorter); the encoder counts it, and strict decoders (symphonia) then refuse the
    // file. All blocks but the last have the fixed size, so min = max.
    anyhow::ensure!(
        bytes.len() > 18 && &bytes[..4] == b"fLaC",
        "FLAC encoding gave no stream"
    );
    let max_block = [bytes[10], bytes[11]];
    bytes[8..10].copy_from_slice(&max_block);
    // The encoder's minimum and maximum frame sizes (bytes 12–17) are not always the true
    // bounds: on about 3 % of sounds symphonia then refused the file ("maximum frame
    // length is less than the minimum") or dropped a frame larger than the stated
    // maximum. Zero means "unknown" in STREAMINFO, which every decoder accepts.
    bytes[12..18].fill(0);
    Ok(bytes)
}

/// A mel spectrogram thumbnail of a sound file as PNG: time left to right, low
/// frequencies at the bottom, at most `width` columns.
pub fn mel_png(wav: &Path, width: usize) -> anyhow::Result<Vec<u8>> {
    let samples = audio::load_48k(wav)?;
    let mel = MelSpectrogram::new(SpectrogramConfig::default());
    let n_mels = mel.config.n_mels;
    let m = mel.log_mel(&samples);
    let frames = (m.len() / n_mels.max(1)).max(1);
    let cols = frames.min(width.max(1));
    let max = m.iter().copied().fold(1e-6f32, f32::max);
    let mut rgb = Vec::with_capacity(cols * n_mels * 3);
    for row in 0..n_mels {
        let band = n_mels - 1 - row;
        for c in 0..cols {
            let (f0, f1) = (
                c * frames / cols,
                ((c + 1) * frames / cols).max(c * frames / cols + 1),
            );
            let v = (f0..f1.min(frames))
                .map(|f| m.get(band * frames + f).copied().unwrap_or(0.0))
                .fold(0.0f32, f32::max);
            rgb.extend_from_slice(&colour(v / max));
        }
    }
    crate::report::encode_png(cols as u32, n_mels as u32, &rgb)
}

/// A dark-blue → magenta → yellow ramp (magma-like) for `t` in 0..=1.
fn colour(t: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [10.0, 8.0, 30.0],
        [80.0, 20.0, 110.0],
        [180.0, 50.0, 110.0],
        [250.0, 140.0, 60.0],
        [252.0, 250.0, 190.0],
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    let mix = |k: usize| (STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * f) as u8;
    [mix(0), mix(1), mix(2)]
}

/// A zip of `(name in the zip, file)` pairs: audio stored, text deflated.
pub fn zip_files(files: &[(String, std::path::PathBuf)]) -> anyhow::Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, path) in files {
        let method = if name.ends_with(".json") {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        zip.start_file(
            name.as_str(),
            SimpleFileOptions::default().compression_method(method),
        )?;
        zip.write_all(&std::fs::read(path)?)?;
    }
    Ok(zip.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exports `wav` as FLAC and asserts every sample comes back (within 24-bit rounding).
    fn assert_flac_keeps_every_sample(wav: &Path) {
        let dir = tempfile::tempdir().expect("temp dir");
        let flac = dir.path().join("a.flac");
        std::fs::write(&flac, flac_bytes(wav).expect("encodes")).expect("write");
        let back = decode_file(&flac).expect("decodes");
        let orig = decode_file(wav).expect("decodes");
        assert_eq!(back.samples.len(), orig.samples.len());
        let err = back
            .samples
            .iter()
            .zip(&orig.samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-6, "{err}");
    }

    #[test]
    fn flac_round_trips_through_the_decoder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wav = dir.path().join("a.wav");
        let tone: Vec<f32> = (0..48_000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let opts = audio::wav::WavOptions::default();
        std::fs::write(&wav, audio::wav::encode_wav(&tone, &opts).expect("wav")).expect("write");
        assert_flac_keeps_every_sample(&wav);
        assert!(mel_png(&wav, 100).expect("png").starts_with(b"\x89PNG"));
    }

    /// A generated sound whose FLAC lost frames in symphonia while fixed-predictor
    /// subframes were allowed: every sample comes back.
    #[test]
    fn a_sound_that_once_lost_frames_exports_whole() {
        let wav = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/flac-export/generated.wav");
        assert_flac_keeps_every_sample(&wav);
    }
}
