//! Aggregation of per-item values (per sound, per window) into the few numbers a report prints.

use serde::Serialize;

use crate::{MetricsError, Result};

/// Distribution summary of a set of values. Percentiles interpolate linearly between order
/// statistics (NumPy's default), so `median` of an even count is the mean of the middle two.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Summarises `values`. Errors when empty or when a value is NaN/infinite (a silent
    /// infinity would otherwise turn a report's mean into nonsense).
    pub fn of(values: &[f64]) -> Result<Self> {
        if values.is_empty() {
            return Err(MetricsError::Empty { what: "values" });
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(MetricsError::NonFinite { what: "values" });
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Ok(Self {
            n: sorted.len(),
            median: percentile_sorted(&sorted, 0.5),
            p10: percentile_sorted(&sorted, 0.1),
            p90: percentile_sorted(&sorted, 0.9),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }
}

/// Percentile `q` in [0, 1] of an ascending, non-empty slice, linearly interpolated.
pub(crate) fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Median of finite values; `None` when empty. Sorts a copy.
pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(percentile_sorted(&sorted, 0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_one_to_eleven() {
        let v: Vec<f64> = (1..=11).rev().map(f64::from).collect();
        let s = Summary::of(&v).expect("summary");
        assert_eq!(s.n, 11);
        assert_eq!((s.min, s.max, s.median, s.mean), (1.0, 11.0, 6.0, 6.0));
        assert!((s.p10 - 2.0).abs() < 1e-12 && (s.p90 - 10.0).abs() < 1e-12);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
    }

    #[test]
    fn summary_serialises_to_json() {
        let s = Summary::of(&[1.0, 2.0]).expect("summary");
        let json = serde_json::to_string(&s).expect("json");
        assert!(json.contains("\"median\":1.5"), "{json}");
    }

    #[test]
    fn summary_rejects_empty_and_nan() {
        assert!(matches!(Summary::of(&[]), Err(MetricsError::Empty { .. })));
        assert!(matches!(
            Summary::of(&[1.0, f64::NAN]),
            Err(MetricsError::NonFinite { .. })
        ));
    }
}
