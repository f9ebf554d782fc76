//! Training behaviour of the residual quantiser on synthetic data.

use burn::prelude::*;
use rand::{Rng, SeedableRng, rngs::StdRng};
use vqvae::{CodeRestart, ResidualVq, RvqTraining};

fn cfg() -> RvqTraining {
    RvqTraining {
        decay: 0.8,
        commitment_weight: 0.25,
        dead_code_threshold: 2.0,
        kmeans_iters: 10,
        restart: CodeRestart::Random,
    }
}

/// `n` points around `centres` well-separated cluster centres in `d` dimensions.
fn clustered(n: usize, centres: usize, d: usize, rng: &mut StdRng) -> (Vec<f32>, Vec<f32>) {
    let c: Vec<f32> = (0..centres * d)
        .map(|_| rng.random_range(-10.0..10.0))
        .collect();
    let x: Vec<f32> = (0..n)
        .flat_map(|i| {
            let k = i % centres;
            (0..d)
                .map(|j| c[k * d + j] + rng.random_range(-0.05..0.05))
                .collect::<Vec<_>>()
        })
        .collect();
    (x, c)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
}

#[test]
fn kmeans_init_spreads_the_codes_over_clustered_data() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(1);
    let (x, centres) = clustered(600, 24, 8, &mut rng);
    let mut rvq = ResidualVq::new(1, 32, 8, &device);
    let input = Tensor::<2>::from_data(TensorData::new(x, [600, 8]), &device);
    let out = rvq.forward_train(input, &cfg(), &mut rng);
    let mut used: Vec<i64> = out
        .indices
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("ints");
    used.sort();
    used.dedup();
    assert!(
        used.len() as f64 / 32.0 > 0.5,
        "utilisation {} / 32",
        used.len()
    );
    assert!(host(rvq.levels[0].initted.val())[0] > 0.5);
    // Every true cluster centre has a code on it (points lie within ±0.05 per dimension of
    // their centre; centres are spread over ±10): random or untrained codes would not.
    let codes = host(rvq.levels[0].embed.val());
    for (c, centre) in centres.chunks_exact(8).enumerate() {
        let nearest = codes
            .chunks_exact(8)
            .map(|e| {
                e.iter()
                    .zip(centre)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f32>()
                    .sqrt()
            })
            .fold(f32::INFINITY, f32::min);
        assert!(nearest < 0.2, "cluster {c}: nearest code {nearest} away");
    }
}

#[test]
fn ema_moves_codes_toward_their_vectors() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(2);
    let (x, _) = clustered(400, 2, 6, &mut rng);
    let mut rvq = ResidualVq::new(1, 2, 6, &device);
    // No restarts here: this test isolates the EMA update.
    let cfg = RvqTraining {
        dead_code_threshold: 0.0,
        ..cfg()
    };
    let input = Tensor::<2>::from_data(TensorData::new(x.clone(), [400, 6]), &device);
    rvq.forward_train(input, &cfg, &mut rng);
    let before = host(rvq.levels[0].embed.val());
    // Shift every vector by +1: with decay 0.8, ten EMA steps move each used code by
    // 1 - 0.8^10 = 0.89 toward the new mean of its vectors.
    let shifted: Vec<f32> = x.iter().map(|v| v + 1.0).collect();
    let s = Tensor::<2>::from_data(TensorData::new(shifted, [400, 6]), &device);
    for _ in 0..10 {
        rvq.forward_train(s.clone(), &cfg, &mut rng);
    }
    let after = host(rvq.levels[0].embed.val());
    // Precondition (deterministic for this seed): k-means gave each cluster its own code.
    let sizes = host(rvq.levels[0].cluster_size.val());
    assert!(
        sizes.iter().all(|&n| (n - 200.0).abs() < 1.0),
        "cluster sizes {sizes:?}"
    );
    for c in 0..2 {
        for j in 0..6 {
            let moved = after[c * 6 + j] - before[c * 6 + j];
            assert!(
                (moved - 0.893).abs() < 0.01,
                "code {c} dim {j} moved {moved}"
            );
        }
    }
}

#[test]
fn dead_codes_are_restarted_from_batch_vectors() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(3);
    let (x, _) = clustered(200, 2, 4, &mut rng);
    let mut rvq = ResidualVq::new(1, 8, 4, &device);
    let both = Tensor::<2>::from_data(TensorData::new(x.clone(), [200, 4]), &device);
    rvq.forward_train(both, &cfg(), &mut rng);
    // From now on only cluster 0 (even rows) is seen: the codes that served cluster 1 get no
    // assignments, their EMA counts decay below the threshold and they restart on cluster 0.
    let first: Vec<f32> = x.chunks_exact(4).step_by(2).flatten().copied().collect();
    let batch = Tensor::<2>::from_data(TensorData::new(first.clone(), [100, 4]), &device);
    let mut restarted = 0;
    for _ in 0..30 {
        restarted += rvq.forward_train(batch.clone(), &cfg(), &mut rng).restarted[0];
    }
    assert!(restarted > 0, "no code was restarted");
    let embed = host(rvq.levels[0].embed.val());
    for c in 0..8 {
        let e = &embed[c * 4..(c + 1) * 4];
        let nearest = first
            .chunks_exact(4)
            .map(|v| v.iter().zip(e).map(|(a, b)| (a - b).powi(2)).sum::<f32>())
            .fold(f32::INFINITY, f32::min);
        assert!(
            nearest < 0.5,
            "code {c} is {nearest} away from the data it now serves"
        );
    }
}

#[test]
fn commitment_loss_is_zero_when_inputs_sit_on_codes() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(4);
    let mut rvq = ResidualVq::new(2, 8, 4, &device);
    let (x, _) = clustered(64, 8, 4, &mut rng);
    let input = Tensor::<2>::from_data(TensorData::new(x, [64, 4]), &device);
    rvq.forward_train(input, &cfg(), &mut rng);
    // Inputs equal to level-0 codes: level 0 is exact, the residual is zero, and level 1's
    // nearest code to zero leaves a loss unless it is zero too — so check level 0 alone.
    let mut single = ResidualVq::new(1, 8, 4, &device);
    single.levels[0] = rvq.levels[0].clone();
    let codes = single.levels[0].embed.val();
    let out = single.forward_train(
        codes,
        &RvqTraining {
            decay: 1.0 - 1e-6,
            ..cfg()
        },
        &mut rng,
    );
    let loss = out.commit_loss.into_scalar::<f32>();
    assert!(loss.abs() < 1e-9, "commitment loss {loss}");
}

#[test]
fn straight_through_passes_gradients_to_the_input() {
    // d/dx of sum(quantized) is exactly 1 everywhere: the forward value is the codes, the
    // backward pass sees the identity (and nothing of the commitment term).
    let device = Device::flex().autodiff();
    let mut rng = StdRng::seed_from_u64(5);
    let mut rvq = ResidualVq::new(2, 8, 4, &device);
    let x = Tensor::<2>::random(
        [32, 4],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    )
    .require_grad();
    let out = rvq.forward_train(x.clone(), &cfg(), &mut rng);
    let grads = out.quantized.sum().backward();
    let g = host(x.grad(&grads).expect("input receives a gradient"));
    assert!(
        g.iter().all(|&v| v == 1.0),
        "straight-through gradient {g:?}"
    );
}

#[test]
fn the_commitment_weight_is_applied_once_to_every_level() {
    // The commitment loss of level l is mean((q_l − r_l)²) with r_0 = x, r_{l+1} = r_l − q_l
    // (codes are constants), weighted once by 0.25 (the reference applied its weight twice,
    // 0.0625). Its gradient with respect to x, by hand:
    //   w · 2/(N·D) · Σ_l (r_l − q_l).
    let device = Device::flex().autodiff();
    let mut rng = StdRng::seed_from_u64(6);
    let (n, d) = (32, 4);
    let mut rvq = ResidualVq::new(2, 8, d, &device);
    let (data, _) = clustered(n, 8, d, &mut rng);
    // First call: k-means initialisation. The second call's codes are the codebooks as they
    // stand before it.
    let input = Tensor::<2>::from_data(TensorData::new(data.clone(), [n, d]), &device);
    rvq.forward_train(input, &cfg(), &mut rng);
    let books: Vec<Vec<f32>> = rvq.levels.iter().map(|l| host(l.embed.val())).collect();
    let shifted: Vec<f32> = data.iter().map(|v| v + 0.3).collect();
    let x =
        Tensor::<2>::from_data(TensorData::new(shifted.clone(), [n, d]), &device).require_grad();
    let out = rvq.forward_train(x.clone(), &cfg(), &mut rng);
    let idx: Vec<i64> = out
        .indices
        .clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("ints");
    let grads = out.commit_loss.sum().backward();
    let got = host(x.grad(&grads).expect("input receives a gradient"));
    let w = cfg().commitment_weight;
    for i in 0..n {
        let mut residual: Vec<f32> = shifted[i * d..(i + 1) * d].to_vec();
        let mut expected = vec![0.0f32; d];
        for (l, book) in books.iter().enumerate() {
            let code = idx[i * 2 + l] as usize;
            let q = &book[code * d..(code + 1) * d];
            for j in 0..d {
                expected[j] += w * 2.0 / (n * d) as f32 * (residual[j] - q[j]);
                residual[j] -= q[j];
            }
        }
        for j in 0..d {
            let (e, g) = (expected[j], got[i * d + j]);
            assert!(
                (e - g).abs() <= 1e-6 + 1e-4 * e.abs(),
                "row {i} dim {j}: gradient {g}, by hand {e}"
            );
        }
    }
}

/// A batch assigned at once and output in two parts: the parts' rows, codes and gradients
/// are the whole batch's, and their commitment losses add up to its loss.
#[test]
fn a_batch_output_in_parts_adds_up_to_the_whole() {
    let device = Device::flex().autodiff();
    let mut rng = StdRng::seed_from_u64(4);
    let (x, _) = clustered(40, 5, 4, &mut rng);
    let mut whole = ResidualVq::new(3, 8, 4, &device);
    let mut split = whole.clone();
    let input = Tensor::<2>::from_data(TensorData::new(x.clone(), [40, 4]), &device).require_grad();
    let full = whole.forward_train(input.clone(), &cfg(), &mut StdRng::seed_from_u64(9));
    let grads = full.commit_loss.clone().backward();
    let full_grad = host(input.grad(&grads).expect("gradient"));

    let assignment = split.assign_train(&x, 4, &cfg(), &mut StdRng::seed_from_u64(9), &device);
    let (mut loss, mut quantized, mut indices, mut grad) = (0.0, vec![], vec![], vec![]);
    for rows in [0..25, 25..40] {
        let part = Tensor::<2>::from_data(
            TensorData::new(x[rows.start * 4..rows.end * 4].to_vec(), [rows.len(), 4]),
            &device,
        )
        .require_grad();
        let out = assignment.output(part.clone(), rows);
        loss += host(out.commit_loss.clone())[0];
        quantized.extend(host(out.quantized));
        indices.extend(host(out.indices.float()));
        let g = out.commit_loss.backward();
        grad.extend(host(part.grad(&g).expect("gradient")));
    }
    assert_eq!(quantized, host(full.quantized));
    assert_eq!(indices, host(full.indices.float()));
    let full_loss = host(full.commit_loss)[0];
    assert!(
        (loss - full_loss).abs() < 1e-5 * full_loss.abs().max(1.0),
        "{loss} vs {full_loss}"
    );
    for (a, b) in grad.iter().zip(&full_grad) {
        assert!((a - b).abs() < 1e-6, "gradient {a} vs {b}");
    }
    // The codebooks learned the same from both.
    for (a, b) in whole.levels.iter().zip(&split.levels) {
        assert_eq!(host(a.embed.val()), host(b.embed.val()));
        assert_eq!(host(a.cluster_size.val()), host(b.cluster_size.val()));
    }
}

#[test]
fn quantiser_dropout_hands_each_chunk_only_its_kept_levels() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(2);
    let (x, _) = clustered(64, 8, 4, &mut rng);
    let mut rvq = ResidualVq::new(3, 16, 4, &device);
    let input = || Tensor::<2>::from_data(TensorData::new(x.clone(), [64, 4]), &device);
    let mut assignment = rvq.assign_train(&x, 4, &cfg(), &mut rng, &device);
    // Every chunk (16 rows each) given 1, 2 or 3 levels.
    let uniform = |levels: usize, a: &mut vqvae::Assignment| {
        a.keep_levels(&[levels; 4]).expect("64 rows in 4 chunks");
        let out = a.output(input(), 0..64);
        (host(out.quantized), host(out.commit_loss))
    };
    let (one, loss) = uniform(1, &mut assignment);
    let (two, _) = uniform(2, &mut assignment);
    let (all, full_loss) = uniform(3, &mut assignment);
    assert_ne!(one, all, "the finer levels add to the sum");
    assert_ne!(two, all);
    assert_eq!(loss, full_loss, "every level is still committed to");
    // Mixed: chunk-major rows, in the chunks' order and across parts of the batch.
    assignment.keep_levels(&[1, 3, 2, 3]).expect("4 chunks");
    let mixed: Vec<f32> = [0..32, 32..64]
        .into_iter()
        .flat_map(|rows| {
            let part = Tensor::<2>::from_data(
                TensorData::new(x[rows.start * 4..rows.end * 4].to_vec(), [32, 4]),
                &device,
            );
            host(assignment.output(part, rows).quantized)
        })
        .collect();
    let chunk = |v: &[f32], c: usize| v[c * 64..(c + 1) * 64].to_vec();
    assert_eq!(chunk(&mixed, 0), chunk(&one, 0));
    assert_eq!(chunk(&mixed, 1), chunk(&all, 1));
    assert_eq!(chunk(&mixed, 2), chunk(&two, 2));
    assert_eq!(chunk(&mixed, 3), chunk(&all, 3));
    assert!(
        assignment.keep_levels(&[1, 2, 3]).is_err(),
        "64 rows, 3 chunks"
    );
    assert!(assignment.keep_levels(&[]).is_err());
}

#[test]
fn kept_levels_are_drawn_only_under_dropout() {
    let mut rng = StdRng::seed_from_u64(5);
    assert_eq!(vqvae::draw_kept_levels(6, 3, 0.0, &mut rng), vec![3; 6]);
    let untouched: u64 = rng.random();
    assert_eq!(
        untouched,
        StdRng::seed_from_u64(5).random::<u64>(),
        "no draw at p = 0"
    );
    let all = vqvae::draw_kept_levels(3000, 3, 1.0, &mut rng);
    for levels in 1..=3 {
        let n = all.iter().filter(|&&k| k == levels).count();
        assert!((900..=1100).contains(&n), "{levels} levels: {n} of 3000");
    }
    // Half the chunks drop: a third of those still keep all three levels.
    let half = vqvae::draw_kept_levels(6000, 3, 0.5, &mut rng);
    let whole = half.iter().filter(|&&k| k == 3).count() as f64 / 6000.0;
    assert!((whole - 2.0 / 3.0).abs() < 0.03, "{whole}");
    assert!(half.iter().all(|k| (1..=3).contains(k)));
}

#[test]
fn the_coarse_levels_alone_give_the_same_first_codes() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(8);
    let (x, _) = clustered(128, 12, 6, &mut rng);
    let mut rvq = ResidualVq::new(3, 16, 6, &device);
    let input = || Tensor::<2>::from_data(TensorData::new(x.clone(), [128, 6]), &device);
    rvq.forward_train(input(), &cfg(), &mut rng);
    let full = rvq.forward(input());
    let codes = |t: Tensor<2, Int>| {
        t.into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("ints")
    };
    let full_codes = codes(full.indices.clone());
    // The sum of all three levels' codes, as the decoder sees them.
    let decoded = host(rvq.decode(full.indices).expect("three levels"));
    let mut previous_error = f32::INFINITY;
    for levels in 1..=3 {
        let out = rvq.forward_levels(input(), levels);
        assert_eq!(out.indices.dims(), [128, levels]);
        let first: Vec<i64> = full_codes
            .chunks_exact(3)
            .flat_map(|row| row[..levels].to_vec())
            .collect();
        assert_eq!(codes(out.indices), first, "{levels} level(s)");
        let error: f32 = host(out.quantized.clone() - input())
            .iter()
            .map(|v| v * v)
            .sum();
        assert!(
            error <= previous_error,
            "{levels} level(s): {error} > {previous_error}"
        );
        previous_error = error;
        if levels == 3 {
            assert_eq!(host(out.quantized), decoded);
        }
    }
    assert_eq!(rvq.forward_levels(input(), 9).indices.dims(), [128, 3]);
}
