//! CodePrior against the reference system's fixture, plus its structural properties.

use burn::prelude::*;
use prior_model::{
    CodePrior, HostDecoder, HostState, HostWeights, PriorError, PriorShape, flatten_codes,
    unflatten_codes,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use weights::{HostData, StateDict, pickle::Value};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upstream-drums20")
        .join(name)
}

#[allow(deprecated)] // ndarray is deprecated in Burn 0.22 but still a supported backend here
fn cpu_devices() -> Vec<(&'static str, Device)> {
    vec![("ndarray", Device::ndarray()), ("flex", Device::flex())]
}

fn reference_prior() -> (StateDict, usize) {
    let bytes = std::fs::read(fixture("model.distill")).expect("fixture model present");
    let ckpt = weights::torch::load_checkpoint(&bytes).expect("reference checkpoint parses");
    let sd = weights::torch::state_dict(ckpt.get("prior_state_dict").expect("has prior"), "prior")
        .expect("prior state dict");
    let heads = ckpt
        .get("prior_config")
        .and_then(|c| c.get("num_heads"))
        .and_then(Value::as_i64)
        .expect("num_heads in prior_config") as usize;
    (sd, heads)
}

fn vectors() -> StateDict {
    let bytes = std::fs::read(fixture("vectors.safetensors")).expect("fixture vectors present");
    weights::st::from_bytes(&bytes).expect("vectors parse").0
}

/// The reference's prior input tokens (4 sequences of 144), flattened.
fn reference_tokens(v: &StateDict) -> Vec<i64> {
    v["prior_tokens"]
        .to_i64("prior_tokens")
        .expect("int tokens")
}

/// The original's drums20 prior loaded on `flex`, with the reference token sequences.
fn reference_prior_on_flex() -> (CodePrior, Vec<i64>, Device) {
    let (sd, heads) = reference_prior();
    let device = Device::flex();
    let prior = CodePrior::from_state_dict(&sd, heads, 0.3, &device).expect("loads");
    (prior, reference_tokens(&vectors()), device)
}

/// Steps `together` with `step_many` and `alone` one sequence at a time through the first
/// `steps` tokens of `seqs`; every step's logits must be identical.
fn assert_batched_steps_match_single(
    decoder: &HostDecoder,
    seqs: &[&[i64]],
    alone: &mut [HostState],
    together: &mut [HostState],
    steps: usize,
) {
    for t in 0..steps {
        let next: Vec<usize> = seqs.iter().map(|s| s[t] as usize).collect();
        decoder.step_many(together, &next).expect("batched step");
        for (i, st) in alone.iter_mut().enumerate() {
            let want = decoder.step(st, next[i]).expect("step").to_vec();
            assert_eq!(together[i].logits(), &want[..], "sequence {i}, step {t}");
        }
    }
}

fn logits_of(prior: &CodePrior, tokens: &[i64], b: usize, t: usize, device: &Device) -> Vec<f32> {
    let x = Tensor::<2, Int>::from_data(TensorData::new(tokens.to_vec(), [b, t]), device);
    prior
        .forward(x)
        .expect("forward")
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn logits_match_the_reference_on_cpu_backends() {
    let (sd, heads) = reference_prior();
    let v = vectors();
    let tokens = reference_tokens(&v);
    let HostData::F32(expected) = &v["prior_logits"].data else {
        panic!("logits are float")
    };
    assert_eq!(v["prior_logits"].shape, vec![4, 144, 64]);
    for (name, device) in cpu_devices() {
        let prior = CodePrior::from_state_dict(&sd, heads, 0.3, &device).expect("loads");
        let s = prior.shape();
        assert_eq!(
            (
                s.codebook_size,
                s.seq_len,
                s.num_quantizers,
                s.hidden_size,
                s.num_layers
            ),
            (64, 144, 3, 128, 2)
        );
        let got = logits_of(&prior, &tokens, 4, 144, &device);
        let diff = max_abs_diff(&got, expected);
        assert!(diff <= 1e-4, "{name}: max |logits - reference| = {diff}");
    }
}

#[test]
fn state_dict_round_trip_gives_identical_logits() {
    let (sd, heads) = reference_prior();
    let device = Device::flex();
    let prior = CodePrior::from_state_dict(&sd, heads, 0.3, &device).expect("loads");
    let exported = prior.to_state_dict().expect("exports");
    // Every exported tensor is bit-identical to what was imported (the mask is not a weight).
    for (k, t) in &exported {
        assert_eq!(Some(t), sd.get(k), "tensor {k}");
    }
    assert!(!exported.contains_key("causal_mask"));
    let bytes = weights::st::to_bytes(&exported, &Default::default()).expect("serialise");
    let (back, _) = weights::st::from_bytes(&bytes).expect("parse");
    let again = CodePrior::from_state_dict(&back, heads, 0.3, &device).expect("reloads");
    let tokens: Vec<i64> = (0..144).map(|i| (i * 7 % 64) as i64).collect();
    assert_eq!(
        logits_of(&prior, &tokens, 1, 144, &device),
        logits_of(&again, &tokens, 1, 144, &device)
    );
}

fn tiny(device: &Device) -> CodePrior {
    device.seed(3);
    CodePrior::new(
        PriorShape {
            codebook_size: 11,
            seq_len: 24,
            num_quantizers: 3,
            hidden_size: 16,
            num_layers: 2,
            num_heads: 4,
            dropout: 0.0,
            rows: 0,
        },
        device,
    )
    .expect("valid shape")
}

#[test]
fn changing_a_token_never_changes_earlier_logits() {
    let device = Device::flex();
    let prior = tiny(&device);
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..6 {
        let base: Vec<i64> = (0..24).map(|_| rng.random_range(0..11)).collect();
        let t = rng.random_range(0..24);
        let mut changed = base.clone();
        changed[t] = (changed[t] + 1 + rng.random_range(0..10)) % 11;
        let a = logits_of(&prior, &base, 1, 24, &device);
        let b = logits_of(&prior, &changed, 1, 24, &device);
        let k = 11;
        assert_eq!(
            &a[..t * k],
            &b[..t * k],
            "positions before {t} must not move"
        );
        if t < 23 {
            assert_ne!(
                &a[t * k..],
                &b[t * k..],
                "later positions should see the change"
            );
        }
    }
}

#[test]
fn shorter_inputs_equal_the_prefix_of_longer_ones() {
    let device = Device::flex();
    let prior = tiny(&device);
    let tokens: Vec<i64> = (0..24).map(|i| (i * 5 % 11) as i64).collect();
    let full = logits_of(&prior, &tokens, 1, 24, &device);
    let part = logits_of(&prior, &tokens[..10], 1, 10, &device);
    assert!(max_abs_diff(&full[..10 * 11], &part) < 1e-5);
}

#[test]
fn too_long_and_empty_inputs_are_errors() {
    let device = Device::flex();
    let prior = tiny(&device);
    let long = Tensor::<2, Int>::zeros([1, 25], &device);
    assert!(matches!(
        prior.forward(long),
        Err(PriorError::TooLong {
            len: 25,
            seq_len: 24
        })
    ));
    let empty = Tensor::<2, Int>::zeros([1, 0], &device);
    assert!(matches!(prior.forward(empty), Err(PriorError::Empty)));
}

#[test]
fn invalid_shapes_are_rejected() {
    let device = Device::flex();
    let mut s = tiny(&device).shape();
    s.num_heads = 3;
    let err = CodePrior::new(s, &device).expect_err("3 heads do not divide 16");
    assert!(
        err.to_string()
            .contains("num_heads (3) must divide hidden_size (16)"),
        "{err}"
    );
    let (mut sd, heads) = reference_prior();
    sd.remove("head.weight");
    let err = CodePrior::from_state_dict(&sd, heads, 0.3, &device).expect_err("missing head");
    assert!(err.to_string().contains("head.weight"), "{err}");
}

#[test]
fn flatten_and_unflatten_are_exact_inverses() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20 {
        let (b, s, q) = (
            rng.random_range(1..4),
            rng.random_range(1..30),
            rng.random_range(1..5),
        );
        let codes: Vec<i64> = (0..b * s * q).map(|_| rng.random_range(0..256)).collect();
        let grid = Tensor::<3, Int>::from_data(TensorData::new(codes.clone(), [b, s, q]), &device);
        let flat = flatten_codes(grid);
        assert_eq!(flat.dims(), [b, s * q]);
        let flat_v = flat
            .to_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("ints");
        // Position-major with interleaved levels: token p*Q + l is level l of position p.
        assert_eq!(flat_v, codes);
        let back = unflatten_codes(flat, q).expect("multiple of q");
        assert_eq!(back.dims(), [b, s, q]);
        assert_eq!(
            back.into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .expect("ints"),
            codes
        );
    }
    let odd = Tensor::<2, Int>::zeros([1, 10], &device);
    assert!(matches!(
        unflatten_codes(odd, 3),
        Err(PriorError::NotMultiple { len: 10, levels: 3 })
    ));
}

#[test]
fn cached_steps_match_the_full_forward_pass() {
    let (sd, heads) = reference_prior();
    let tokens = reference_tokens(&vectors());
    for (name, device) in cpu_devices() {
        let prior = CodePrior::from_state_dict(&sd, heads, 0.3, &device).expect("loads");
        // Two sequences at once: the cache is batched.
        let full = logits_of(&prior, &tokens[..2 * 144], 2, 144, &device);
        let mut cache = prior.new_cache(2, &device);
        let mut worst = 0.0f32;
        for t in 0..144 {
            let step = Tensor::<1, Int>::from_data(
                TensorData::new(vec![tokens[t], tokens[144 + t]], [2]),
                &device,
            );
            let got = prior
                .step(step, &mut cache)
                .expect("within context")
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32");
            for b in 0..2 {
                let expected = &full[(b * 144 + t) * 64..(b * 144 + t + 1) * 64];
                worst = worst.max(max_abs_diff(&got[b * 64..(b + 1) * 64], expected));
            }
        }
        assert!(worst <= 1e-4, "{name}: cached vs full max |diff| = {worst}");
        let extra = Tensor::<1, Int>::zeros([2], &device);
        assert!(matches!(
            prior.step(extra, &mut cache),
            Err(PriorError::TooLong { .. })
        ));
    }
}

#[test]
fn prefill_then_steps_match_the_full_forward_pass() {
    let (prior, tokens, device) = reference_prior_on_flex();
    let full = logits_of(&prior, &tokens[..144], 1, 144, &device);
    let mut cache = prior.new_cache(1, &device);
    let prefix =
        Tensor::<2, Int>::from_data(TensorData::new(tokens[..72].to_vec(), [1, 72]), &device);
    let host = |t: Tensor<2>| {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    };
    let mut worst = max_abs_diff(
        &host(prior.prefill(prefix, &mut cache).expect("prefill")),
        &full[71 * 64..72 * 64],
    );
    for t in 72..144 {
        let step = Tensor::<1, Int>::from_data(TensorData::new(vec![tokens[t]], [1]), &device);
        let got = host(prior.step(step, &mut cache).expect("step"));
        worst = worst.max(max_abs_diff(&got, &full[t * 64..(t + 1) * 64]));
    }
    assert!(worst <= 1e-4, "prefill + cached steps vs full: {worst}");
}

#[test]
fn host_steps_match_the_full_forward_pass() {
    let (prior, tokens, device) = reference_prior_on_flex();
    let decoder = HostDecoder::new(&prior).expect("host copy");
    for seq in 0..2 {
        let toks = &tokens[seq * 144..(seq + 1) * 144];
        let full = logits_of(&prior, toks, 1, 144, &device);
        let mut state = decoder.new_state();
        let mut worst = 0.0f32;
        for (t, &tok) in toks.iter().enumerate() {
            let got = decoder
                .step(&mut state, tok as usize)
                .expect("within context");
            worst = worst.max(max_abs_diff(got, &full[t * 64..(t + 1) * 64]));
        }
        assert!(worst <= 1e-4, "host steps vs full forward: {worst}");
        assert!(matches!(
            decoder.step(&mut state, 0),
            Err(PriorError::TooLong { .. })
        ));
        // A prefix fed at once continues exactly like step-by-step feeding.
        let mut fresh = decoder.new_state();
        let via_prefill = decoder
            .prefill(
                &mut fresh,
                &toks[..72].iter().map(|&t| t as usize).collect::<Vec<_>>(),
            )
            .expect("prefill")
            .to_vec();
        assert!(max_abs_diff(&via_prefill, &full[71 * 64..72 * 64]) <= 1e-4);
    }
    let mut state = decoder.new_state();
    let err = decoder
        .step(&mut state, 64)
        .expect_err("token outside the codebook");
    assert!(
        err.to_string()
            .contains("token 64 is outside the codebook of 64"),
        "{err}"
    );

    // Several sequences stepped together give exactly each one's own logits, even when
    // they sit at different positions. Five of them: a full four-sound tile and a single.
    let seqs: Vec<&[i64]> = (0..5)
        .map(|i| &tokens[(i % 3) * 144 + (i / 3) * 7..][..100])
        .collect();
    let mut alone: Vec<_> = seqs.iter().map(|_| decoder.new_state()).collect();
    let mut together: Vec<_> = seqs.iter().map(|_| decoder.new_state()).collect();
    decoder
        .step(&mut together[2], 0)
        .expect("offset the third sequence");
    decoder
        .step(&mut alone[2], 0)
        .expect("offset the third sequence");
    assert_batched_steps_match_single(&decoder, &seqs, &mut alone, &mut together, 100);
    let err = decoder
        .step_many(&mut together, &[0, 0])
        .expect_err("one token per sequence");
    assert!(
        err.to_string().contains("2 tokens for 5 sequences"),
        "{err}"
    );
}

#[test]
fn a_row_embedding_follows_each_tokens_row_through_every_path() {
    // 3 levels × 2 rows: tokens 0–2 are row 0, 3–5 row 1, 6–8 row 0 again, …
    let device = Device::flex();
    device.seed(5);
    let shape = PriorShape {
        rows: 2,
        ..tiny(&device).shape()
    };
    let prior = CodePrior::new(shape, &device).expect("valid shape");
    let mut rng = StdRng::seed_from_u64(9);
    let tokens: Vec<i64> = (0..24).map(|_| rng.random_range(0..11)).collect();
    let full = logits_of(&prior, &tokens, 1, 24, &device);

    // Saved and loaded: the rows come back from the tensor's shape, the logits exactly.
    let dict = prior.to_state_dict().expect("exports");
    assert_eq!(dict["row_emb.weight"].shape, vec![2, 16]);
    let again = CodePrior::from_state_dict(&dict, 4, 0.0, &device).expect("reloads");
    assert_eq!(again.shape().rows, 2);
    assert_eq!(logits_of(&again, &tokens, 1, 24, &device), full);

    // The host decoder and the cached device path add it too.
    let decoder = HostDecoder::new(&prior).expect("host copy");
    let mut state = decoder.new_state();
    let mut cache = prior.new_cache(1, &device);
    for (t, &tok) in tokens.iter().enumerate() {
        let want = &full[t * 11..(t + 1) * 11];
        let host = decoder.step(&mut state, tok as usize).expect("host step");
        assert!(max_abs_diff(host, want) <= 1e-4, "host, token {t}");
        let step = Tensor::<1, Int>::from_data(TensorData::new(vec![tok], [1]), &device);
        let cached = prior.step(step, &mut cache).expect("cached step");
        let cached = cached
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        assert!(max_abs_diff(&cached, want) <= 1e-4, "cached, token {t}");
    }

    // Row 1's vector reaches tokens 3–5 and not the three before them; without the
    // embedding (a dict without it) the model is another one.
    let mut edited = dict.clone();
    let mut w = edited["row_emb.weight"].to_f32();
    w[16..].iter_mut().for_each(|v| *v = 0.0);
    edited.insert(
        "row_emb.weight".into(),
        weights::HostTensor::f32(vec![2, 16], w),
    );
    let zeroed = CodePrior::from_state_dict(&edited, 4, 0.0, &device).expect("loads");
    let moved = logits_of(&zeroed, &tokens, 1, 24, &device);
    assert_eq!(moved[..3 * 11], full[..3 * 11]);
    assert!(max_abs_diff(&moved[3 * 11..4 * 11], &full[3 * 11..4 * 11]) > 1e-3);
    edited.remove("row_emb.weight");
    let plain = CodePrior::from_state_dict(&edited, 4, 0.0, &device).expect("loads");
    assert_eq!(plain.shape().rows, 0);
    assert!(
        max_abs_diff(
            &logits_of(&plain, &tokens, 1, 24, &device)[..11],
            &full[..11]
        ) > 1e-3
    );
}

/// Softmax of `logits`.
fn probabilities(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.iter().map(|v| v / total).collect()
}

#[test]
fn bfloat16_host_steps_stay_near_the_full_forward_pass() {
    let (prior, tokens, device) = reference_prior_on_flex();
    let decoder = HostDecoder::with_weights(&prior, HostWeights::Bf16).expect("host copy");
    let toks = &tokens[..144];
    let full = logits_of(&prior, toks, 1, 144, &device);
    let mut state = decoder.new_state();
    let (mut worst_logit, mut worst_tv) = (0.0f32, 0.0f64);
    for (t, &tok) in toks.iter().enumerate() {
        let got = decoder
            .step(&mut state, tok as usize)
            .expect("within context");
        let want = &full[t * 64..(t + 1) * 64];
        worst_logit = worst_logit.max(max_abs_diff(got, want));
        // Total variation distance between the sampling distributions.
        let tv: f64 = probabilities(got)
            .iter()
            .zip(probabilities(want))
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / 2.0;
        worst_tv = worst_tv.max(tv);
    }
    // Rounded weights move the logits (f32 stays within 1e-4), but not what is sampled.
    assert!(worst_logit > 1e-4, "bf16 weights left every logit exact");
    assert!(worst_logit < 0.02, "logits {worst_logit} off");
    assert!(worst_tv < 0.005, "sampling distributions {worst_tv} apart");
    // Several sequences stepped together still give exactly each one's own logits.
    let seqs = [&tokens[..144], &tokens[144..288]];
    let mut alone = [decoder.new_state(), decoder.new_state()];
    let mut together = [decoder.new_state(), decoder.new_state()];
    assert_batched_steps_match_single(&decoder, &seqs, &mut alone, &mut together, 50);
    // Generation keeps small priors exact and reads large ones as bfloat16.
    assert_eq!(HostWeights::for_shape(&prior.shape()), HostWeights::F32);
    let wide = PriorShape {
        hidden_size: 256,
        ..prior.shape()
    };
    assert_eq!(HostWeights::for_shape(&wide), HostWeights::Bf16);
}

#[test]
fn training_forward_is_the_forward_pass_plus_seeded_dropout() {
    let device = Device::flex();
    let tokens: Vec<i64> = (0..2 * 24).map(|i| (i * 5 % 11) as i64).collect();
    let input = || Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [2, 24]), &device);
    let values = |t: Tensor<3>| {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    };
    // Without dropout it computes exactly what the inference forward pass does.
    let prior = tiny(&device);
    let mut rng = StdRng::seed_from_u64(1);
    let train = values(
        prior
            .forward_train(input(), &mut rng)
            .expect("train forward"),
    );
    let infer = values(prior.forward(input()).expect("forward"));
    assert!(max_abs_diff(&train, &infer) < 1e-5);

    // With dropout: the same seed repeats the masks, another seed changes them.
    device.seed(3);
    let shape = PriorShape {
        dropout: 0.5,
        ..prior.shape()
    };
    let dropped = CodePrior::new(shape, &device).expect("valid shape");
    let run = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        values(
            dropped
                .forward_train(input(), &mut rng)
                .expect("train forward"),
        )
    };
    assert_eq!(run(7), run(7));
    assert!(max_abs_diff(&run(7), &run(8)) > 1e-3);
    assert!(
        max_abs_diff(&run(7), &infer) > 1e-3,
        "dropout changes the output"
    );
}

#[test]
fn the_one_transformer_layer_equals_burns_encoder_bit_for_bit() {
    use burn::nn::transformer::TransformerEncoderInput;
    // Our layer serves every path; Burn's own encoder over the same weights is the
    // independent computation it must reproduce exactly (inference mode).
    let (sd, heads) = reference_prior();
    let tokens = reference_tokens(&vectors());
    for (name, device) in cpu_devices() {
        let prior = CodePrior::from_state_dict(&sd, heads, 0.3, &device).expect("loads");
        let x = Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [4, 144]), &device);
        let ours = logits_of(&prior, &tokens, 4, 144, &device);
        let embedded = prior.token_emb.forward(x)
            + (prior.pos_emb.weight.val().slice([0..144, 0..128])
                + prior.level_emb.weight.val().select(
                    0,
                    Tensor::<1, Int>::arange(0..144, &device).remainder_scalar(3),
                ))
            .unsqueeze::<3>();
        let mask = Tensor::<2, Bool>::tril_mask([144, 144], 0, &device)
            .unsqueeze::<3>()
            .expand([4, 144, 144]);
        let hidden = prior
            .transformer
            .forward(TransformerEncoderInput::new(embedded).mask_attn(mask));
        let burns = prior
            .head
            .forward(prior.ln_f.forward(hidden))
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32");
        assert_eq!(ours, burns, "{name}: our layer differs from Burn's encoder");
    }
}

#[test]
fn next_token_loss_is_the_mean_cross_entropy_and_checks_its_input() {
    let device = Device::flex();
    let prior = tiny(&device);
    let seqs: Vec<Vec<i64>> = (0..2)
        .map(|b| (0..24).map(|i| ((i * 3 + b) % 11) as i64).collect())
        .collect();
    let (loss, n) = prior.next_token_loss(&seqs, None).expect("valid");
    assert_eq!(n, 2 * 23);
    // By hand: −log softmax(logits)[next] averaged over every predicted position.
    let flat: Vec<i64> = seqs.iter().flat_map(|s| s[..23].to_vec()).collect();
    let logits = logits_of(&prior, &flat, 2, 23, &device);
    let mut total = 0.0f64;
    for b in 0..2 {
        for t in 0..23 {
            let row = &logits[(b * 23 + t) * 11..(b * 23 + t + 1) * 11];
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let lse = row
                .iter()
                .map(|v| f64::from(v - max).exp())
                .sum::<f64>()
                .ln()
                + f64::from(max);
            total += lse - f64::from(row[seqs[b][t + 1] as usize]);
        }
    }
    let expected = total / 46.0;
    let got = f64::from(loss.into_scalar::<f32>());
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    let err = prior
        .next_token_loss(&[vec![1, 2, 3], vec![1, 2]], None)
        .expect_err("unequal lengths");
    assert!(err.to_string().contains("unequal"), "{err}");
    assert!(
        prior.next_token_loss(&[vec![1]], None).is_err(),
        "too short"
    );
}
