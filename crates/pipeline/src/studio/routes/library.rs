//! The Library tab: the models in the models folder as cards; describe, rename, delete.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use vqvae::LevelHealth;

use super::{S, blocking};
use crate::modelfile::{EpochRecord, ModelFile, ModelOrigin, describe};
use crate::studio::Studio;
use crate::studio::error::{ApiError, ApiResult, JsonBody};
use crate::studio::jobs::JobKind;
use crate::studio::paths::new_name;
use crate::train::checkpoint_dir;

/// Codebook health in plain words: a verdict and a sentence.
pub fn codebook_verdict(levels: &[LevelHealth], codebook_size: usize) -> (&'static str, String) {
    if levels.is_empty() {
        return ("unknown", "no codebook statistics were recorded".into());
    }
    let worst = levels
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.utilization.total_cmp(&b.1.utilization))
        .map(|(i, h)| (i + 1, *h))
        .unwrap_or((1, levels[0]));
    let (level, h) = worst;
    let used = (h.utilization * codebook_size as f64).round();
    if h.perplexity < 1.5 || used <= 1.0 {
        (
            "collapse",
            format!(
                "level {level} uses almost a single code: the model has collapsed and its sounds will barely vary"
            ),
        )
    } else if h.utilization < 0.3 {
        (
            "some codes unused",
            format!(
                "level {level} uses {:.0}% of its codes ({} unused); usual for small collections",
                h.utilization * 100.0,
                h.dead_codes
            ),
        )
    } else {
        (
            "healthy",
            "every level uses a good share of its codes".into(),
        )
    }
}

fn losses(history: &[EpochRecord]) -> Vec<[f64; 2]> {
    history.iter().map(|r| [r.train_loss, r.val_loss]).collect()
}

/// A library card: what a musician wants to see of a model at a glance.
fn card(path: &Path, model: &ModelFile, size: u64, modified: u64) -> Json_ {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let health = model
        .sections
        .codebook_health
        .as_ref()
        .map(|h| h.0.clone())
        .unwrap_or_default();
    let (verdict, text) = codebook_verdict(&health, model.vqvae_config.codebook_size);
    let prior_history = model
        .sections
        .prior_training
        .as_ref()
        .and_then(|p| p.history.as_deref())
        .map(losses)
        .unwrap_or_default();
    let md = &model.metadata;
    json!({
        "file": file,
        "name": path.file_stem().map(|n| n.to_string_lossy().into_owned()),
        "size": size,
        "modified": modified,
        "format": match model.origin {
            ModelOrigin::Reference => "reference system (PyTorch)",
            ModelOrigin::Distill => "Distill",
        },
        "reference": model.origin == ModelOrigin::Reference,
        "has_prior": model.has_prior(),
        "corpus": {
            "name": md.data.name,
            "files": md.data.file_count,
            "duration_s": md.data.total_duration_s,
        },
        "vqvae": {
            "levels": model.vqvae_config.num_quantizers,
            "codes": model.vqvae_config.codebook_size,
            "parameters": crate::modelfile::parameter_count(&model.vqvae),
        },
        "prior": model.prior_config.as_ref().map(|p| json!({
            "hidden_size": p.hidden_size,
            "layers": p.num_layers,
            "heads": p.num_heads,
            "parameters": model.prior.as_ref().map(crate::modelfile::parameter_count),
        })),
        "history": {
            "vqvae": model.sections.vqvae_training.as_ref().map(|t| losses(&t.history)).unwrap_or_default(),
            "prior": prior_history,
        },
        "health": {
            "verdict": verdict,
            "text": text,
            "levels": health.iter().map(|h| json!({
                "utilization": h.utilization,
                "perplexity": h.perplexity,
                "dead_codes": h.dead_codes,
            })).collect::<Vec<_>>(),
        },
    })
}

/// The card of a model file, from the cache while the file is unchanged.
fn cached_card(s: &Studio, path: &Path) -> Option<Json_> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta.modified().ok()?;
    let key = path.to_path_buf();
    let mut cache = s.cards.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((t, len, c)) = cache.get(&key)
        && *t == mtime
        && *len == meta.len()
    {
        return Some(c.clone());
    }
    drop(cache);
    let model = ModelFile::load(path).ok()?;
    let modified = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let c = card(path, &model, meta.len(), modified);
    cache = s.cards.lock().unwrap_or_else(|p| p.into_inner());
    cache.insert(key, (mtime, meta.len(), c.clone()));
    Some(c)
}

/// Every model file in the models folder (ours and the reference system's), newest first;
/// files that are not models are left out.
pub async fn models(State(s): S) -> ApiResult<Json<Json_>> {
    let studio = s.clone();
    blocking(move || {
        let mut cards = Vec::new();
        for entry in std::fs::read_dir(&studio.roots.models)?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if name.starts_with('.') || !is_file {
                continue;
            }
            if let Some(c) = cached_card(&studio, &path) {
                cards.push(c);
            }
        }
        cards.sort_by_key(|c| std::cmp::Reverse(c["modified"].as_u64()));
        Ok(Json(json!({"models": cards})))
    })
    .await
}

/// Everything a model file holds (what `distill info --json` prints) and its card.
pub async fn model(State(s): S, UrlPath(file): UrlPath<String>) -> ApiResult<Json<Json_>> {
    let path = s.roots.model_file(&file)?;
    let studio = s.clone();
    blocking(move || {
        let model = ModelFile::load(&path).map_err(|e| ApiError::unprocessable(e.to_string()))?;
        let info = describe(&model, &path).map_err(|e| ApiError::from_library(&e))?;
        Ok(Json(
            json!({"info": info, "card": cached_card(&studio, &path)}),
        ))
    })
    .await
}

/// Whether a training job that writes `model` is queued or running.
fn in_training(s: &Studio, model: &Path) -> bool {
    !s.jobs
        .find(|r| {
            r.kind == JobKind::Train
                && !r.state.is_terminal()
                && r.request["output"].as_str() == model.to_str()
        })
        .is_empty()
}

/// The folders that belong to a model file: its report and checkpoint.
fn companions(model: &Path) -> [PathBuf; 2] {
    [model.with_extension("report"), checkpoint_dir(model)]
}

#[derive(Deserialize)]
pub struct RenameRequest {
    name: String,
}

/// Renames a model file (and its report and checkpoint folders).
pub async fn rename(
    State(s): S,
    UrlPath(file): UrlPath<String>,
    JsonBody(req): JsonBody<RenameRequest>,
) -> ApiResult<Json<Json_>> {
    let from = s.roots.model_file(&file)?;
    let name = new_name(req.name.trim_end_matches(".distill"))?;
    let to = s.roots.models.join(format!("{name}.distill"));
    if std::fs::symlink_metadata(&to).is_ok() {
        return Err(ApiError::conflict(format!(
            "a model named {name}.distill already exists"
        )));
    }
    if in_training(&s, &from) {
        return Err(ApiError::conflict(
            "this model is being trained; rename it when the run has ended",
        ));
    }
    std::fs::rename(&from, &to)?;
    for (a, b) in companions(&from).iter().zip(companions(&to).iter()) {
        if a.is_dir() && std::fs::symlink_metadata(b).is_err() {
            std::fs::rename(a, b)?;
        }
    }
    Ok(Json(json!({"file": format!("{name}.distill")})))
}

#[derive(Deserialize)]
pub struct DeleteRequest {
    /// The file name again: deleting needs this confirmation.
    confirm: String,
}

/// Deletes a model file with its report and checkpoint folders. The request must repeat
/// the file name in `confirm`.
pub async fn delete(
    State(s): S,
    UrlPath(file): UrlPath<String>,
    JsonBody(req): JsonBody<DeleteRequest>,
) -> ApiResult<Json<Json_>> {
    let path = s.roots.model_file(&file)?;
    if req.confirm != file {
        return Err(ApiError::bad_request(format!(
            "to delete {file}, confirm with its name"
        )));
    }
    if in_training(&s, &path) {
        return Err(ApiError::conflict(
            "this model is being trained; cancel the run first",
        ));
    }
    std::fs::remove_file(&path)?;
    for dir in companions(&path) {
        // Only real folders inside the models folder; a symbolic link is removed, not followed.
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dir)?,
            Ok(_) => std::fs::remove_file(&dir)?,
            Err(_) => {}
        }
    }
    s.cards
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&path);
    Ok(Json(json!({"deleted": file})))
}
