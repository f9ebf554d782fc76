//! Precision, recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for
//! assessing generative models"), density and coverage (Naeem et al. 2020, "Reliable fidelity
//! and diversity metrics for generative models") on per-sound feature vectors.

use serde::Serialize;

use super::{check_rows, euclid};
use crate::{MetricsError, Result};

/// Neighbourhood size of Kynkäänniemi et al.
pub const PRC_DEFAULT_K: usize = 3;

/// Fidelity and diversity of a generated set against a real one, all in [0, 1] except
/// density (whose expectation is 1 when both sets come from the same distribution).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prc {
    /// Share of generated points inside some real point's k-NN ball (fidelity).
    pub precision: f64,
    /// Share of real points inside some generated point's k-NN ball (diversity).
    pub recall: f64,
    /// Share of real points whose own k-NN ball holds a generated point.
    pub coverage: f64,
    /// Mean number of real k-NN balls holding a generated point, divided by k.
    pub density: f64,
    /// The k actually used (see [`precision_recall_coverage`]).
    pub k: usize,
}

/// Distance of each point of `set` to its k-th nearest other point of `set`.
fn knn_radii(set: &[Vec<f64>], k: usize) -> Vec<f64> {
    set.iter()
        .enumerate()
        .map(|(i, a)| {
            let mut d: Vec<f64> = set
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, b)| euclid(a, b))
                .collect();
            d.sort_by(f64::total_cmp);
            d[k - 1]
        })
        .collect()
}

/// Precision, recall, density and coverage of `fake` against `real` with k-NN radii.
/// Each set needs at least 2 points of one dimension. A radius needs k other points, so k
/// is clamped to `min(k, |real| − 1, |fake| − 1)` and the value used is returned in
/// [`Prc::k`]: with tiny sets the balls are small and the numbers noisy, which the caller
/// should say. `k = 0` is an error.
pub fn precision_recall_coverage(real: &[Vec<f64>], fake: &[Vec<f64>], k: usize) -> Result<Prc> {
    if k == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "k",
            reason: "must be at least 1",
        });
    }
    let dr = check_rows(real, "real features", 2)?;
    let df = check_rows(fake, "generated features", 2)?;
    if dr != df {
        return Err(MetricsError::SizeMismatch {
            what: "feature dimension",
            left: dr,
            right: df,
        });
    }
    let k = k.min(real.len() - 1).min(fake.len() - 1);
    let (r_real, r_fake) = (knn_radii(real, k), knn_radii(fake, k));
    // cross[i][j]: distance from real i to fake j.
    let cross: Vec<Vec<f64>> = real
        .iter()
        .map(|a| fake.iter().map(|b| euclid(a, b)).collect())
        .collect();
    let (nr, nf) = (real.len(), fake.len());
    let precision = (0..nf)
        .filter(|&j| (0..nr).any(|i| cross[i][j] <= r_real[i]))
        .count() as f64
        / nf as f64;
    let recall = (0..nr)
        .filter(|&i| (0..nf).any(|j| cross[i][j] <= r_fake[j]))
        .count() as f64
        / nr as f64;
    let coverage = (0..nr)
        .filter(|&i| (0..nf).any(|j| cross[i][j] <= r_real[i]))
        .count() as f64
        / nr as f64;
    let inside: usize = (0..nf)
        .map(|j| (0..nr).filter(|&i| cross[i][j] <= r_real[i]).count())
        .sum();
    Ok(Prc {
        precision,
        recall,
        coverage,
        density: inside as f64 / (k * nf) as f64,
        k,
    })
}
