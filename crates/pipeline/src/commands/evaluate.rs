//! `distill evaluate`: how well a model fits a folder of sounds.

use std::process::ExitCode;

use anyhow::{Context, bail};
use audio::mel::MelSpectrogram;
use burn::prelude::*;
use serde_json::json;

use crate::cli::EvaluateArgs;
use crate::modelfile::ModelFile;
use crate::train::{TIME_MAJOR, data, prior, vq};

pub fn run(args: &EvaluateArgs, device: &Device) -> anyhow::Result<ExitCode> {
    let model = ModelFile::load(&args.model)?;
    let report = audio::scan::scan_dataset(&args.data)
        .with_context(|| format!("scanning {}", args.data.display()))?;
    let files: Vec<_> = report.usable().map(|f| f.path.clone()).collect();
    if files.is_empty() {
        bail!("{}: no usable audio files", args.data.display());
    }
    let mut chunks: Vec<data::Chunk> = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let x = audio::load_48k(path)?;
        chunks.extend(
            audio::chunk::chunk_signal(&x, audio::chunk::CHUNK_SAMPLES)
                .into_iter()
                .map(|samples| data::Chunk { file: i, samples }),
        );
    }
    let refs: Vec<&[f32]> = chunks.iter().map(|c| c.samples.as_slice()).collect();
    let mel = MelSpectrogram::new(model.spectrogram_config.clone());
    let vq_model = crate::models::vqvae(&model, device)?;
    let (recon_loss, health, _) = vq::evaluate(&vq_model, &refs, &mel, 16, device);
    let mut out = json!({
        "model": args.model.display().to_string(),
        "data": args.data.display().to_string(),
        "files": files.len(),
        "chunks": chunks.len(),
        "vqvae": {"reconstruction_loss": recon_loss, "codebook_health": health},
        "prior": null,
    });
    if model.prior.is_some() {
        let p = crate::models::prior(&model, device)?;
        let (codes, grid) = prior::extract_code_sequences(&vq_model, &refs, &mel, 16, device);
        let time_major =
            model.extra.get("token_order").and_then(|v| v.as_str()) == Some(TIME_MAJOR);
        let seqs: Vec<Vec<i64>> = if time_major {
            let g = prior::GridGeometry {
                rows: grid.0,
                steps_per_chunk: grid.1,
                levels: vq_model.shape().num_quantizers,
            };
            let mut all = Vec::new();
            for f in 0..files.len() {
                let mine: Vec<&Vec<i64>> = chunks
                    .iter()
                    .zip(&codes)
                    .filter(|(c, _)| c.file == f)
                    .map(|(_, k)| k)
                    .collect();
                // Back-to-back windows, each token scored once (as training's validation).
                all.extend(prior::windows(
                    &prior::time_major_stream(&mine, &g),
                    p.shape().seq_len,
                    p.shape().seq_len,
                ));
            }
            all
        } else {
            // Reference priors: one raster-order sequence per chunk (position-major, levels
            // interleaved), first token not scored — as the reference's validation.
            codes
        };
        if seqs.iter().any(|s| s.len() != p.shape().seq_len) {
            bail!(
                "{}: the prior's context ({} tokens) does not match the VQ-VAE's code grid",
                args.model.display(),
                p.shape().seq_len
            );
        }
        let nll = prior::evaluate(&p, &seqs, 16, device)?;
        out["prior"] = json!({
            "token_order": if time_major { "time_major" } else { "raster" },
            "sequences": seqs.len(),
            "cross_entropy_nats": nll,
            "perplexity": nll.exp(),
            "bits_per_token": nll / std::f64::consts::LN_2,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{} files, {} one-second chunks", files.len(), chunks.len());
        println!("VQ-VAE reconstruction loss (multi-scale log-mel MSE): {recon_loss:.4}");
        for (q, h) in health.iter().enumerate() {
            println!(
                "  level {q}: utilisation {:.1}%, perplexity {:.2}, dead codes {}",
                h.utilization * 100.0,
                h.perplexity,
                h.dead_codes
            );
        }
        match &out["prior"] {
            serde_json::Value::Null => println!("no prior"),
            p => println!(
                "prior ({}): cross-entropy {:.4} nats/token, perplexity {:.2}, {:.3} bits/token over {} sequences",
                p["token_order"].as_str().unwrap_or_default(),
                p["cross_entropy_nats"].as_f64().unwrap_or(0.0),
                p["perplexity"].as_f64().unwrap_or(0.0),
                p["bits_per_token"].as_f64().unwrap_or(0.0),
                p["sequences"]
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}
