//! Maximum mean discrepancy between two sets of feature vectors (Gretton et al. 2012), with
//! a split-half baseline that shows how large the estimate gets by chance for a collection.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::{check_rows, euclid};
use crate::summary::median;
use crate::{MetricsError, Result};

/// Seeded random splits averaged by [`split_half_baseline`].
pub const SPLIT_HALF_SPLITS: usize = 20;

fn check_pair(x: &[Vec<f64>], y: &[Vec<f64>]) -> Result<()> {
    let dx = check_rows(x, "first set", 2)?;
    let dy = check_rows(y, "second set", 2)?;
    if dx != dy {
        return Err(MetricsError::SizeMismatch {
            what: "feature dimension",
            left: dx,
            right: dy,
        });
    }
    Ok(())
}

/// Median heuristic: the median Euclidean distance over all distinct pairs of the pooled
/// sets. Falls back to the mean of the non-zero distances when over half the pairs are
/// duplicates, and to 1 when every point is the same (any bandwidth then gives MMD² = 0).
pub fn median_bandwidth(x: &[Vec<f64>], y: &[Vec<f64>]) -> Result<f64> {
    check_pair(x, y)?;
    let pooled: Vec<&Vec<f64>> = x.iter().chain(y).collect();
    let mut d = Vec::with_capacity(pooled.len() * (pooled.len() - 1) / 2);
    for (i, a) in pooled.iter().enumerate() {
        for b in &pooled[i + 1..] {
            d.push(euclid(a, b));
        }
    }
    let med = median(&d).unwrap_or(0.0);
    if med > 0.0 {
        return Ok(med);
    }
    let nonzero: Vec<f64> = d.into_iter().filter(|&v| v > 0.0).collect();
    Ok(if nonzero.is_empty() {
        1.0
    } else {
        nonzero.iter().sum::<f64>() / nonzero.len() as f64
    })
}

/// Unbiased MMD² with the Gaussian kernel exp(−‖a−b‖² / (2σ²)) at bandwidth `sigma`:
/// the within-set means exclude the diagonal, so the estimate is 0 in expectation for two
/// samples of one distribution and can be slightly negative (for a set against itself it is
/// −2(1 − mean off-diagonal kernel)/n).
pub fn mmd2_unbiased_with_bandwidth(x: &[Vec<f64>], y: &[Vec<f64>], sigma: f64) -> Result<f64> {
    check_pair(x, y)?;
    if !(sigma > 0.0 && sigma.is_finite()) {
        return Err(MetricsError::InvalidParameter {
            name: "sigma",
            reason: "must be positive and finite",
        });
    }
    let gamma = 1.0 / (2.0 * sigma * sigma);
    let k = |a: &Vec<f64>, b: &Vec<f64>| {
        let d = euclid(a, b);
        (-gamma * d * d).exp()
    };
    let within = |s: &[Vec<f64>]| {
        let mut sum = 0.0;
        for (i, a) in s.iter().enumerate() {
            for b in &s[i + 1..] {
                sum += 2.0 * k(a, b);
            }
        }
        sum / (s.len() * (s.len() - 1)) as f64
    };
    let cross: f64 = x.iter().flat_map(|a| y.iter().map(move |b| k(a, b))).sum();
    Ok(within(x) + within(y) - 2.0 * cross / (x.len() * y.len()) as f64)
}

/// Unbiased MMD² with the Gaussian kernel, bandwidth by [`median_bandwidth`] of the pooled
/// sets. Each set needs at least 2 vectors of one dimension.
pub fn mmd2_unbiased(x: &[Vec<f64>], y: &[Vec<f64>]) -> Result<f64> {
    let sigma = median_bandwidth(x, y)?;
    mmd2_unbiased_with_bandwidth(x, y, sigma)
}

/// MMD² between random halves of a collection, over [`SPLIT_HALF_SPLITS`] seeded splits.
/// Being unbiased, its mean is ≈ 0; its spread is the scale to judge a generated set by:
/// a generated-vs-collection MMD² above `mean + 2·std` is unlikely to be chance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SplitHalf {
    pub mean: f64,
    pub std: f64,
    pub max: f64,
    pub splits: usize,
}

/// [`SplitHalf`] of `collection` (feature vectors, at least 4 so each half has 2); with an
/// odd count one vector is left out of each split. Deterministic for a given `seed`.
pub fn split_half_baseline(collection: &[Vec<f64>], seed: u64) -> Result<SplitHalf> {
    check_rows(collection, "collection features", 4)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..collection.len()).collect();
    let half = collection.len() / 2;
    let mut values = Vec::with_capacity(SPLIT_HALF_SPLITS);
    for _ in 0..SPLIT_HALF_SPLITS {
        idx.shuffle(&mut rng);
        let a: Vec<Vec<f64>> = idx[..half].iter().map(|&i| collection[i].clone()).collect();
        let b: Vec<Vec<f64>> = idx[half..2 * half]
            .iter()
            .map(|&i| collection[i].clone())
            .collect();
        values.push(mmd2_unbiased(&a, &b)?);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    Ok(SplitHalf {
        mean,
        std,
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        splits: values.len(),
    })
}
