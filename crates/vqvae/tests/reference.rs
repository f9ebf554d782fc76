//! The VQ-VAE against tensors computed by the reference system from the same weights.

use burn::prelude::*;
use vqvae::ConvVqvae;
use weights::{HostData, StateDict};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upstream-drums20")
        .join(name)
}

#[allow(deprecated)] // ndarray is deprecated in Burn 0.22 but still a supported backend here
fn cpu_devices() -> Vec<(&'static str, Device)> {
    vec![("ndarray", Device::ndarray()), ("flex", Device::flex())]
}

fn reference_state() -> StateDict {
    let bytes = std::fs::read(fixture("model.distill")).expect("fixture model present");
    let ckpt = weights::torch::load_checkpoint(&bytes).expect("reference checkpoint parses");
    weights::torch::state_dict(ckpt.get("model_state_dict").expect("vq state"), "vq")
        .expect("state dict")
}

fn vectors() -> StateDict {
    let bytes = std::fs::read(fixture("vectors.safetensors")).expect("fixture vectors present");
    weights::st::from_bytes(&bytes).expect("vectors parse").0
}

fn floats(v: &StateDict, name: &str) -> Vec<f32> {
    match &v[name].data {
        HostData::F32(x) => x.clone(),
        _ => panic!("{name} is not float"),
    }
}

fn tensor4(v: &StateDict, name: &str, device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(floats(v, name), v[name].shape.clone()),
        device,
    )
}

fn to_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32")
}

fn to_i64<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("i64")
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Codes must be identical except where the reference's two nearest distances tie within
/// 1e-5 (float noise may pick either); returns how many such near-ties differed.
fn assert_codes_match(got: &[i64], expected: &[i64], margins: &[f32], what: &str) -> usize {
    let mut tolerated = 0;
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        if g != e {
            assert!(
                margins[i] <= 1e-5,
                "{what}: code {i} differs ({g} vs {e}) with margin {}",
                margins[i]
            );
            tolerated += 1;
        }
    }
    tolerated
}

#[test]
fn encoder_codes_and_reconstructions_match_the_reference() {
    let sd = reference_state();
    let v = vectors();
    for (name, device) in cpu_devices() {
        let model = ConvVqvae::from_state_dict(&sd, 0.4, &device).expect("loads");
        let shape = model.shape();
        assert_eq!(
            (
                shape.codebook_size,
                shape.num_quantizers,
                shape.codebook_dim
            ),
            (64, 3, 128)
        );
        let mel = tensor4(&v, "chunk_mel", &device);

        let enc = to_f32(model.encode(mel.clone()));
        let diff = max_abs(&enc, &floats(&v, "encoder_out"));
        // Measured: 1.8e-6 (flex) and 2.1e-6 (ndarray).
        assert!(diff <= 2e-5, "{name}: encoder_out max |diff| = {diff}");

        // quantize() on the encoder output agrees with the full forward pass.
        let (_, q_idx, _) = model.quantize(model.encode(mel.clone()));
        let q_idx = to_i64(q_idx);

        let out = model.forward(mel);
        assert_eq!(out.grid, (8, 6));
        let idx = to_i64(out.indices);
        assert_eq!(idx, q_idx);
        let expected = v["chunk_indices"].to_i64("chunk_indices").expect("ints");
        let flips = assert_codes_match(&idx, &expected, &floats(&v, "chunk_code_margin"), name);
        assert_eq!(
            flips, 0,
            "{name}: no fixture code sits within 1e-5 of a tie"
        );

        let recon = to_f32(out.recon);
        let diff = max_abs(&recon, &floats(&v, "chunk_recon"));
        // Measured: 1.4e-6 (flex), 1.7e-6 (ndarray).
        assert!(diff <= 2e-5, "{name}: chunk_recon max |diff| = {diff}");

        let ref_idx = Tensor::<3, Int>::from_data(TensorData::new(expected, [4, 48, 3]), &device);
        let z = model
            .codes_to_embeddings(ref_idx, (8, 6))
            .expect("fits the grid");
        let diff = max_abs(&to_f32(z.clone()), &floats(&v, "chunk_quantized"));
        // Measured: exactly 0 (the same codebook rows are summed).
        assert!(diff <= 1e-6, "{name}: chunk_quantized max |diff| = {diff}");
        let decoded = to_f32(model.decode(z, (128, 94)));
        let diff = max_abs(&decoded, &floats(&v, "chunk_decoded"));
        // Measured: 1.4e-6 (flex), 1.7e-6 (ndarray).
        assert!(diff <= 2e-5, "{name}: chunk_decoded max |diff| = {diff}");

        // The 2 s excerpt through the fully convolutional path: 188 frames -> 8 x 12 grid.
        let (codes, grid) = model.codes(tensor4(&v, "mel", &device));
        assert_eq!(grid, (8, 12));
        let expected = v["mel_indices"].to_i64("mel_indices").expect("ints");
        assert_codes_match(
            &to_i64(codes),
            &expected,
            &floats(&v, "mel_code_margin"),
            name,
        );
        let recon = to_f32(model.forward(tensor4(&v, "mel", &device)).recon);
        let diff = max_abs(&recon, &floats(&v, "mel_recon"));
        // Measured: 6e-7 (flex), 1.1e-6 (ndarray).
        assert!(diff <= 1e-5, "{name}: mel_recon max |diff| = {diff}");
    }
}

#[test]
fn state_dict_round_trip_is_exact() {
    let sd = reference_state();
    let device = Device::flex();
    let model = ConvVqvae::from_state_dict(&sd, 0.4, &device).expect("loads");
    let out = model.to_state_dict().expect("exports");
    for (k, t) in &out {
        let orig = &sd[k];
        assert_eq!(t.shape, orig.shape, "{k}");
        assert_eq!(t.to_f32(), orig.to_f32(), "{k}");
    }
    // Everything but BatchNorm's step counters is carried.
    for k in sd.keys() {
        assert!(
            out.contains_key(k) || k.ends_with("num_batches_tracked"),
            "{k} not exported"
        );
    }
}

#[test]
fn bad_codes_are_errors() {
    let sd = reference_state();
    let device = Device::flex();
    let model = ConvVqvae::from_state_dict(&sd, 0.4, &device).expect("loads");
    let too_big = Tensor::<3, Int>::full([1, 48, 3], 64, &device);
    let err = model
        .codes_to_embeddings(too_big, (8, 6))
        .expect_err("code 64 of a 64-code book");
    assert!(
        err.to_string().contains("code values must be in 0..64"),
        "{err}"
    );
    let wrong_grid = Tensor::<3, Int>::zeros([1, 47, 3], &device);
    let err = model
        .codes_to_embeddings(wrong_grid, (8, 6))
        .expect_err("47 positions for an 8x6 grid");
    assert!(
        err.to_string()
            .contains("codes of shape [1, 47, 3] do not fit a 8x6 grid"),
        "{err}"
    );
    let mut broken = sd.clone();
    broken.remove("decoder.proj.weight");
    let err = ConvVqvae::from_state_dict(&broken, 0.4, &device).expect_err("missing tensor");
    assert!(err.to_string().contains("decoder.proj.weight"), "{err}");
}
