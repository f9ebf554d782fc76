//! The effective training configuration: the dataset-size tier, then a TOML file, then
//! single overrides (command-line flags or the web app's fields).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use prior_config::{PriorConfig, get_adaptive_prior_config, native_prior_config};
use serde_json::Value as Json;
use vqvae::{VqvaeConfig, get_adaptive_vqvae_config, native_vqvae_config};

/// Which family of defaults a run starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Distill's own codec and training settings (see `native_vqvae_config`).
    #[default]
    Native,
    /// The original system's: its model shape and tiers, per-chunk levels.
    Reference,
}

/// Overrides of the automatic configuration; `None` keeps the tier's value.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConfigOverrides {
    /// The defaults to start from.
    pub preset: Preset,
    /// TOML file with `[vqvae]` and/or `[prior]` sections (fields as in `distill info --json`).
    pub config_file: Option<PathBuf>,
    /// Epochs of both stages.
    pub epochs: Option<usize>,
    /// Learning rate of both stages.
    pub lr: Option<f64>,
    /// Batch size of both stages.
    pub batch_size: Option<usize>,
    pub codebook_size: Option<usize>,
    pub rvq_levels: Option<usize>,
    pub commitment_weight: Option<f64>,
    pub hidden_size: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
}

/// VQ-VAE settings of the reference's config that Distill accepts (so reference files and
/// `info --json` output load) but does not use, with the reason given to the user.
const VQVAE_UNUSED: &[(&str, &str)] = &[
    (
        "kmeans_init",
        "codebooks are always initialised by k-means (set kmeans_iters)",
    ),
    (
        "augmentation_expansion",
        "each chunk is augmented afresh every epoch",
    ),
    (
        "checkpoint_interval",
        "a checkpoint is written after every epoch",
    ),
    ("max_checkpoints", "only the last checkpoint is kept"),
    ("preview_interval", "use --preview-every"),
    ("device", "use --backend"),
    ("num_workers", "data is loaded once before training"),
];

/// Prior settings accepted but not used, likewise.
const PRIOR_UNUSED: &[(&str, &str)] = &[
    ("device", "use --backend"),
    (
        "val_fraction",
        "the prior is validated on the VQ-VAE's validation files",
    ),
    ("seq_len", "the context follows the VQ-VAE's code grid"),
    ("num_quantizers", "the levels follow the VQ-VAE"),
];

/// Settings that a config leaves out of its serialised form while unset (so that reference
/// files round-trip unchanged) but that a TOML file may still give.
const VQVAE_OPTIONAL: &[&str] = &["max_steps", "quantizer_dropout"];
const PRIOR_OPTIONAL: &[&str] = &[
    "max_steps",
    "trim_padding",
    "balance_files",
    "augment_speeds",
    "patience",
    "weight_average",
    "row_embedding",
    "seq_len",
    "num_quantizers",
];

/// Overlays the keys of a TOML table on a config (unknown keys are an error; keys Distill
/// does not use are reported through `warn`).
fn overlay<T: serde::Serialize + serde::de::DeserializeOwned>(
    base: &T,
    table: Option<&toml::Value>,
    what: &str,
    (unused, optional): (&[(&str, &str)], &[&str]),
    path: &Path,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<T> {
    let Some(table) = table else {
        return Ok(serde_json::from_value(serde_json::to_value(base)?)?);
    };
    let base_json = serde_json::to_value(base)?;
    let mut merged = base_json.clone();
    let overrides = serde_json::to_value(table)?;
    let (Json::Object(m), Json::Object(o)) = (&mut merged, overrides) else {
        bail!("{}: [{what}] must be a table", path.display());
    };
    for (k, v) in o.clone() {
        if !m.contains_key(&k) && !optional.contains(&k.as_str()) {
            bail!("{}: unknown {what} setting '{k}'", path.display());
        }
        if let Some((_, why)) = unused.iter().find(|(name, _)| *name == k) {
            warn(format!(
                "{}: [{what}] {k} is not used by Distill and is ignored ({why})",
                path.display()
            ));
        }
        m.insert(k, v);
    }
    serde_json::from_value(merged).map_err(|e| {
        // serde names the type, not the key: find the setting that does not fit on its own.
        let culprit = o.iter().find(|(k, v)| {
            let mut single = base_json.clone();
            if let Json::Object(m) = &mut single {
                m.insert((*k).clone(), (*v).clone());
            }
            serde_json::from_value::<T>(single).is_err()
        });
        match culprit {
            Some((k, _)) => anyhow::anyhow!("{}: [{what}] {k}: {e}", path.display()),
            None => anyhow::anyhow!("{}: [{what}]: {e}", path.display()),
        }
    })
}

/// The effective configuration for a collection of `file_count` usable files that cut into
/// `chunks` one-second chunks.
pub fn resolve(
    o: &ConfigOverrides,
    file_count: usize,
    chunks: usize,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<(VqvaeConfig, PriorConfig)> {
    let (mut vq, mut pr) = match o.preset {
        Preset::Native => (
            native_vqvae_config(file_count, chunks),
            native_prior_config(file_count, chunks),
        ),
        Preset::Reference => (
            get_adaptive_vqvae_config(file_count),
            get_adaptive_prior_config(file_count),
        ),
    };
    if let Some(path) = &o.config_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(t) = doc.as_table()
            && let Some(bad) = t.keys().find(|k| *k != "vqvae" && *k != "prior")
        {
            bail!(
                "{}: unknown section '{bad}' (expected [vqvae] and/or [prior])",
                path.display()
            );
        }
        let sets = |section: &str, key: &str| doc.get(section).and_then(|t| t.get(key)).is_some();
        let vq_epochs = sets("vqvae", "max_epochs") && !sets("vqvae", "max_steps");
        let pr_epochs = sets("prior", "max_epochs") && !sets("prior", "max_steps");
        let vq_keys = (VQVAE_UNUSED, VQVAE_OPTIONAL);
        vq = overlay(&vq, doc.get("vqvae"), "vqvae", vq_keys, path, warn)?;
        pr = overlay(
            &pr,
            doc.get("prior"),
            "prior",
            (PRIOR_UNUSED, PRIOR_OPTIONAL),
            path,
            warn,
        )?;
        // Epochs asked for by name are trained in full: the tier's step budget no longer applies.
        if vq_epochs {
            vq.max_steps = None;
        }
        if pr_epochs {
            pr.max_steps = None;
        }
        if vq.chunk_duration_s != 1.0 {
            bail!(
                "{}: [vqvae] chunk_duration_s must be 1.0 (models work on 1 s chunks), got {}",
                path.display(),
                vq.chunk_duration_s
            );
        }
        // The prior's context and levels always come from the VQ-VAE.
        pr.seq_len = None;
        pr.num_quantizers = None;
    }
    if let Some(e) = o.epochs {
        // Exactly `e` epochs: no step budget, no stop on a plateau.
        vq.max_epochs = e;
        pr.max_epochs = e;
        vq.max_steps = None;
        pr.max_steps = None;
        pr.patience = None;
    }
    if let Some(lr) = o.lr {
        vq.learning_rate = lr;
        pr.learning_rate = lr;
    }
    if let Some(b) = o.batch_size {
        vq.batch_size = b;
        pr.batch_size = b;
    }
    if let Some(k) = o.codebook_size {
        vq.codebook_size = k;
    }
    if let Some(q) = o.rvq_levels {
        vq.num_quantizers = q;
    }
    if let Some(w) = o.commitment_weight {
        vq.commitment_weight = w;
    }
    if let Some(h) = o.hidden_size {
        pr.hidden_size = h;
    }
    if let Some(l) = o.layers {
        pr.num_layers = l;
    }
    if let Some(h) = o.heads {
        pr.num_heads = h;
    }
    vq.validate()
        .map_err(|e| anyhow::anyhow!("VQ-VAE config: {e}"))?;
    pr.validate()?;
    Ok((vq, pr))
}
