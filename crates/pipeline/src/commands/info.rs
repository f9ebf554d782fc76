//! `distill info`: what a model file holds.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value as Json;

use crate::modelfile::{ModelFile, describe};

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Model file (Distill format or a reference-system .distill file).
    pub model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
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
    let levels = |v: &Json| match v.as_u64() {
        Some(n) => crate::codes::levels_text(n as usize),
        None => format!("{} levels", s(v)),
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
            "VQ-VAE      {} x {} codes per second, {} x {} codes x {} dims, {} parameters (+{} buffer values)",
            s(&r["code_grid"]["rows"]),
            s(&r["code_grid"]["columns_per_second"]),
            levels(&vq["num_quantizers"]),
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
                "Prior       hidden {}, {} layers, {} heads, context {} tokens ({}, {} codes), {} parameters",
                s(&p["hidden_size"]),
                s(&p["num_layers"]),
                s(&p["num_heads"]),
                s(&p["seq_len"]),
                levels(&p["num_quantizers"]),
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
    let r = describe(&model, &args.model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!("{}", text(&r));
    }
    Ok(ExitCode::SUCCESS)
}
