//! Dataset scan: which files in a folder are usable audio, and what is wrong with the rest.

use std::path::{Path, PathBuf};

use crate::decode::decode_file;
use crate::{AudioError, chunk};

/// Shortest file worth training on.
pub const MIN_DURATION_S: f64 = 0.1;

/// What is wrong with a file. Errors exclude the file; warnings do not.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    Unsupported,
    Unreadable { message: String },
    Empty,
    TooShort { duration_s: f64 },
    SampleRateMismatch { sample_rate: u32, majority: u32 },
}

impl Problem {
    /// Whether the file is still used for training.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Problem::Unsupported | Problem::Unreadable { .. } | Problem::Empty
        )
    }

    pub fn describe(&self) -> String {
        match self {
            Problem::Unsupported => "not a supported audio format".into(),
            Problem::Unreadable { message } => format!("unreadable: {message}"),
            Problem::Empty => "contains no audio".into(),
            Problem::TooShort { duration_s } => {
                format!("very short ({duration_s:.3} s < {MIN_DURATION_S} s), may not be useful")
            }
            Problem::SampleRateMismatch {
                sample_rate,
                majority,
            } => format!(
                "sample rate {sample_rate} Hz differs from the majority rate {majority} Hz (resampled)"
            ),
        }
    }
}

/// Facts about a readable file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileInfo {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
    pub duration_s: f64,
    /// 1 s training chunks the file yields.
    pub chunks: usize,
}

/// One scanned file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScannedFile {
    pub path: PathBuf,
    pub info: Option<FileInfo>,
    pub problems: Vec<Problem>,
}

impl ScannedFile {
    pub fn usable(&self) -> bool {
        self.info.is_some() && !self.problems.iter().any(Problem::is_fatal)
    }
}

/// The whole folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScanReport {
    pub root: PathBuf,
    pub files: Vec<ScannedFile>,
}

impl ScanReport {
    pub fn usable(&self) -> impl Iterator<Item = &ScannedFile> {
        self.files.iter().filter(|f| f.usable())
    }

    pub fn usable_count(&self) -> usize {
        self.usable().count()
    }

    pub fn total_duration_s(&self) -> f64 {
        self.usable()
            .filter_map(|f| f.info.as_ref())
            .map(|i| i.duration_s)
            .sum()
    }

    pub fn total_chunks(&self) -> usize {
        self.usable()
            .filter_map(|f| f.info.as_ref())
            .map(|i| i.chunks)
            .sum()
    }
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// All non-hidden regular files below `dir`, recursively, sorted.
pub fn collect_files(dir: &Path) -> Result<Vec<PathBuf>, AudioError> {
    let meta = std::fs::metadata(dir).map_err(|source| AudioError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(AudioError::Invalid(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        // An unreadable sub-folder is skipped rather than failing the whole scan.
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if is_hidden(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if m.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes every file below `dir` and reports what is usable. Broken files become entries
/// with problems; only an unreadable `dir` itself is an error.
pub fn scan_dataset(dir: &Path) -> Result<ScanReport, AudioError> {
    scan_with_progress(dir, |_, _| {})
}

/// [`scan_dataset`] with a callback after each file (`done`, `total`) for progress bars.
pub fn scan_with_progress(
    dir: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<ScanReport, AudioError> {
    let paths = collect_files(dir)?;
    let total = paths.len();
    let mut files = Vec::with_capacity(total);
    for (i, path) in paths.into_iter().enumerate() {
        let scanned = match decode_file(&path) {
            Ok(d) => {
                let duration_s = d.duration_s();
                let resampled_len =
                    (d.samples.len() as u64 * 48_000).div_ceil(u64::from(d.sample_rate)) as usize;
                let mut problems = Vec::new();
                if duration_s < MIN_DURATION_S {
                    problems.push(Problem::TooShort { duration_s });
                }
                ScannedFile {
                    path,
                    info: Some(FileInfo {
                        codec: d.codec,
                        sample_rate: d.sample_rate,
                        channels: d.channels,
                        duration_s,
                        chunks: chunk::chunk_count(resampled_len, chunk::CHUNK_SAMPLES),
                    }),
                    problems,
                }
            }
            Err(e) => {
                let problem = match e {
                    AudioError::Unsupported { .. } => Problem::Unsupported,
                    AudioError::Empty { .. } => Problem::Empty,
                    AudioError::Unreadable { message, .. } => Problem::Unreadable { message },
                    other => Problem::Unreadable {
                        message: other.to_string(),
                    },
                };
                ScannedFile {
                    path,
                    info: None,
                    problems: vec![problem],
                }
            }
        };
        files.push(scanned);
        progress(i + 1, total);
    }
    flag_rate_mismatches(&mut files);
    Ok(ScanReport {
        root: dir.to_path_buf(),
        files,
    })
}

fn flag_rate_mismatches(files: &mut [ScannedFile]) {
    let mut counts: std::collections::BTreeMap<u32, usize> = Default::default();
    for f in files.iter().filter(|f| f.usable()) {
        if let Some(i) = &f.info {
            *counts.entry(i.sample_rate).or_default() += 1;
        }
    }
    // Ties go to the higher rate (BTreeMap order + max_by_key keeps the last maximum).
    let Some((&majority, _)) = counts.iter().max_by_key(|(_, c)| **c) else {
        return;
    };
    for f in files.iter_mut() {
        let Some(rate) = f.info.as_ref().map(|i| i.sample_rate) else {
            continue;
        };
        if rate != majority && f.usable() {
            f.problems.push(Problem::SampleRateMismatch {
                sample_rate: rate,
                majority,
            });
        }
    }
}
