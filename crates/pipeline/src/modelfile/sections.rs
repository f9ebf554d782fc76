//! The typed sections of a model file's JSON header.
//!
//! Each section is stored under its own key as a JSON string (the reference system's key
//! where it has one). Objects are written with sorted keys, so equal models give equal
//! bytes. A section of a reference-system file that does not have the shape we read stays
//! in [`super::ModelFile::extra`] untouched instead.

use std::collections::BTreeMap;

use prior_model::TokenOrder;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use vqvae::LevelHealth;

/// Header keys of the typed sections.
pub const TOKEN_ORDER: &str = "token_order";
pub const FIRST_TOKEN: &str = "first_token_distribution";
pub const CODEBOOK_HEALTH: &str = "codebook_health_snapshot";
pub const VQVAE_TRAINING: &str = "vqvae_training";
pub const PRIOR_TRAINING: &str = "prior_metadata";

/// Per-epoch numbers beyond the losses: codebook health (VQ-VAE) or perplexities (prior).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codebook_health: Option<Vec<LevelHealth>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_perplexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_perplexity: Option<f64>,
}

/// One epoch as stored in a model file (wall time and the "new best" mark are left out, so
/// equal runs write equal files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub stage: String,
    pub epoch: usize,
    pub epochs: usize,
    #[serde(with = "loss")]
    pub train_loss: f64,
    #[serde(with = "loss")]
    pub val_loss: f64,
    pub learning_rate: f64,
    pub skipped_steps: usize,
    /// Stored under the name the history has always used.
    #[serde(rename = "extra", default)]
    pub metrics: EpochMetrics,
}

/// A loss as JSON: JSON has no NaN or infinity, so a loss that was not finite (an early
/// epoch of a fresh codec can validate at infinity) is written as `null` and read back as NaN;
/// without this a model file holding such an epoch could be written but not read.
mod loss {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// How the VQ-VAE was trained (`vqvae_training`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqvaeTraining {
    pub best_epoch: usize,
    #[serde(with = "loss")]
    pub best_val_loss: f64,
    pub history: Vec<EpochRecord>,
}

/// How the prior was trained (`prior_metadata`, the reference's key; it stores only the
/// epochs, perplexities and a date).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorTraining {
    pub epochs_trained: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_perplexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_perplexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<EpochRecord>>,
}

/// Codebook health per level of the kept VQ-VAE (`codebook_health_snapshot`, stored as
/// `{"level_0": {...}, ...}` as the reference does).
#[derive(Debug, Clone, PartialEq)]
pub struct CodebookHealth(pub Vec<LevelHealth>);

impl CodebookHealth {
    fn to_json(&self) -> Json {
        Json::Object(
            self.0
                .iter()
                .enumerate()
                .map(|(q, h)| (format!("level_{q}"), to_json(h)))
                .collect(),
        )
    }

    fn from_json(v: &Json) -> Option<Self> {
        let map = v.as_object()?;
        let mut levels = Vec::with_capacity(map.len());
        for q in 0..map.len() {
            levels.push(serde_json::from_value(map.get(&format!("level_{q}"))?.clone()).ok()?);
        }
        Some(Self(levels))
    }
}

/// The model's `metadata` dictionary (the reference's `ModelMetadata` fields that Distill
/// reads or writes, plus everything else it holds, kept as it is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub model_id: Option<String>,
    pub name: Option<String>,
    pub data: DataSummary,
    pub seed: Option<u64>,
    pub training_epochs: Option<usize>,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
    /// Entries Distill does not interpret (description, dates, tags, …).
    pub other: Map<String, Json>,
}

/// The collection a model was trained on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    pub name: Option<String>,
    pub file_count: Option<usize>,
    pub total_duration_s: Option<f64>,
}

impl Metadata {
    /// Reads the known fields of a metadata object; a value of another type (a reference
    /// file's `null`, say) stays in `other`.
    pub fn from_map(mut map: Map<String, Json>) -> Self {
        fn take<T: serde::de::DeserializeOwned>(
            map: &mut Map<String, Json>,
            key: &str,
        ) -> Option<T> {
            let value = serde_json::from_value(map.get(key)?.clone()).ok()?;
            map.remove(key);
            Some(value)
        }
        Self {
            model_id: take(&mut map, "model_id"),
            name: take(&mut map, "name"),
            data: DataSummary {
                name: take(&mut map, "dataset_name"),
                file_count: take(&mut map, "dataset_file_count"),
                total_duration_s: take(&mut map, "dataset_total_duration_s"),
            },
            seed: take(&mut map, "seed"),
            training_epochs: take(&mut map, "training_epochs"),
            final_train_loss: take(&mut map, "final_train_loss"),
            final_val_loss: take(&mut map, "final_val_loss"),
            other: map,
        }
    }

    /// The metadata object (sorted keys).
    pub fn to_map(&self) -> Map<String, Json> {
        let mut map = self.other.clone();
        let mut put = |key: &str, value: Option<Json>| {
            if let Some(v) = value {
                map.insert(key.to_string(), v);
            }
        };
        put("model_id", self.model_id.as_ref().map(to_json));
        put("name", self.name.as_ref().map(to_json));
        put("dataset_name", self.data.name.as_ref().map(to_json));
        put("dataset_file_count", self.data.file_count.map(Json::from));
        put(
            "dataset_total_duration_s",
            self.data.total_duration_s.map(|v| to_json(&v)),
        );
        put("seed", self.seed.map(Json::from));
        put("training_epochs", self.training_epochs.map(Json::from));
        put(
            "final_train_loss",
            self.final_train_loss.map(|v| to_json(&v)),
        );
        put("final_val_loss", self.final_val_loss.map(|v| to_json(&v)));
        map
    }
}

/// The typed optional sections of a model file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sections {
    /// Token order of the prior; `None` (reference files) reads as raster.
    pub token_order: Option<TokenOrder>,
    /// Distribution of the first token of a generated sequence.
    pub first_token_distribution: Option<Vec<f64>>,
    pub codebook_health: Option<CodebookHealth>,
    pub vqvae_training: Option<VqvaeTraining>,
    pub prior_training: Option<PriorTraining>,
}

impl Sections {
    /// Takes the typed sections out of `extra`. `strict`: a section of the wrong shape is an
    /// error (our own files); otherwise it stays in `extra` (reference files).
    pub fn take_from(extra: &mut BTreeMap<String, Json>, strict: bool) -> Result<Self, String> {
        fn take<T>(
            extra: &mut BTreeMap<String, Json>,
            key: &str,
            strict: bool,
            parse: impl Fn(&Json) -> Option<T>,
        ) -> Result<Option<T>, String> {
            let Some(v) = extra.get(key) else {
                return Ok(None);
            };
            match parse(v) {
                Some(t) => {
                    extra.remove(key);
                    Ok(Some(t))
                }
                None if strict => Err(format!("'{key}' is malformed")),
                None => Ok(None),
            }
        }
        fn de<T: serde::de::DeserializeOwned>(v: &Json) -> Option<T> {
            serde_json::from_value(v.clone()).ok()
        }
        Ok(Self {
            token_order: take(extra, TOKEN_ORDER, strict, de)?,
            first_token_distribution: take(extra, FIRST_TOKEN, strict, de)?,
            codebook_health: take(extra, CODEBOOK_HEALTH, strict, CodebookHealth::from_json)?,
            vqvae_training: take(extra, VQVAE_TRAINING, strict, de)?,
            prior_training: take(extra, PRIOR_TRAINING, strict, de)?,
        })
    }

    /// Every section that is present, by key.
    pub fn to_json(&self) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        let mut put = |key: &str, v: Option<Json>| {
            if let Some(v) = v {
                out.insert(key.to_string(), v);
            }
        };
        put(TOKEN_ORDER, self.token_order.as_ref().map(to_json));
        put(
            FIRST_TOKEN,
            self.first_token_distribution.as_ref().map(to_json),
        );
        put(
            CODEBOOK_HEALTH,
            self.codebook_health.as_ref().map(CodebookHealth::to_json),
        );
        put(VQVAE_TRAINING, self.vqvae_training.as_ref().map(to_json));
        put(PRIOR_TRAINING, self.prior_training.as_ref().map(to_json));
        out
    }
}

/// Plain data as JSON (objects with sorted keys). Serialising these types cannot fail.
fn to_json<T: Serialize>(value: &T) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_keeps_what_it_does_not_read() {
        let map: Map<String, Json> = serde_json::from_str(
            r#"{"model_id": "x", "dataset_file_count": 20, "final_train_loss": null,
                "tags": ["a"], "seed": 3}"#,
        )
        .expect("json");
        let m = Metadata::from_map(map.clone());
        assert_eq!(m.model_id.as_deref(), Some("x"));
        assert_eq!(m.data.file_count, Some(20));
        assert_eq!(m.seed, Some(3));
        assert_eq!(m.final_train_loss, None);
        assert!(m.other.contains_key("tags") && m.other.contains_key("final_train_loss"));
        assert_eq!(m.to_map(), map, "round trip");
    }

    #[test]
    fn sections_round_trip_and_reject_malformed_ones_in_our_files() {
        let mut extra = BTreeMap::new();
        extra.insert(TOKEN_ORDER.to_string(), Json::from("time_major"));
        extra.insert(FIRST_TOKEN.to_string(), serde_json::json!([0.5, 0.5]));
        extra.insert(
            CODEBOOK_HEALTH.to_string(),
            serde_json::json!({"level_0": {"utilization": 0.5, "perplexity": 3.0, "dead_codes": 2}}),
        );
        extra.insert(
            "loss_curve_history".to_string(),
            serde_json::json!({"a": 1}),
        );
        let before = extra.clone();
        let s = Sections::take_from(&mut extra, true).expect("valid");
        assert_eq!(s.token_order, Some(TokenOrder::TimeMajor));
        assert_eq!(extra.len(), 1, "only the uninterpreted entry stays");
        let mut back = s.to_json();
        back.extend(extra);
        assert_eq!(back, before);

        let mut bad = BTreeMap::new();
        bad.insert(TOKEN_ORDER.to_string(), Json::from("diagonal"));
        let err = Sections::take_from(&mut bad.clone(), true).expect_err("strict");
        assert!(err.contains("token_order"), "{err}");
        let lenient = Sections::take_from(&mut bad, false).expect("lenient");
        assert_eq!(lenient.token_order, None);
        assert!(bad.contains_key(TOKEN_ORDER), "kept as it was");
    }

    #[test]
    fn losses_that_are_not_finite_survive_a_round_trip() {
        let epoch = |val_loss: f64| EpochRecord {
            stage: "vqvae".into(),
            epoch: 1,
            epochs: 2,
            train_loss: 2.5,
            val_loss,
            learning_rate: 1e-3,
            skipped_steps: 0,
            metrics: EpochMetrics::default(),
        };
        let training = VqvaeTraining {
            best_epoch: 2,
            best_val_loss: 0.75,
            history: vec![epoch(f64::INFINITY), epoch(f64::NAN), epoch(0.75)],
        };
        let sections = Sections {
            vqvae_training: Some(training),
            ..Sections::default()
        };
        let mut extra = sections.to_json();
        let text = extra[VQVAE_TRAINING].to_string();
        assert!(text.contains(r#""val_loss":null"#), "{text}");
        let back = Sections::take_from(&mut extra, true).expect("our own file reads back");
        let history = back.vqvae_training.expect("section").history;
        assert!(history[0].val_loss.is_nan() && history[1].val_loss.is_nan());
        assert_eq!((history[2].val_loss, history[0].train_loss), (0.75, 2.5));
    }
}
