//! The crate's error type: every metric checks its input and reports what was wrong with it
//! instead of panicking, because the inputs come from users' folders and models.

use thiserror::Error;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricsError {
    /// An input that must hold something was empty.
    #[error("{what} is empty")]
    Empty { what: &'static str },
    /// Two inputs that must have the same size did not.
    #[error("{what}: sizes differ ({left} vs {right})")]
    SizeMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
    /// Too few items for the statistic (e.g. one file for a leave-one-file-out baseline).
    #[error("{what}: need at least {need}, got {got}")]
    TooFew {
        what: &'static str,
        need: usize,
        got: usize,
    },
    /// A parameter outside its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        name: &'static str,
        reason: &'static str,
    },
    /// NaN or infinity where finite numbers are needed.
    #[error("{what} contains a non-finite value")]
    NonFinite { what: &'static str },
    /// The input makes the statistic undefined (a zero reference or zero baseline).
    #[error("undefined: {0}")]
    Undefined(&'static str),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, MetricsError>;
