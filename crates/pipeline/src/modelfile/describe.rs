//! What a model file holds, as one JSON object (`distill info --json`, the web app's
//! library); the text view is rendered from the same object so both always agree.

use std::path::Path;

use serde_json::{Value as Json, json};

use super::{ModelFile, ModelOrigin, parameter_count};

/// The JSON report; text output is rendered from the same object so both always agree.
pub fn describe(model: &ModelFile, path: &Path) -> anyhow::Result<Json> {
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
    let (rows, columns) = model
        .vqvae_config
        .grid_per_second(&model.spectrogram_config);
    let levels = model.vqvae_config.num_quantizers;
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
        "code_grid": {
            "rows": rows,
            "columns_per_second": columns,
            "levels": levels,
            "tokens_per_second": rows * columns * levels,
        },
        "metadata": model.metadata.to_map(),
    });
    if let Json::Object(o) = &mut out {
        for (k, v) in model.header_sections() {
            o.entry(k).or_insert(v);
        }
    }
    Ok(out)
}
