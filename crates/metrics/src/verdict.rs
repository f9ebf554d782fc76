//! Plain-language verdicts from the metrics. These are heuristics: thresholds chosen to
//! flag clear cases, not calibrated tests; a report should print them as such.

use crate::collection::mmd::SplitHalf;

/// Nearest-neighbour ratio above which generated sounds are "far from the collection".
pub const FAR_RATIO: f64 = 1.5;
/// Ratio below which they are closer to the collection than its files are to each other.
pub const CLOSE_RATIO: f64 = 0.5;
/// Copied span (share of the sound's code columns) above which copying is likely.
pub const HIGH_COPY_SHARE: f64 = 0.5;
/// Copied span share above which copying is worth a listen.
pub const MODERATE_COPY_SHARE: f64 = 0.25;
/// Recall below which the generated set covers little of the collection.
pub const LOW_RECALL: f64 = 0.2;
/// Precision below which most generated sounds lie outside the collection's feature range.
pub const LOW_PRECISION: f64 = 0.2;
/// Split-half standard deviations above which an MMD² counts as a real difference.
pub const MMD_SIGMAS: f64 = 2.0;

/// Verdict on the nearest-neighbour ratio.
pub fn closeness(ratio: f64) -> &'static str {
    if ratio > FAR_RATIO {
        "far from the collection"
    } else if ratio < CLOSE_RATIO {
        "closer to the collection than its own files are to each other (possible copies)"
    } else {
        "about as close to the collection as a new recording"
    }
}

/// Verdict on the longest copied span as a share of the sound.
pub fn copy_risk(span_share: f64) -> &'static str {
    if span_share > HIGH_COPY_SHARE {
        "high copy risk"
    } else if span_share > MODERATE_COPY_SHARE {
        "moderate copy risk"
    } else {
        "low copy risk"
    }
}

/// Verdict on precision and recall of the per-sound features.
pub fn fidelity_diversity(precision: f64, recall: f64) -> Vec<&'static str> {
    let mut out = Vec::new();
    if recall < LOW_RECALL {
        out.push("low diversity (covers little of the collection)");
    }
    if precision < LOW_PRECISION {
        out.push("low fidelity (most sounds unlike any in the collection)");
    }
    if out.is_empty() {
        out.push("fidelity and diversity plausible");
    }
    out
}

/// Verdict on the feature MMD² against the collection's split-half spread.
pub fn distribution(mmd2: f64, baseline: &SplitHalf) -> &'static str {
    if mmd2 > baseline.mean + MMD_SIGMAS * baseline.std {
        "feature statistics differ from the collection"
    } else {
        "feature statistics within the collection's own variation"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(closeness(2.0), "far from the collection");
        assert!(closeness(1.0).starts_with("about as close"));
        assert!(closeness(0.1).contains("possible copies"));
        assert_eq!(copy_risk(0.8), "high copy risk");
        assert_eq!(copy_risk(0.3), "moderate copy risk");
        assert_eq!(copy_risk(0.1), "low copy risk");
        assert_eq!(fidelity_diversity(0.9, 0.1).len(), 1);
        assert_eq!(fidelity_diversity(0.1, 0.1).len(), 2);
        let base = SplitHalf {
            mean: 0.0,
            std: 0.01,
            max: 0.02,
            splits: 20,
        };
        assert!(distribution(0.5, &base).contains("differ"));
        assert!(distribution(0.01, &base).contains("within"));
    }
}
