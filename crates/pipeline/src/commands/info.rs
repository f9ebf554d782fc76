//! `distill info`: what a model file holds.

use std::process::ExitCode;

use serde_json::{Value as Json, json};

use crate::cli::InfoArgs;
use crate::modelfile::{ModelFile, ModelOrigin, parameter_count};

/// The JSON report; text output is rendered from the same object so both always agree.
pub fn report(model: &ModelFile, path: &std::path::Path) -> anyhow::Result<Json> {
    let vq_params = parameter_count(&model.vqvae);
    let vq_values: usize = model.vqvae.values().map(|t| t.numel()).sum();
    let prior = match (&model.prior, &model.prior_config) {
        (Some(sd), Some(cfg)) => {
            let shape = prior_model::infer_shape(sd, cfg.num_heads, cfg.dropout)
                .map_err(|e| anyhow::anyhow!("{}: prior: {e}", path.display()))?;
            Some(json!({
                "parameters": parameter_count(sd),
                "codebook_size": shape.codebook_size,
                "seq_len": shape.seq_len,
                "num_quantizers": shape.num_quantizers,
                "hidden_size": shape.hidden_size,
                "num_layers": shape.num_layers,
                "num_heads": shape.num_heads,
            }))
        }
        _ => None,
    };
    let mut out = json!({
        "path": path.display().to_string(),
        "format": match model.origin {
            ModelOrigin::Reference => "reference-pytorch",
            ModelOrigin::Distill => "distill-safetensors",
        },
        "has_prior": model.has_prior(),
        "vqvae_config": model.vqvae_config,
        "prior_config": model.prior_config,
        "spectrogram_config": model.spectrogram_config,
        "parameters": {
            "vqvae": vq_params,
            "vqvae_buffers": vq_values - vq_params,
            "prior": prior.as_ref().map(|p| p["parameters"].clone()),
        },
        "prior": prior,
        "metadata": model.metadata,
    });
    if let Json::Object(o) = &mut out {
        for (k, v) in &model.extra {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Ok(out)
}

fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn text(r: &Json) -> String {
    let num = |v: &Json| v.as_u64().map(fmt_count).unwrap_or_else(|| "?".into());
    let s = |v: &Json| match v {
        Json::String(s) => s.clone(),
        Json::Null => "-".into(),
        other => other.to_string(),
    };
    let f = |v: &Json| {
        v.as_f64()
            .map(|x| format!("{x:.4}"))
            .unwrap_or_else(|| "-".into())
    };
    let vq = &r["vqvae_config"];
    let sp = &r["spectrogram_config"];
    let md = &r["metadata"];
    let mut lines = vec![
        format!("Model       {} ({})", s(&r["path"]), s(&r["format"])),
        format!(
            "            name {}, id {}, dataset {} ({} files)",
            s(&md["name"]),
            s(&md["model_id"]),
            s(&md["dataset_name"]),
            s(&md["dataset_file_count"])
        ),
        format!(
            "Spectrogram {} Hz, n_fft {}, hop {}, {} mels (log1p power, HTK)",
            s(&sp["sample_rate"]),
            s(&sp["n_fft"]),
            s(&sp["hop_length"]),
            s(&sp["n_mels"])
        ),
        format!(
            "VQ-VAE      {} levels x {} codes x {} dims, {} parameters (+{} buffer values)",
            s(&vq["num_quantizers"]),
            s(&vq["codebook_size"]),
            s(&vq["codebook_dim"]),
            num(&r["parameters"]["vqvae"]),
            num(&r["parameters"]["vqvae_buffers"])
        ),
        format!(
            "            trained {} epochs, final train/val loss {} / {}",
            s(&md["training_epochs"]),
            f(&md["final_train_loss"]),
            f(&md["final_val_loss"])
        ),
    ];
    if let Json::Object(health) = &r["codebook_health_snapshot"] {
        for (level, h) in health {
            lines.push(format!(
                "            {level}: utilisation {:.1}%, perplexity {:.2}, dead codes {}",
                h["utilization"].as_f64().unwrap_or(0.0) * 100.0,
                h["perplexity"].as_f64().unwrap_or(0.0),
                s(&h["dead_codes"])
            ));
        }
    }
    match &r["prior"] {
        Json::Null => {
            lines.push("Prior       none (train one with `distill train --stage prior`)".into())
        }
        p => {
            lines.push(format!(
                "Prior       hidden {}, {} layers, {} heads, context {} tokens ({} levels, {} codes), {} parameters",
                s(&p["hidden_size"]),
                s(&p["num_layers"]),
                s(&p["num_heads"]),
                s(&p["seq_len"]),
                s(&p["num_quantizers"]),
                s(&p["codebook_size"]),
                num(&p["parameters"])
            ));
            let pm = &r["prior_metadata"];
            if !pm.is_null() {
                lines.push(format!(
                    "            trained {} epochs, best validation perplexity {}",
                    s(&pm["epochs_trained"]),
                    f(&pm["best_perplexity"])
                ));
            }
        }
    }
    lines.join("\n")
}

pub fn run(args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let model = ModelFile::load(&args.model)?;
    let r = report(&model, &args.model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{}", text(&r));
    }
    Ok(ExitCode::SUCCESS)
}
