//! Tests of the collection metrics on synthetic "drum hits" (decaying filtered noise).

use std::time::Instant;

use super::features::{FEATURE_NAMES, Standardiser, sound_features, sound_features_all};
use super::mmd::{mmd2_unbiased, split_half_baseline};
use super::nn::nearest_neighbour_ratio;
use super::prc::precision_recall_coverage;
use crate::MetricsError;
use crate::testutil::{SR, hit, mel, noise, sine};

/// A collection of `n` hits of 1–2 s with varied brightness and decay.
fn hits(n: usize, seed: u64) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            let len = SR + (i % 3) * SR / 2;
            let tau = 0.08 + 0.04 * (i % 4) as f32;
            let lp = 0.2 + 0.7 * (i % 5) as f32 / 4.0;
            hit(len, tau, lp, seed * 1000 + i as u64)
        })
        .collect()
}

fn gaussian_set(n: usize, dim: usize, shift: f64, seed: u64) -> Vec<Vec<f64>> {
    // Sum of 4 uniforms: close enough to Gaussian for these tests.
    let u = noise(n * dim * 4, 1.0, seed);
    (0..n)
        .map(|i| {
            (0..dim)
                .map(|j| {
                    let k = (i * dim + j) * 4;
                    f64::from(u[k] + u[k + 1] + u[k + 2] + u[k + 3]) * 0.866 + shift
                })
                .collect()
        })
        .collect()
}

#[test]
fn nn_ratio_of_the_collection_itself_is_zero_and_of_tones_is_large() {
    let mel = mel();
    let coll = hits(8, 1);
    let same = nearest_neighbour_ratio(&coll, &coll, &mel).expect("ratio");
    assert_eq!(same.generated_median, 0.0);
    assert_eq!(same.ratio, 0.0);
    assert!(same.baseline_median > 0.0);
    assert_eq!(same.baseline_files, 8);
    assert_eq!(same.per_sound_median.len(), 8);

    // New hits of the same family: about as close as the collection's own files.
    let new = nearest_neighbour_ratio(&hits(8, 2), &coll, &mel).expect("ratio");
    assert!(new.ratio > 0.5 && new.ratio < 1.5, "{new:?}");

    // Steady tones are nothing like decaying noise.
    let tones: Vec<Vec<f32>> = (0..4)
        .map(|i| sine(SR, 300.0 + 200.0 * i as f32, 0.5))
        .collect();
    let far = nearest_neighbour_ratio(&tones, &coll, &mel).expect("ratio");
    assert!(far.ratio > 1.5, "{far:?}");
}

#[test]
fn nn_ratio_rejects_silence_and_single_files() {
    let mel = mel();
    let coll = hits(3, 3);
    assert!(matches!(
        nearest_neighbour_ratio(&[vec![0.0; SR]], &coll, &mel),
        Err(MetricsError::Empty { .. })
    ));
    assert!(matches!(
        nearest_neighbour_ratio(&coll, &coll[..1], &mel),
        Err(MetricsError::TooFew { .. })
    ));
    assert!(nearest_neighbour_ratio(&[], &coll, &mel).is_err());
    // A very short sound is padded to one window rather than dropped.
    let short = nearest_neighbour_ratio(&[hit(2000, 0.01, 0.5, 9)], &coll, &mel).expect("ratio");
    assert_eq!(short.generated_windows, 1);
}

/// `cargo test -p metrics -- --ignored --nocapture nn_ratio_timing`
#[test]
#[ignore = "timing, prints measurements"]
fn nn_ratio_timing() {
    let mel = mel();
    let coll: Vec<Vec<f32>> = (0..20)
        .map(|i| {
            hit(
                SR + (i % 5) * SR / 2,
                0.3 + 0.1 * (i % 3) as f32,
                0.1 * (i % 9) as f32,
                i as u64,
            )
        })
        .collect();
    let generated: Vec<Vec<f32>> = (0..32).map(|i| hit(SR, 0.4, 0.5, 100 + i)).collect();
    let t = Instant::now();
    let r = nearest_neighbour_ratio(&generated, &coll, &mel).expect("ratio");
    println!(
        "32 x 1 s vs 20 files (1-3 s): {:.2} s, ratio {:.3}, windows {} / {}",
        t.elapsed().as_secs_f64(),
        r.ratio,
        r.generated_windows,
        r.collection_windows
    );
}

/// `cargo test -p metrics -- --ignored --nocapture nn_ratio_500_files`
#[test]
#[ignore = "timing of a large collection (~300 MB), prints measurements"]
fn nn_ratio_500_files_timing() {
    let mel = mel();
    let coll: Vec<Vec<f32>> = (0..500)
        .map(|i| {
            hit(
                3 * SR,
                0.5 + 0.1 * (i % 7) as f32,
                0.1 * (i % 9) as f32,
                i as u64,
            )
        })
        .collect();
    let generated: Vec<Vec<f32>> = (0..32).map(|i| hit(SR, 0.4, 0.5, 1000 + i)).collect();
    let t = Instant::now();
    let r = nearest_neighbour_ratio(&generated, &coll, &mel).expect("ratio");
    println!(
        "32 x 1 s vs 500 files (3 s): {:.2} s, ratio {:.3}, windows {} / {}, baseline files {}",
        t.elapsed().as_secs_f64(),
        r.ratio,
        r.generated_windows,
        r.collection_windows,
        r.baseline_files
    );
}

#[test]
fn features_are_finite_and_named() {
    let mel = mel();
    for x in [
        hit(SR, 0.1, 0.5, 1),
        sine(SR / 2, 440.0, 0.5),
        vec![0.0; 1000],
    ] {
        let f = sound_features(&x, &mel).expect("features");
        assert_eq!(f.len(), FEATURE_NAMES.len());
        assert!(f.iter().all(|v| v.is_finite()), "{f:?}");
    }
    let bright = sound_features(&hit(SR, 0.1, 0.0, 2), &mel).expect("features");
    let dark = sound_features(&hit(SR, 0.1, 0.9, 2), &mel).expect("features");
    assert!(
        bright[8] > 2.0 * dark[8],
        "centroid {} vs {}",
        bright[8],
        dark[8]
    );
    assert!(sound_features(&[], &mel).is_err());
    let all = sound_features_all(&[hit(SR / 2, 0.05, 0.3, 3), sine(SR, 440.0, 0.5)], &mel);
    assert_eq!(all.expect("features").len(), 2);
}

#[test]
fn standardiser_centres_and_scales() {
    let rows = vec![vec![1.0, 5.0], vec![3.0, 5.0], vec![5.0, 5.0]];
    let s = Standardiser::fit(&rows).expect("fit");
    let z = s.apply(&rows).expect("apply");
    assert!((z[0][0] + 1.2247).abs() < 1e-4 && z[1][0] == 0.0);
    // A constant feature is only centred.
    assert_eq!(s.std[1], 1.0);
    assert!(z.iter().all(|r| r[1] == 0.0));
    assert!(s.apply(&[vec![1.0]]).is_err());
    assert!(Standardiser::fit(&[vec![1.0], vec![f64::NAN]]).is_err());
}

#[test]
fn mmd_is_zero_for_a_set_against_itself_and_large_for_a_shifted_set() {
    let x = gaussian_set(40, 5, 0.0, 1);
    let self_mmd = mmd2_unbiased(&x, &x).expect("mmd");
    assert!(self_mmd.abs() < 0.05, "{self_mmd}");
    let base = split_half_baseline(&x, 7).expect("baseline");
    assert_eq!(base.splits, 20);
    assert!(base.mean.abs() < 0.05, "{base:?}");
    let y = gaussian_set(40, 5, 1.5, 2);
    let shifted = mmd2_unbiased(&x, &y).expect("mmd");
    assert!(
        shifted > 0.1 && shifted > base.mean + 5.0 * base.std,
        "{shifted} {base:?}"
    );
    // Another sample of the same distribution stays within the baseline's spread.
    let same = mmd2_unbiased(&x, &gaussian_set(40, 5, 0.0, 3)).expect("mmd");
    assert!(same < base.mean + 3.0 * base.std, "{same} {base:?}");
    assert_eq!(split_half_baseline(&x, 7), split_half_baseline(&x, 7));
    assert!(matches!(
        mmd2_unbiased(&x[..1], &y),
        Err(MetricsError::TooFew { .. })
    ));
    assert!(split_half_baseline(&x[..3], 1).is_err());
}

#[test]
fn precision_recall_coverage_limits() {
    let real = gaussian_set(30, 4, 0.0, 4);
    let same = precision_recall_coverage(&real, &real, 3).expect("prc");
    assert_eq!(
        (same.precision, same.recall, same.coverage, same.k),
        (1.0, 1.0, 1.0, 3)
    );
    assert!(same.density >= 1.0);
    let far = precision_recall_coverage(&real, &gaussian_set(30, 4, 100.0, 5), 3).expect("prc");
    assert_eq!(
        (far.precision, far.recall, far.coverage, far.density),
        (0.0, 0.0, 0.0, 0.0)
    );
    // Half the generated set collapsed onto one real point: recall drops, precision holds.
    let collapsed: Vec<Vec<f64>> = (0..30).map(|_| real[0].clone()).collect();
    let c = precision_recall_coverage(&real, &collapsed, 3).expect("prc");
    assert_eq!(c.precision, 1.0);
    assert!(c.recall < 0.2 && c.coverage < 0.2, "{c:?}");
    // Small sets: k clamps to |set| − 1.
    assert_eq!(
        precision_recall_coverage(&real[..2], &real[..5], 3)
            .expect("prc")
            .k,
        1
    );
    assert!(precision_recall_coverage(&real[..1], &real, 3).is_err());
    assert!(precision_recall_coverage(&real, &real, 0).is_err());
}
