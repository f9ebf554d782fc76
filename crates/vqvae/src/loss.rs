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

/// Floor added to mel power before the log in [`reconstruction_loss`]: −50 dB below a
/// peak-normalised full-scale bin, the floor the evaluation's log-spectral distance uses.
pub const LOG_POWER_EPS: f32 = 1e-5;

/// Mean absolute difference of `ln(power + ε)` between two log1p mels (power = `expm1`).
///
/// The log1p mel flattens everything under about −20 dB to ≈ 0, so an MSE on it cannot tell a
/// decoder that leaves a faint bed (−17 dB) under silence from one that is silent; in the
/// log-power domain that bed is a large error, and it is what a listener hears as noise.
pub fn log_power_l1(recon: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    (log_power(recon) - log_power(target)).abs().mean()
}

/// `ln(power + ε)` of a log1p mel (power = `expm1`, clamped at 0; ε = [`LOG_POWER_EPS`]).
pub fn log_power(log_mel: Tensor<4>) -> Tensor<4> {
    log_mel
        .exp()
        .sub_scalar(1.0)
        .clamp_min(0.0)
        .add_scalar(LOG_POWER_EPS)
        .log()
}

/// The VQ-VAE's reconstruction loss: [`multi_scale_mel_loss`], plus `log_power_weight` ×
/// [`log_power_l1`] when the weight is positive (Distill's own models; reference models train
/// with the multi-scale MSE alone).
pub fn reconstruction_loss(
    recon: Tensor<4>,
    target: Tensor<4>,
    log_power_weight: f32,
) -> Tensor<1> {
    if log_power_weight > 0.0 {
        multi_scale_mel_loss(recon.clone(), target.clone())
            + log_power_l1(recon, target).mul_scalar(log_power_weight)
    } else {
        multi_scale_mel_loss(recon, target)
    }
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

    #[test]
    fn log_power_l1_measures_a_gain_in_nepers_and_sees_the_floor() {
        let device = Device::flex();
        // log1p mels of powers 10 and 1000 (well above ε), and of powers ×4: |ln 4| each.
        let mel = |g: f32| {
            let v: Vec<f32> = (0..16)
                .map(|i| (if i % 2 == 0 { 10.0f32 } else { 1000.0 } * g).ln_1p())
                .collect();
            Tensor::<4>::from_data(TensorData::new(v, [1, 1, 4, 4]), &device)
        };
        assert_eq!(log_power_l1(mel(1.0), mel(1.0)).into_scalar::<f32>(), 0.0);
        let gain = log_power_l1(mel(4.0), mel(1.0)).into_scalar::<f32>();
        assert!((gain - 4f32.ln()).abs() < 1e-3, "{gain}");
        // A faint bed (log1p 0.02, about −17 dB) over true silence: almost nothing to the MSE
        // on log1p mels, ln((0.0202 + ε)/ε) ≈ 7.6 nepers to the log-power term.
        let silence = Tensor::<4>::zeros([1, 1, 4, 4], &device);
        let bed = Tensor::<4>::full([1, 1, 4, 4], 0.02, &device);
        let mse = multi_scale_mel_loss(bed.clone(), silence.clone()).into_scalar::<f32>();
        let lp = log_power_l1(bed.clone(), silence.clone()).into_scalar::<f32>();
        assert!(
            mse < 1e-3 && (lp - 7.61).abs() < 0.05,
            "mse {mse} log-power {lp}"
        );
        // The combined loss adds the weighted term, and weight 0 is the MSE alone.
        let both = reconstruction_loss(bed.clone(), silence.clone(), 0.5).into_scalar::<f32>();
        assert!((both - (mse + 0.5 * lp)).abs() < 1e-4);
        assert_eq!(
            reconstruction_loss(bed, silence, 0.0).into_scalar::<f32>(),
            mse
        );
    }
}
