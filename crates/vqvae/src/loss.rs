//! Training losses and codebook health.

use burn::prelude::*;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;

/// Mean of the MSEs of the log-mel at full, 2× and 4× average-pooled resolution.
pub fn multi_scale_mel_loss(recon: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    let mse = |a: Tensor<4>, b: Tensor<4>| (a - b).powi_scalar(2).mean();
    let pool = |x: Tensor<4>, k: usize| avg_pool2d(x, AvgPoolOptions::new([k, k]));
    let full = mse(recon.clone(), target.clone());
    let half = mse(pool(recon.clone(), 2), pool(target.clone(), 2));
    let quarter = mse(pool(recon, 4), pool(target, 4));
    (full + half + quarter).div_scalar(3.0)
}

/// Health of one quantiser level over a set of codes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LevelHealth {
    /// Share of the codebook in use.
    pub utilization: f64,
    /// `exp(entropy)` of the code histogram (natural log).
    pub perplexity: f64,
    pub dead_codes: usize,
}

/// Per-level health of codes `[N][Q]` (flattened row-major) from a `K`-code codebook.
pub fn codebook_health(codes: &[i64], levels: usize, codebook_size: usize) -> Vec<LevelHealth> {
    (0..levels)
        .map(|q| {
            let mut counts = vec![0usize; codebook_size];
            let mut n = 0usize;
            for row in codes.chunks_exact(levels) {
                if let Some(c) = usize::try_from(row[q]).ok().filter(|&c| c < codebook_size) {
                    counts[c] += 1;
                    n += 1;
                }
            }
            let used = counts.iter().filter(|&&c| c > 0).count();
            let entropy: f64 = counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| {
                    let p = c as f64 / n as f64;
                    -p * p.ln()
                })
                .sum();
            LevelHealth {
                utilization: used as f64 / codebook_size as f64,
                perplexity: if n == 0 { 0.0 } else { entropy.exp() },
                dead_codes: codebook_size - used,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_of_a_known_histogram() {
        // Level 0 uses codes 0 and 1 equally (perplexity 2), level 1 only code 3.
        let codes = [0, 3, 1, 3, 0, 3, 1, 3];
        let h = codebook_health(&codes, 2, 4);
        assert_eq!(h[0].utilization, 0.5);
        assert!((h[0].perplexity - 2.0).abs() < 1e-12);
        assert_eq!(h[0].dead_codes, 2);
        assert_eq!(h[1].utilization, 0.25);
        assert!((h[1].perplexity - 1.0).abs() < 1e-12);
    }

    #[test]
    fn loss_is_zero_for_equal_inputs_and_positive_otherwise() {
        let device = Device::flex();
        let a = Tensor::<4>::random([2, 1, 16, 12], burn::tensor::Distribution::Default, &device);
        let zero = multi_scale_mel_loss(a.clone(), a.clone()).into_scalar::<f32>();
        assert_eq!(zero, 0.0);
        let b = a.clone().add_scalar(1.0);
        // A constant offset of 1 survives every pooling: each MSE is 1.
        let one = multi_scale_mel_loss(b, a).into_scalar::<f32>();
        assert!((one - 1.0).abs() < 1e-6);
    }
}
