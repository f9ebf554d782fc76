//! Decoding any format symphonia knows, recognised by content (never by extension), to mono.

use std::fs::File;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::AudioError;

/// A decoded file, downmixed to mono by the channel mean.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    pub channels: usize,
    /// Codec short name, e.g. "flac", "pcm_s16le", "mp3", "vorbis".
    pub codec: String,
    /// Packets that failed to decode and were skipped (damaged data inside a valid file).
    pub skipped_packets: usize,
}

impl Decoded {
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Decodes `path` to mono `f32`. Never panics: a panic inside a decoder on hostile data is
/// caught and reported as an unreadable file.
pub fn decode_file(path: &Path) -> Result<Decoded, AudioError> {
    let file = File::open(path).map_err(|source| AudioError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let owned = path.to_path_buf();
    match std::panic::catch_unwind(move || decode_stream(file, &owned)) {
        Ok(result) => result,
        Err(_) => Err(AudioError::Unreadable {
            path: path.to_path_buf(),
            message: "the decoder failed on damaged data".into(),
        }),
    }
}

fn decode_stream(file: File, path: &Path) -> Result<Decoded, AudioError> {
    let unreadable = |message: String| AudioError::Unreadable {
        path: path.to_path_buf(),
        message,
    };
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymError::Unsupported(_) => AudioError::Unsupported {
                path: path.to_path_buf(),
            },
            SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                AudioError::Unsupported {
                    path: path.to_path_buf(),
                }
            }
            other => unreadable(other.to_string()),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Unsupported {
            path: path.to_path_buf(),
        })?;
    let track_id = track.id;
    let codec = symphonia::default::get_codecs()
        .get_codec(track.codec_params.codec)
        .map(|d| d.short_name.to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels = track.codec_params.channels.map(|c| c.count()).unwrap_or(0);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| match e {
            SymError::Unsupported(_) => AudioError::Unsupported {
                path: path.to_path_buf(),
            },
            other => unreadable(other.to_string()),
        })?;

    let mut mono: Vec<f32> = Vec::new();
    let mut skipped = 0usize;
    let mut decoded_any = false;
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            // Damage after some good audio: keep what decoded (a truncated file still plays).
            Err(e) if decoded_any => {
                skipped += 1;
                let _ = e;
                break;
            }
            Err(e) => return Err(unreadable(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = match decoder.decode(&packet) {
            Ok(a) => a,
            Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => {
                skipped += 1;
                continue;
            }
            Err(e) => return Err(unreadable(e.to_string())),
        };
        let spec = *audio.spec();
        sample_rate = spec.rate;
        channels = spec.channels.count().max(1);
        let frames = audio.frames();
        let needed = audio.capacity() as u64;
        let sb = match &mut buf {
            Some(b) if b.capacity() >= needed as usize * channels => b,
            _ => buf.insert(SampleBuffer::<f32>::new(needed, spec)),
        };
        sb.copy_interleaved_ref(audio);
        let inv = 1.0 / channels as f32;
        mono.extend(
            sb.samples()[..frames * channels]
                .chunks_exact(channels)
                .map(|f| f.iter().sum::<f32>() * inv),
        );
        decoded_any = true;
    }
    if sample_rate == 0 {
        return Err(unreadable("no sample rate".into()));
    }
    if mono.is_empty() {
        return Err(AudioError::Empty {
            path: path.to_path_buf(),
        });
    }
    // Garbage decoded as NaN/inf must not reach the models.
    for s in &mut mono {
        if !s.is_finite() {
            *s = 0.0;
        }
    }
    Ok(Decoded {
        samples: mono,
        sample_rate,
        channels,
        codec,
        skipped_packets: skipped,
    })
}
