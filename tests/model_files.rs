//! Model files: both formats load, round-trip, and every corruption is an error, not a panic.

use std::path::Path;

use crate::util::fixture_model;
use pipeline::modelfile::{ModelFile, ModelOrigin};

#[test]
fn reference_and_own_format_round_trip() {
    let path = fixture_model();
    let reference = ModelFile::load(&path).expect("reference loads");
    assert_eq!(reference.origin, ModelOrigin::Reference);
    assert!(reference.has_prior());
    let bytes = reference.to_bytes().expect("serialises");
    assert_eq!(
        bytes,
        reference.to_bytes().expect("again"),
        "deterministic bytes"
    );
    let ours = ModelFile::from_bytes(&bytes, Path::new("mem.distill")).expect("ours loads");
    assert_eq!(ours.origin, ModelOrigin::Distill);
    assert_eq!(ours.vqvae, reference.vqvae);
    assert_eq!(ours.prior, reference.prior);
    assert_eq!(ours.vqvae_config, reference.vqvae_config);
    assert_eq!(ours.prior_config, reference.prior_config);
    assert_eq!(ours.spectrogram_config, reference.spectrogram_config);
    assert_eq!(ours.metadata, reference.metadata);
    assert_eq!(ours.extra, reference.extra);
}

fn corruptions(good: &[u8], seed: u64, flips: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Truncations at many lengths, including inside the header and the data.
    for i in 0..40 {
        let n = good.len() * i / 40;
        out.push(good[..n].to_vec());
    }
    for n in [1, 7, 8, 9, 30, 100] {
        out.push(good[..n.min(good.len())].to_vec());
    }
    let mut s = seed;
    for _ in 0..flips {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut bad = good.to_vec();
        let i = (s >> 17) as usize % bad.len();
        bad[i] ^= 1 << ((s >> 7) % 8);
        out.push(bad);
    }
    out
}

#[test]
fn corrupted_files_are_errors_never_panics() {
    let path = fixture_model();
    let reference_bytes = std::fs::read(&path).expect("fixture");
    let ours = ModelFile::load(&path)
        .expect("loads")
        .to_bytes()
        .expect("serialises");
    let mut accepted = 0;
    for (good, label) in [(&reference_bytes, "reference"), (&ours, "ours")] {
        let original = ModelFile::from_bytes(good, Path::new("good.distill")).expect("loads");
        for (i, bad) in corruptions(good, 9, 300).iter().enumerate() {
            if bad == good {
                continue;
            }
            match ModelFile::from_bytes(bad, Path::new("bad.distill")) {
                Ok(loaded) => {
                    // A flip that is not caught must be one that changes nothing loaded.
                    assert_eq!(loaded.vqvae, original.vqvae, "{label} #{i}: VQ-VAE tensors");
                    assert_eq!(loaded.prior, original.prior, "{label} #{i}: prior tensors");
                    assert_eq!(loaded.vqvae_config, original.vqvae_config, "{label} #{i}");
                    assert_eq!(loaded.prior_config, original.prior_config, "{label} #{i}");
                    assert_eq!(
                        loaded.spectrogram_config, original.spectrogram_config,
                        "{label} #{i}"
                    );
                    assert_eq!(loaded.metadata, original.metadata, "{label} #{i}");
                    assert_eq!(loaded.sections, original.sections, "{label} #{i}");
                    assert_eq!(loaded.extra, original.extra, "{label} #{i}");
                    accepted += 1;
                }
                Err(e) => assert!(
                    e.to_string().starts_with("bad.distill: "),
                    "{label} #{i}: {e}"
                ),
            }
        }
    }
    // Zip entries carry CRCs and our files a checksum, so a flipped bit is always caught,
    // except in the few bytes neither covers (zip comments, padding, unused header fields).
    assert!(accepted <= 20, "{accepted} corrupted files loaded");
}

#[test]
fn info_describes_models_of_any_shape() {
    use burn::prelude::{Device, Module};
    use prior_model::{CodePrior, PriorShape};
    use vqvae::{ConvVqvae, VqvaeShape};
    let device = Device::flex();
    let dir = tempfile::tempdir().expect("temp dir");
    for (levels, k, hidden, layers, heads) in
        [(2, 16, 48, 1, 3), (4, 300, 64, 3, 8), (3, 64, 32, 2, 4)]
    {
        let vq = ConvVqvae::new(
            VqvaeShape {
                codebook_dim: 32,
                codebook_size: k,
                num_quantizers: levels,
                dropout: 0.0,
            },
            &device,
        )
        .expect("vq");
        let seq_len = 8 * 6 * levels;
        let prior = CodePrior::new(
            PriorShape {
                codebook_size: k,
                seq_len,
                num_quantizers: levels,
                hidden_size: hidden,
                num_layers: layers,
                num_heads: heads,
                dropout: 0.1,
                rows: 0,
            },
            &device,
        )
        .expect("prior");
        let mut prior_cfg = prior_config::PriorConfig {
            hidden_size: hidden,
            num_layers: layers,
            num_heads: heads,
            ..Default::default()
        };
        prior_cfg.seq_len = Some(seq_len);
        prior_cfg.num_quantizers = Some(levels);
        let mut model = ModelFile::new(
            vqvae::VqvaeConfig {
                codebook_dim: 32,
                codebook_size: k,
                num_quantizers: levels,
                ..Default::default()
            },
            audio::SpectrogramConfig::default(),
            vq.to_state_dict().expect("vq state"),
        );
        model.prior_config = Some(prior_cfg);
        model.prior = Some(prior.to_state_dict().expect("prior state"));
        let path = dir.path().join(format!("m{levels}.distill"));
        model.save(&path).expect("save");
        let loaded = ModelFile::load(&path).expect("load");
        let r = pipeline::modelfile::describe(&loaded, &path).expect("report");
        assert_eq!(r["prior"]["num_quantizers"], levels);
        assert_eq!(r["prior"]["codebook_size"], k);
        assert_eq!(r["prior"]["hidden_size"], hidden);
        assert_eq!(r["prior"]["num_layers"], layers);
        assert_eq!(r["prior"]["num_heads"], heads);
        assert_eq!(r["prior"]["seq_len"], seq_len);
        assert_eq!(r["parameters"]["prior"], prior.num_params());
        // The models rebuild from the file with the same shapes.
        let vq2 = pipeline::models::vqvae(&loaded, &device).expect("vq rebuilds");
        assert_eq!(vq2.shape().num_quantizers, levels);
        assert_eq!(vq2.shape().codebook_size, k);
        pipeline::models::prior(&loaded, &device).expect("prior rebuilds");
    }
}

/// The prior's next-token cross-entropy as `distill evaluate` computes it equals the
/// reference's own `prior_nll` on the fixture sequences.
#[test]
fn prior_nll_matches_the_reference() {
    use burn::prelude::Device;
    let device = Device::flex();
    let model = ModelFile::load(&fixture_model()).expect("loads");
    let prior = pipeline::models::prior(&model, &device).expect("prior");
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/upstream-drums20/vectors.safetensors"),
    )
    .expect("vectors");
    let (t, _) = weights::st::from_bytes(&bytes).expect("parse");
    let tokens = t["prior_tokens"].to_i64("prior_tokens").expect("ints");
    let expected = t["prior_nll"].to_f32();
    for (i, seq) in tokens.chunks(144).enumerate() {
        let nll =
            pipeline::evaluate::prior_cross_entropy(&prior, &[seq.to_vec()], 1).expect("evaluates");
        let rel = (nll - f64::from(expected[i])).abs() / f64::from(expected[i]);
        assert!(
            rel <= 1e-3,
            "sequence {i}: {nll} vs reference {}",
            expected[i]
        );
    }
}

#[test]
fn fixtures_are_the_files_their_provenance_names() {
    use sha2::{Digest, Sha256};
    // The upstream fixture's hashes are those its vectors.json recorded when it was made.
    let dir = crate::util::root().join("tests/fixtures");
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).expect("SHA256SUMS");
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (want, name) = line.split_once("  ").expect("`<sha256>  <path>` lines");
        let bytes = std::fs::read(dir.join(name)).expect("fixture present");
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want, "{name} changed");
        checked += 1;
    }
    assert_eq!(checked, 7, "every fixture file is listed");
}
