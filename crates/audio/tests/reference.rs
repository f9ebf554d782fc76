//! The audio front end against tensors computed by the reference system.

use audio::SpectrogramConfig;
use audio::mel::MelSpectrogram;
use weights::{HostData, StateDict};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upstream-drums20")
        .join(name)
}

fn vectors() -> StateDict {
    let bytes = std::fs::read(fixture("vectors.safetensors")).expect("fixture present");
    weights::st::from_bytes(&bytes).expect("vectors parse").0
}

fn floats(v: &StateDict, name: &str) -> Vec<f32> {
    match &v[name].data {
        HostData::F32(x) => x.clone(),
        _ => panic!("{name} is not float"),
    }
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn filterbank_equals_torchaudio() {
    let v = vectors();
    let mel = MelSpectrogram::new(SpectrogramConfig::default());
    let expected = floats(&v, "mel_filterbank");
    assert_eq!(v["mel_filterbank"].shape, vec![1025, 128]);
    let diff = max_abs(mel.filterbank(), &expected);
    assert!(diff <= 1e-6, "filterbank max |diff| = {diff}");
}

#[test]
fn mel_of_reference_waves_matches() {
    let v = vectors();
    let mel = MelSpectrogram::new(SpectrogramConfig::default());
    let wave = floats(&v, "wave_in");
    let got = mel.log_mel(&wave);
    let expected = floats(&v, "mel");
    assert_eq!(got.len(), 128 * 188);
    // Measured: relative L2 9e-8 and max |diff| 5e-6 (float32 rounding of an f64-exact
    // filterbank); tolerances ~10x that.
    let err = rel_l2(&got, &expected);
    assert!(err <= 1e-6, "2 s mel relative L2 error {err}");
    let worst = max_abs(&got, &expected);
    assert!(worst < 5e-5, "2 s mel max |diff| {worst}");

    let chunks = floats(&v, "chunk_wave");
    let chunk_mels = floats(&v, "chunk_mel");
    for b in 0..4 {
        let got = mel.log_mel(&chunks[b * 48_000..(b + 1) * 48_000]);
        assert_eq!(got.len(), 128 * 94);
        let err = rel_l2(&got, &chunk_mels[b * 128 * 94..(b + 1) * 128 * 94]);
        // Measured: 7e-8 to 9e-8.
        assert!(err <= 1e-6, "chunk {b} relative L2 error {err}");
    }
}

/// The whole path from the file: our decoder (symphonia) + resampler (rubato) instead of
/// libsndfile + torchaudio's windowed sinc. FLAC decodes bit-exactly, so the difference is
/// the resampler alone: both are ~flat to 0.9·Nyquist and differ in the transition band
/// (19.8–22 kHz at 44.1 kHz) and by ~1e-4 ripple in the passband. In log1p-mel terms that
/// moves the top bands (little energy in drums) far more than the rest, so the budget is
/// 2% relative L2 overall, and 1e-2 on the bands below 15 kHz.
#[test]
fn end_to_end_from_the_source_file() {
    let v = vectors();
    let samples = audio::load_48k(&fixture("audio/drum_roll.flac")).expect("decodes");
    assert_eq!(
        samples.len(),
        299_601,
        "same resampled length as torchaudio"
    );
    let mut wave = samples[48_000..144_000].to_vec();
    let peak = audio::chunk::peak_normalise(&mut wave);
    assert!(
        (peak - 0.408_926).abs() < 2e-3,
        "peak before normalisation {peak}"
    );
    let reference_wave = floats(&v, "wave_in");
    let wave_err = rel_l2(&wave, &reference_wave);
    assert!(
        wave_err < 0.02,
        "waveform relative L2 vs reference {wave_err}"
    );

    let mel = MelSpectrogram::new(SpectrogramConfig::default());
    let got = mel.log_mel(&wave);
    let expected = floats(&v, "mel");
    let err = rel_l2(&got, &expected);
    assert!(err < 0.02, "end-to-end mel relative L2 error {err}");
    // Bands below 15 kHz: mel band edge index from the HTK scale (band 108 ≈ 15 kHz).
    let low = 108 * 188;
    let err_low = rel_l2(&got[..low], &expected[..low]);
    assert!(
        err_low < 1e-2,
        "mel below 15 kHz relative L2 error {err_low}"
    );
}

/// Our non-negative inverse is at least as close to the true linear power spectrum as the
/// reference's clamped least squares (`inv_mel_linear`), measured on the fixture's audio.
#[test]
fn nonneg_inverse_is_closer_to_the_true_spectrum_than_the_reference() {
    use audio::stft::Stft;
    use audio::vocoder::InverseMel;
    let v = vectors();
    let wave = floats(&v, "wave_in");
    let cfg = SpectrogramConfig::default();
    let spec = Stft::new(2048, 512).forward(&wave);
    let frames = spec.frames;
    // True power, [bins][frames] like inv_mel_linear.
    let mut truth = vec![0.0f32; 1025 * frames];
    for t in 0..frames {
        for (f, c) in spec.frame(t).iter().enumerate() {
            truth[f * frames + t] = c.norm_sqr();
        }
    }
    let mel = MelSpectrogram::new(cfg.clone()).power_mel(&wave);
    let ours = InverseMel::new(&cfg).nonneg(&mel, frames, 30);
    let reference = floats(&v, "inv_mel_linear");
    let ours_err = rel_l2(&ours, &truth);
    let ref_err = rel_l2(&reference, &truth);
    assert!(
        ours_err <= ref_err,
        "ours {ours_err:.4} vs reference {ref_err:.4}"
    );
    // And our clamped least squares reproduces the reference's own estimate.
    let ls = InverseMel::new(&cfg).least_squares(&mel, frames);
    assert!(rel_l2(&ls, &reference) < 1e-3);
}
