//! Reading the reference system's PyTorch model files (`torch.save` of a dictionary).

use std::collections::BTreeMap;
use std::path::Path;

use prior_config::PriorConfig;
use serde_json::Value as Json;
use weights::pickle::Value;

use super::{Metadata, ModelFile, ModelFileError, ModelOrigin, Sections, invalid, parse_config};

pub(super) fn load(bytes: &[u8], path: &Path) -> Result<ModelFile, ModelFileError> {
    let weights_err = |source| ModelFileError::Weights {
        path: path.to_path_buf(),
        source,
    };
    let root = weights::torch::load_checkpoint(bytes).map_err(weights_err)?;
    if root.get("format").and_then(Value::as_str) != Some("distill_model") {
        return Err(invalid(
            path,
            "PyTorch file without the Distill model marker",
        ));
    }
    let version = root.get("version").and_then(Value::as_i64).unwrap_or(0);
    if version < 2 || root.get("model_type").and_then(Value::as_str) != Some("vqvae") {
        return Err(invalid(
            path,
            format!(
                "reference model version {version} is not a v2 VQ-VAE model (v1 continuous VAEs are not supported)"
            ),
        ));
    }
    let section = |key: &str| -> Result<&Value, ModelFileError> {
        root.get(key)
            .ok_or_else(|| invalid(path, format!("missing '{key}'")))
    };
    let vqvae = weights::torch::state_dict(section("model_state_dict")?, "model_state_dict")
        .map_err(weights_err)?;
    let vqvae_config = parse_config(path, "vqvae_config", to_json(section("vqvae_config")?))?;
    let spectrogram_config = parse_config(
        path,
        "spectrogram_config",
        to_json(section("spectrogram_config")?),
    )?;
    let has_prior = matches!(root.get("has_prior"), Some(Value::Bool(true)));
    let (prior, prior_config) = if has_prior {
        let sd = weights::torch::state_dict(section("prior_state_dict")?, "prior_state_dict")
            .map_err(weights_err)?;
        let cfg: PriorConfig =
            parse_config(path, "prior_config", to_json(section("prior_config")?))?;
        (Some(sd), Some(cfg))
    } else {
        (None, None)
    };
    let metadata = match root.get("metadata").map(to_json) {
        Some(Json::Object(m)) => Metadata::from_map(m),
        _ => Metadata::default(),
    };
    let mut extra = BTreeMap::new();
    if let Value::Dict(items) = &root {
        for (k, v) in items {
            let Value::Str(k) = k else { continue };
            let skip = [
                "format",
                "version",
                "model_type",
                "has_prior",
                "model_state_dict",
                "prior_state_dict",
                "vqvae_config",
                "spectrogram_config",
                "prior_config",
                "metadata",
            ];
            if !skip.contains(&k.as_str()) {
                extra.insert(k.clone(), to_json(v));
            }
        }
    }
    // Sections of an unexpected shape stay as they are in `extra`.
    let sections = Sections::take_from(&mut extra, false).map_err(|m| invalid(path, m))?;
    Ok(ModelFile {
        origin: ModelOrigin::Reference,
        vqvae_config,
        spectrogram_config,
        prior_config,
        metadata,
        sections,
        extra,
        vqvae,
        prior,
    })
}

/// Plain pickle data as JSON; tensors and foreign objects (which configs never hold)
/// become `null`, non-finite floats too (JSON has no NaN).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s.clone()),
        Value::List(items) | Value::Tuple(items) => {
            Json::Array(items.iter().map(to_json).collect())
        }
        Value::Dict(items) => Json::Object(
            items
                .iter()
                .filter_map(|(k, v)| {
                    let key = match k {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        _ => return None,
                    };
                    Some((key, to_json(v)))
                })
                .collect(),
        ),
        _ => Json::Null,
    }
}
