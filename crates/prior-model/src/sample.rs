//! Next-token selection with the reference's semantics: temperature, then top-k, then
//! top-p (nucleus); the most likely token always survives; temperature 0 is greedy.

use rand::Rng;

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// 0 = greedy (argmax), no division by zero.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// Off when ≤ 0 or ≥ 1.
    pub top_p: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
        }
    }
}

/// Chooses a token from one row of logits.
pub fn sample(logits: &[f32], p: &SamplingParams, rng: &mut impl Rng) -> usize {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0
    };
    if p.temperature <= 0.0 || !p.temperature.is_finite() {
        return argmax();
    }
    // Candidates sorted by logit, highest first (ties: lower index first).
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if p.top_k > 0 && p.top_k < order.len() {
        // Like torch: everything below the k-th largest value goes (equal values stay).
        let kth = logits[order[p.top_k - 1]];
        order.retain(|&i| logits[i] >= kth);
    }
    let max = logits[order[0]] / p.temperature;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| f64::from((logits[i] / p.temperature - max).exp()))
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|v| *v /= total);
    if p.top_p > 0.0 && p.top_p < 1.0 {
        // Keep tokens whose preceding cumulative mass is below p: the top token always stays.
        let mut cum = 0.0;
        let mut keep = 0;
        for &v in &probs {
            if cum >= f64::from(p.top_p) {
                break;
            }
            cum += v;
            keep += 1;
        }
        order.truncate(keep.max(1));
        probs.truncate(keep.max(1));
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|v| *v /= total);
    }
    let mut u: f64 = rng.random();
    for (i, &v) in probs.iter().enumerate() {
        if u < v {
            return order[i];
        }
        u -= v;
    }
    order[probs.len() - 1]
}

/// Draws from a probability vector (e.g. the stored first-token distribution).
pub fn sample_distribution(probs: &[f64], rng: &mut impl Rng) -> usize {
    let total: f64 = probs.iter().filter(|v| v.is_finite() && **v > 0.0).sum();
    if total <= 0.0 {
        return rng.random_range(0..probs.len().max(1));
    }
    let mut u = rng.random::<f64>() * total;
    for (i, &v) in probs.iter().enumerate() {
        if v.is_finite() && v > 0.0 {
            if u < v {
                return i;
            }
            u -= v;
        }
    }
    probs.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn temperature_zero_is_greedy() {
        let mut rng = StdRng::seed_from_u64(1);
        let p = SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 0.0,
        };
        assert_eq!(sample(&[0.1, 3.0, -1.0, 2.9], &p, &mut rng), 1);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_candidates() {
        let mut rng = StdRng::seed_from_u64(2);
        let logits = [5.0, 4.0, 0.0, -1.0, 3.0];
        let k2 = SamplingParams {
            temperature: 1.0,
            top_k: 2,
            top_p: 0.0,
        };
        for _ in 0..200 {
            assert!(matches!(sample(&logits, &k2, &mut rng), 0 | 1));
        }
        // p tiny: only the top token survives.
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.01,
        };
        for _ in 0..50 {
            assert_eq!(sample(&logits, &p, &mut rng), 0);
        }
        // Without filtering, every token eventually appears.
        let all = SamplingParams {
            temperature: 5.0,
            top_k: 0,
            top_p: 0.0,
        };
        let mut seen = [false; 5];
        for _ in 0..2000 {
            seen[sample(&logits, &all, &mut rng)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn top_p_keeps_tokens_whose_preceding_mass_is_below_p() {
        // Probabilities 0.5, 0.25, 0.25 (ties: lower index first). Token 2's preceding mass
        // is 0.75: excluded at p = 0.74, included at p = 0.76.
        let logits = [0.5f32.ln(), 0.25f32.ln(), 0.25f32.ln()];
        let counts = |top_p: f32| {
            let params = SamplingParams {
                temperature: 1.0,
                top_k: 0,
                top_p,
            };
            let mut rng = StdRng::seed_from_u64(11);
            let mut c = [0usize; 3];
            for _ in 0..6000 {
                c[sample(&logits, &params, &mut rng)] += 1;
            }
            c
        };
        let below = counts(0.74);
        assert_eq!(below[2], 0, "{below:?}");
        // The survivors are renormalised: 2 : 1.
        let ratio = below[0] as f64 / below[1] as f64;
        assert!((ratio - 2.0).abs() < 0.2, "{below:?}");
        let above = counts(0.76);
        assert!(above[2] > 1000, "{above:?}");
        // Token 1's preceding mass is 0.5: a p of 0.5 keeps the top token alone.
        assert_eq!(counts(0.5)[1..], [0, 0]);
    }

    #[test]
    fn sampling_is_reproducible_with_a_seed() {
        let logits: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..100)
                .map(|_| sample(&logits, &SamplingParams::default(), &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn distribution_sampling_follows_the_weights() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[sample_distribution(&[0.0, 0.25, 0.75], &mut rng)] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(counts[2] > 2 * counts[1]);
    }
}
