//! Closeness of a set of generated sounds to a collection: nearest-neighbour distances of
//! log-mel windows ([`nn`]), and distribution comparisons of per-sound features
//! ([`features`], [`mmd`], [`prc`]).

pub mod features;
pub mod mmd;
pub mod nn;
pub mod prc;

use crate::{MetricsError, Result};

/// Checks that `rows` holds at least `min` finite vectors of one non-zero length; returns it.
pub(crate) fn check_rows(rows: &[Vec<f64>], what: &'static str, min: usize) -> Result<usize> {
    if rows.len() < min {
        return Err(MetricsError::TooFew {
            what,
            need: min,
            got: rows.len(),
        });
    }
    let dim = rows.first().map_or(0, Vec::len);
    if dim == 0 {
        return Err(MetricsError::Empty { what });
    }
    if let Some(r) = rows.iter().find(|r| r.len() != dim) {
        return Err(MetricsError::SizeMismatch {
            what,
            left: dim,
            right: r.len(),
        });
    }
    if rows.iter().flatten().any(|v| !v.is_finite()) {
        return Err(MetricsError::NonFinite { what });
    }
    Ok(dim)
}

pub(crate) fn euclid(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests;
