use std::path::PathBuf;

/// Errors of the audio crate. File-related variants name the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unsupported or unrecognised audio format")]
    Unsupported { path: PathBuf },
    #[error("{path}: unreadable audio: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: contains no audio samples")]
    Empty { path: PathBuf },
    #[error("resampling {from} Hz -> {to} Hz failed: {message}")]
    Resample { from: u32, to: u32, message: String },
    #[error("{path}: cannot write audio: {message}")]
    Write { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}
