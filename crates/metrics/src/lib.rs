//! Distill's evaluation metrics, free of any model code, for `distill evaluate`:
//!
//! * [`spectral`]: reconstruction distances between mels or signals (log-mel L1, log-spectral
//!   distance, multi-resolution STFT distance, noise floor).
//! * [`levels`]: near-silence, envelope and onset statistics of one signal.
//! * [`collection`]: closeness of generated sounds to a collection (nearest-neighbour ratio of
//!   log-mel windows; MMD², precision/recall/coverage of per-sound features).
//! * [`novelty`]: copying of training code sequences (longest copied span, n-gram overlap).
//! * [`verdict`]: heuristic plain-language verdicts.
//! * [`Summary`]: median/percentiles of per-item values.
//!
//! Signals are mono f32 at 48 kHz; mels are `audio::mel::MelSpectrogram::log_mel` output.

pub mod collection;
mod error;
pub mod levels;
pub mod novelty;
pub mod spectral;
mod summary;
pub mod verdict;

#[cfg(test)]
mod testutil;

pub use error::{MetricsError, Result};
pub use summary::Summary;
