//! Training data: usable files, the file-level split, 1 s chunks, augmentation, mel batches.

use std::path::{Path, PathBuf};

use anyhow::bail;
use audio::chunk::{
    CHUNK_SAMPLES, Normalisation, audio_in_chunk, chunk_signal_with, peak_normalise, split_files,
};

use audio::scan::ScanReport;
use rand::Rng;
use rand::rngs::StdRng;

/// One 1 s chunk and the file it came from.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub file: usize,
    pub samples: Vec<f32>,
    /// Samples that hold the file's audio; the rest (of a file's last chunk) is zero padding.
    pub audio: usize,
}

/// Chunks split by file.
#[derive(Debug)]
pub struct Dataset {
    /// Usable files, sorted; `Chunk::file` indexes this.
    pub files: Vec<PathBuf>,
    pub train_files: Vec<usize>,
    pub val_files: Vec<usize>,
    pub train: Vec<Chunk>,
    pub val: Vec<Chunk>,
    pub total_duration_s: f64,
}

/// Loads the usable files of a scan (decode → 48 kHz → chunks levelled by `norm`) and
/// splits them by file.
pub fn load(
    report: &ScanReport,
    val_fraction: f64,
    norm: Normalisation,
) -> anyhow::Result<Dataset> {
    let files: Vec<PathBuf> = report.usable().map(|f| f.path.clone()).collect();
    if files.is_empty() {
        bail!(
            "{}: no usable audio files (run `distill scan` to see why)",
            report.root.display()
        );
    }
    let mut per_file = Vec::with_capacity(files.len());
    let mut lengths = Vec::with_capacity(files.len());
    let mut total = 0.0;
    for path in &files {
        let x = audio::load_48k(path)?;
        total += x.len() as f64 / f64::from(audio::SAMPLE_RATE);
        per_file.push(chunk_signal_with(&x, CHUNK_SAMPLES, norm));
        lengths.push(x.len());
    }
    let ids: Vec<usize> = (0..files.len()).collect();
    let (train_files, val_files) = split_files(&ids, val_fraction);
    let collect = |which: &[usize]| -> Vec<Chunk> {
        let mut sorted = which.to_vec();
        sorted.sort();
        sorted
            .iter()
            .flat_map(|&f| {
                let len = lengths[f];
                per_file[f].iter().enumerate().map(move |(j, c)| Chunk {
                    file: f,
                    samples: c.clone(),
                    audio: audio_in_chunk(len, CHUNK_SAMPLES, j),
                })
            })
            .collect()
    };
    Ok(Dataset {
        train: collect(&train_files),
        val: collect(&val_files),
        files,
        train_files,
        val_files,
        total_duration_s: total,
    })
}

/// Probabilities of the reference's waveform augmentation (its volume step is skipped: the
/// peak normalisation after it cancels it).
const AUGMENT_P: f64 = 0.5;
const SPEED_P: f64 = 0.5;
const SPEED_FACTORS: [f32; 6] = [0.9, 0.95, 1.0, 1.0, 1.05, 1.1];
const NOISE_P: f64 = 0.3;

/// Training-time augmentation of one chunk: speed perturbation and white noise, then the
/// chunk is clamped, cropped or padded back to 1 s and brought back to the chunk's own peak
/// level (1 for per-chunk normalised chunks; a quiet tail stays quiet).
pub fn augment(x: &[f32], rng: &mut StdRng, norm: Normalisation) -> Vec<f32> {
    let mut y = x.to_vec();
    if !rng.random_bool(AUGMENT_P) {
        return y;
    }
    if rng.random_bool(SPEED_P) {
        let f = SPEED_FACTORS[rng.random_range(0..SPEED_FACTORS.len())];
        if f != 1.0 {
            y = play_at_speed(x, f);
        }
    }
    if rng.random_bool(NOISE_P) {
        let snr_db: f32 = rng.random_range(15.0..40.0);
        let power = y.iter().map(|v| v * v).sum::<f32>() / y.len().max(1) as f32;
        let sigma = (power / 10f32.powf(snr_db / 10.0)).sqrt();
        for v in &mut y {
            // Uniform noise of the same variance as the target Gaussian (σ·√3 bounds).
            *v += sigma * 3f32.sqrt() * rng.random_range(-1.0f32..1.0);
        }
    }
    y.resize(x.len(), 0.0);
    for v in &mut y {
        *v = v.clamp(-1.0, 1.0);
    }
    match norm {
        Normalisation::PerChunk => {
            peak_normalise(&mut y);
        }
        Normalisation::PerFile => {
            let (target, p) = (peak(x), peak(&y));
            if p > 0.0 {
                let scale = target / p;
                y.iter_mut().for_each(|v| *v *= scale);
            }
        }
    }
    y
}

/// `x` played `f` times faster, as a tape: reading the signal at positions i·f (linear
/// interpolation), so pitch and tempo change together and the length becomes len/f.
pub fn play_at_speed(x: &[f32], f: f32) -> Vec<f32> {
    let n = ((x.len() as f32) / f) as usize;
    (0..n)
        .map(|i| {
            let p = i as f32 * f;
            let j = p as usize;
            let t = p - j as f32;
            let a = x.get(j).copied().unwrap_or(0.0);
            let b = x.get(j + 1).copied().unwrap_or(0.0);
            a + (b - a) * t
        })
        .collect()
}

fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// File name for messages.
pub fn short(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
