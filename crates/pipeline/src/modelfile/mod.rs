//! `.distill` model files: ours (safetensors) and the reference system's (PyTorch zip).
//!
//! Our format is one safetensors container: VQ-VAE tensors under `vqvae.`, prior tensors
//! under `prior.` (both with the reference system's names and layouts, so the same loaders
//! serve both formats), and configs and metadata as JSON strings in the header metadata.
//! Files are told apart by their first bytes, never by extension.
//!
//! [`ModelFile`] is the typed schema of both: configs, [`Metadata`], the typed optional
//! [`Sections`] (token order, first-token distribution, codebook health, training records)
//! and, in `extra`, only what Distill does not interpret (entries of reference files).

mod describe;
mod reference;
pub mod sections;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use audio::SpectrogramConfig;
use prior_config::PriorConfig;
use prior_model::TokenOrder;
use serde_json::Value as Json;
use vqvae::VqvaeConfig;
use weights::{StateDict, WeightsError};

pub use describe::describe;
pub use sections::{
    CodebookHealth, DataSummary, EpochMetrics, EpochRecord, Metadata, PriorTraining, Sections,
    VqvaeTraining,
};

/// Identifies our container in its metadata.
pub const FORMAT_NAME: &str = "distill";
pub const FORMAT_VERSION: u32 = 1;

const VQVAE_PREFIX: &str = "vqvae.";
/// CRC-32 over tensor names, shapes, values and the other metadata: safetensors has no
/// checksum of its own, and a flipped bit in the weights must not load silently.
const CHECKSUM_KEY: &str = "crc32";
const PRIOR_PREFIX: &str = "prior.";

#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: not a Distill model (expected a Distill safetensors file or a reference-system PyTorch .distill file)"
    )]
    Unrecognised { path: PathBuf },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Weights {
        path: PathBuf,
        #[source]
        source: WeightsError,
    },
}

/// Where a model file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelOrigin {
    /// The original Python Distill (`torch.save` pickle).
    Reference,
    /// Written by this program.
    Distill,
}

/// Everything a model file holds, independent of its container format.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub origin: ModelOrigin,
    pub vqvae_config: VqvaeConfig,
    pub spectrogram_config: SpectrogramConfig,
    pub prior_config: Option<PriorConfig>,
    pub metadata: Metadata,
    pub sections: Sections,
    /// Header entries Distill does not interpret (a reference file's loss curves, say).
    pub extra: BTreeMap<String, Json>,
    pub vqvae: StateDict,
    pub prior: Option<StateDict>,
}

impl ModelFile {
    /// A new model of ours around trained VQ-VAE weights.
    pub fn new(
        vqvae_config: VqvaeConfig,
        spectrogram_config: SpectrogramConfig,
        vqvae: StateDict,
    ) -> Self {
        Self {
            origin: ModelOrigin::Distill,
            vqvae_config,
            spectrogram_config,
            prior_config: None,
            metadata: Metadata::default(),
            sections: Sections::default(),
            extra: BTreeMap::new(),
            vqvae,
            prior: None,
        }
    }

    pub fn has_prior(&self) -> bool {
        self.prior.is_some()
    }

    /// The prior's token order: reference-system files, which do not record one, are raster.
    pub fn token_order(&self) -> TokenOrder {
        self.sections.token_order.unwrap_or(TokenOrder::Raster)
    }

    /// Every header section beyond the configs, by key: the typed ones and `extra`.
    pub fn header_sections(&self) -> BTreeMap<String, Json> {
        let mut out = self.extra.clone();
        out.extend(self.sections.to_json());
        out
    }

    /// Reads either format, deciding by content.
    pub fn load(path: &Path) -> Result<Self, ModelFileError> {
        let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, ModelFileError> {
        if weights::torch::looks_like_torch_zip(bytes) {
            reference::load(bytes, path)
        } else if weights::st::looks_like_safetensors(bytes) {
            from_ours(bytes, path)
        } else {
            Err(ModelFileError::Unrecognised {
                path: path.to_path_buf(),
            })
        }
    }

    /// Serialises in our format.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WeightsError> {
        let mut tensors = StateDict::new();
        for (k, v) in &self.vqvae {
            tensors.insert(format!("{VQVAE_PREFIX}{k}"), v.clone());
        }
        for (k, v) in self.prior.iter().flatten() {
            tensors.insert(format!("{PRIOR_PREFIX}{k}"), v.clone());
        }
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), FORMAT_NAME.to_string());
        meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        meta.insert("vqvae_config".into(), json_string(&self.vqvae_config));
        meta.insert(
            "spectrogram_config".into(),
            json_string(&self.spectrogram_config),
        );
        if let Some(p) = &self.prior_config {
            meta.insert("prior_config".into(), json_string(p));
        }
        meta.insert(
            "metadata".into(),
            Json::Object(self.metadata.to_map()).to_string(),
        );
        for (k, v) in self.header_sections() {
            meta.insert(k, v.to_string());
        }
        meta.insert(
            CHECKSUM_KEY.into(),
            format!("{:08x}", checksum(&tensors, &meta)),
        );
        weights::st::to_bytes(&tensors, &meta)
    }

    /// Writes our format atomically (temporary file + rename).
    pub fn save(&self, path: &Path) -> Result<(), ModelFileError> {
        let bytes = self.to_bytes().map_err(|source| ModelFileError::Weights {
            path: path.to_path_buf(),
            source,
        })?;
        crate::fsutil::atomic_write(path, &bytes).map_err(|source| ModelFileError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn checksum(tensors: &StateDict, meta: &BTreeMap<String, String>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (k, v) in meta.iter().filter(|(k, _)| k.as_str() != CHECKSUM_KEY) {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    for (name, t) in tensors {
        h.update(name.as_bytes());
        h.update(t.dtype_name().as_bytes());
        for d in &t.shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        match &t.data {
            weights::HostData::F32(v) => v.iter().for_each(|x| h.update(&x.to_le_bytes())),
            weights::HostData::I64(v) => v.iter().for_each(|x| h.update(&x.to_le_bytes())),
            weights::HostData::Bool(v) => v.iter().for_each(|x| h.update(&[u8::from(*x)])),
        }
    }
    h.finalize()
}

/// Configs are plain data, so serialising them cannot fail.
fn json_string<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(crate) fn invalid(path: &Path, message: impl Into<String>) -> ModelFileError {
    ModelFileError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    json: Json,
) -> Result<T, ModelFileError> {
    serde_json::from_value(json).map_err(|e| invalid(path, format!("{what} is malformed: {e}")))
}

fn from_ours(bytes: &[u8], path: &Path) -> Result<ModelFile, ModelFileError> {
    let (tensors, meta) =
        weights::st::from_bytes(bytes).map_err(|source| ModelFileError::Weights {
            path: path.to_path_buf(),
            source,
        })?;
    if meta.get("format").map(String::as_str) != Some(FORMAT_NAME) {
        return Err(ModelFileError::Unrecognised {
            path: path.to_path_buf(),
        });
    }
    let stored = meta.get(CHECKSUM_KEY).cloned().unwrap_or_default();
    if stored != format!("{:08x}", checksum(&tensors, &meta)) {
        return Err(invalid(path, "checksum mismatch: the file is damaged"));
    }
    let version: u32 = meta
        .get("format_version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid(path, "missing format_version"))?;
    if version > FORMAT_VERSION {
        return Err(invalid(
            path,
            format!(
                "model format version {version} is newer than this program supports ({FORMAT_VERSION}); update distill"
            ),
        ));
    }
    let json = |key: &str| -> Result<Option<Json>, ModelFileError> {
        meta.get(key)
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| invalid(path, format!("metadata '{key}' is not JSON: {e}")))
            })
            .transpose()
    };
    let required = |key: &str| -> Result<Json, ModelFileError> {
        json(key)?.ok_or_else(|| invalid(path, format!("missing '{key}'")))
    };
    let vqvae_config = parse_config(path, "vqvae_config", required("vqvae_config")?)?;
    let spectrogram_config =
        parse_config(path, "spectrogram_config", required("spectrogram_config")?)?;
    let prior_config = json("prior_config")?
        .map(|j| parse_config::<PriorConfig>(path, "prior_config", j))
        .transpose()?;
    let metadata = match json("metadata")? {
        Some(Json::Object(m)) => Metadata::from_map(m),
        _ => Metadata::default(),
    };
    let mut extra = BTreeMap::new();
    for key in meta.keys() {
        let known = [
            CHECKSUM_KEY,
            "format",
            "format_version",
            "vqvae_config",
            "spectrogram_config",
            "prior_config",
            "metadata",
        ];
        if !known.contains(&key.as_str())
            && let Some(v) = json(key)?
        {
            extra.insert(key.clone(), v);
        }
    }
    let sections = Sections::take_from(&mut extra, true).map_err(|m| invalid(path, m))?;
    let vqvae = weights::strip_prefix(&tensors, VQVAE_PREFIX);
    let prior = weights::strip_prefix(&tensors, PRIOR_PREFIX);
    if vqvae.is_empty() {
        return Err(invalid(path, "no VQ-VAE tensors"));
    }
    if prior.is_empty() != prior_config.is_none() {
        return Err(invalid(
            path,
            "prior tensors and prior_config must come together",
        ));
    }
    Ok(ModelFile {
        origin: ModelOrigin::Distill,
        vqvae_config,
        spectrogram_config,
        prior_config,
        metadata,
        sections,
        extra,
        vqvae,
        prior: (!prior.is_empty()).then_some(prior),
    })
}

/// Trainable parameter count of a state dict: buffers (BatchNorm statistics, codebooks,
/// masks) excluded.
pub fn parameter_count(dict: &StateDict) -> usize {
    dict.iter()
        .filter(|(k, _)| {
            !(k.ends_with("running_mean")
                || k.ends_with("running_var")
                || k.ends_with("num_batches_tracked")
                || k.contains("_codebook.")
                || k.ends_with("causal_mask"))
        })
        .map(|(_, t)| t.numel())
        .sum()
}
