//! Decoding real and damaged files: results or errors, never panics.

use std::path::{Path, PathBuf};

use audio::AudioError;
use audio::decode::decode_file;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/drums")
        .join(name)
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distill-audio-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn wav_bytes(bits: u16, float: bool, channels: u16, rate: u32, frames: usize) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).expect("writer");
        for i in 0..frames {
            for c in 0..channels {
                // Left: a ramp-ish sine, right: its negation, so the mono mean is ~zero.
                let v = (i as f32 * 0.01).sin() * 0.5 * if c == 0 { 1.0 } else { -1.0 };
                if float {
                    w.write_sample(v).expect("sample");
                } else {
                    let scale = ((1i64 << (bits - 1)) - 1) as f32;
                    w.write_sample((v * scale) as i32).expect("sample");
                }
            }
        }
        w.finalize().expect("finalize");
    }
    cursor.into_inner()
}

#[test]
fn decodes_flac_and_every_wav_flavour_to_mono() {
    let d = decode_file(&example("drum_snare_hard.flac")).expect("flac decodes");
    assert_eq!((d.sample_rate, d.channels), (44_100, 1));
    assert!(
        d.duration_s() > 0.44 && d.duration_s() < 0.45,
        "{}",
        d.duration_s()
    );
    // The reference's resampled length for this file (fixture README).
    let at_48k = audio::load_48k(&example("drum_snare_hard.flac")).expect("loads");
    assert_eq!(at_48k.len(), 21_357);

    let dir = temp_dir("wav");
    for (bits, float) in [
        (8, false),
        (16, false),
        (24, false),
        (32, false),
        (32, true),
    ] {
        let p = dir.join(format!("t{bits}{float}.bin"));
        std::fs::write(&p, wav_bytes(bits, float, 2, 22_050, 2205)).expect("write");
        let d = decode_file(&p).unwrap_or_else(|e| panic!("{bits}-bit float={float}: {e}"));
        assert_eq!(
            (d.sample_rate, d.channels, d.samples.len()),
            (22_050, 2, 2205)
        );
        let peak = d.samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            peak < 0.02,
            "stereo channels of opposite sign average out ({bits} bits: {peak})"
        );
    }
}

#[test]
fn damaged_and_foreign_files_are_errors_not_panics() {
    let dir = temp_dir("bad");
    let flac = std::fs::read(example("drum_splash_hard.flac")).expect("example");
    let wav = wav_bytes(16, false, 1, 48_000, 4800);
    let mut cases: Vec<Vec<u8>> = vec![vec![], b"plain text".to_vec(), vec![0u8; 5000]];
    for good in [&flac, &wav] {
        for i in 1..30 {
            cases.push(good[..good.len() * i / 30].to_vec());
        }
        let mut s = 77u64;
        for _ in 0..60 {
            let mut bad = good.to_vec();
            for _ in 0..8 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = (s >> 20) as usize % bad.len();
                bad[i] = (s >> 40) as u8;
            }
            cases.push(bad);
        }
    }
    let mut ok = 0;
    for (i, bytes) in cases.iter().enumerate() {
        let p = dir.join(format!("case{i}"));
        std::fs::write(&p, bytes).expect("write");
        match decode_file(&p) {
            Ok(d) => {
                ok += 1;
                assert!(
                    d.samples.iter().all(|v| v.is_finite()),
                    "case {i}: non-finite samples"
                );
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("case{i}")),
                    "case {i}: error does not name the file: {msg}"
                );
            }
        }
    }
    // Truncated files keep their good part (symphonia returns what it could decode).
    assert!(ok > 0);
    assert!(matches!(
        decode_file(&dir.join("case0")),
        Err(AudioError::Unsupported { .. } | AudioError::Empty { .. })
    ));
    assert!(matches!(
        decode_file(&dir.join("missing")),
        Err(AudioError::Open { .. })
    ));
}
