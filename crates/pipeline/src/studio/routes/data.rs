//! The Data tab: the folder browser, scanning a folder, collections and uploads.

use std::path::{Path, PathBuf};

use audio::scan::{ScanReport, scan_with_progress};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use futures_util::StreamExt;
use prior_config::DatasetTier;
use serde::Deserialize;
use serde_json::{Value as Json_, json};
use tokio::io::AsyncWriteExt;

use super::{S, blocking};
use crate::studio::error::{ApiError, ApiResult, JsonBody, QueryParams};
use crate::studio::paths::{self, new_name};
use crate::train::ConfigOverrides;
use crate::train::config::resolve;

#[derive(Deserialize)]
pub struct BrowseQuery {
    path: Option<String>,
}

/// Sub-folders of a folder inside the readable folders (names only, never contents), with
/// how many files it holds; without a path, the folders to start from.
pub async fn browse(
    State(s): S,
    QueryParams(q): QueryParams<BrowseQuery>,
) -> ApiResult<Json<Json_>> {
    let Some(raw) = q.path.filter(|p| !p.trim().is_empty()) else {
        let roots: Vec<Json_> = s
            .roots
            .browse_roots()
            .iter()
            .map(|p| json!({"name": p.display().to_string(), "path": p}))
            .collect();
        return Ok(Json(
            json!({"path": null, "parent": null, "dirs": roots, "files": 0}),
        ));
    };
    let dir = s.roots.readable_dir(&raw)?;
    let studio = s.clone();
    blocking(move || {
        let mut dirs = Vec::new();
        let mut files = 0usize;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_dir() => dirs.push(json!({"name": name, "path": entry.path()})),
                Ok(m) if m.is_file() => files += 1,
                _ => {}
            }
        }
        dirs.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let parent = dir
            .parent()
            .filter(|p| studio.roots.is_readable(p))
            .map(Path::to_path_buf);
        Ok(Json(
            json!({"path": dir, "parent": parent, "dirs": dirs, "files": files}),
        ))
    })
    .await
}

#[derive(Deserialize)]
pub struct ScanRequest {
    path: String,
}

/// What a scan finds, for the page: per file its format and problems in plain words,
/// totals, and the collection's size tier with the defaults it brings.
pub fn scan_json(r: &ScanReport) -> Json_ {
    let files: Vec<Json_> = r
        .files
        .iter()
        .map(|f| {
            let name = f
                .path
                .strip_prefix(&r.root)
                .unwrap_or(&f.path)
                .display()
                .to_string();
            json!({
                "name": name,
                "usable": f.usable(),
                "format": f.info.as_ref().map(|i| i.codec.clone()),
                "sample_rate": f.info.as_ref().map(|i| i.sample_rate),
                "channels": f.info.as_ref().map(|i| i.channels),
                "duration_s": f.info.as_ref().map(|i| i.duration_s),
                "problems": f.problems.iter().map(|p| json!({
                    "text": p.describe(),
                    "fatal": p.is_fatal(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let usable = r.usable_count();
    json!({
        "root": r.root,
        "files": files,
        "totals": {
            "files": r.files.len(),
            "usable": usable,
            "rejected": r.files.len() - usable,
            "duration_s": r.total_duration_s(),
            "chunks": r.total_chunks(),
        },
        "tier": tier(usable, r.total_chunks()),
    })
}

/// The size tier of a collection of `usable` files that cut into `chunks` one-second chunks,
/// what it means and its defaults.
pub fn tier(usable: usize, chunks: usize) -> Json_ {
    let short = format!(
        "21 to 100 files in at most {} one-second chunks",
        prior_config::NATIVE_SMALL_MAX_CHUNKS
    );
    let (name, range) = match DatasetTier::native(usable, chunks) {
        DatasetTier::Small if usable > 20 => ("small", short.as_str()),
        DatasetTier::Small => ("small", "up to 20 files"),
        DatasetTier::Medium => ("medium", "21 to 100 files"),
        DatasetTier::Large => ("large", "more than 100 files"),
    };
    let defaults = resolve(
        &ConfigOverrides::default(),
        usable.max(1),
        chunks,
        &mut |_| {},
    );
    let Ok((vq, pr)) = defaults else {
        return json!({"name": name, "range": range});
    };
    let meaning = match name {
        "small" => {
            "a compact model that trains in minutes on a laptop; it learns these sounds closely, so new sounds stay near the originals. Fewer than 2 usable files cannot be trained on."
        }
        "medium" => {
            "a larger model with more codes and a deeper prior: more variety between sounds; training takes longer (tens of minutes on a laptop)."
        }
        _ => {
            "the largest model: the most variety; training runs a fixed number of steps, about 20 minutes on 2 CPU cores whatever the collection's size (an Epochs value trains that many epochs in full)."
        }
    };
    let epochs = match (vq.max_steps, pr.max_steps) {
        (Some(v), Some(p)) => format!(
            "up to {} + {} epochs, at most {v} + {p} steps",
            vq.max_epochs, pr.max_epochs
        ),
        _ => format!("{} + {} epochs", vq.max_epochs, pr.max_epochs),
    };
    json!({
        "name": name,
        "range": range,
        "meaning": format!(
            "{range}: {meaning} Defaults: {} × {} codes, a {}-layer prior of width {}, {epochs}.",
            crate::codes::levels_text(vq.num_quantizers), vq.codebook_size, pr.num_layers, pr.hidden_size
        ),
        "defaults": {
            "epochs": vq.max_epochs,
            "prior_epochs": pr.max_epochs,
            "codebook_size": vq.codebook_size,
            "rvq_levels": vq.num_quantizers,
            "hidden_size": pr.hidden_size,
            "layers": pr.num_layers,
            "heads": pr.num_heads,
        },
    })
}

/// Scans a folder inside the readable folders.
pub async fn scan(State(s): S, JsonBody(req): JsonBody<ScanRequest>) -> ApiResult<Json<Json_>> {
    let dir = s.roots.readable_dir(&req.path)?;
    blocking(move || {
        let report = scan_with_progress(&dir, |_, _| {})
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Json(scan_json(&report)))
    })
    .await
}

/// The collections (upload folders) and how many files each holds.
pub async fn collections(State(s): S) -> ApiResult<Json<Json_>> {
    let root = s.roots.collections.clone();
    blocking(move || {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&root)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            out.push(
                json!({"name": name, "path": entry.path(), "files": count_files(&entry.path())}),
            );
        }
        out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Ok(Json(json!({"collections": out})))
    })
    .await
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.path().is_file())
                .count()
        })
        .unwrap_or(0)
}

#[derive(Deserialize)]
pub struct NewCollection {
    name: String,
}

/// Creates an empty collection folder for uploads.
pub async fn create_collection(
    State(s): S,
    JsonBody(req): JsonBody<NewCollection>,
) -> ApiResult<Json<Json_>> {
    let name = new_name(&req.name)?;
    let dir = s.roots.collections.join(&name);
    if std::fs::symlink_metadata(&dir).is_ok() {
        return Err(ApiError::conflict(format!(
            "a collection named {name} already exists"
        )));
    }
    std::fs::create_dir(&dir)?;
    Ok(Json(json!({"name": name, "path": dir})))
}

/// Receives one file into a collection: streamed to a hidden temporary file with the size
/// limit enforced as it arrives, decoded to check it is complete audio, then renamed into
/// place. Anything refused is deleted; nothing else is touched.
pub async fn upload(
    State(s): S,
    UrlPath((collection, file)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Json_>> {
    let dir = s.roots.child(&s.roots.collections, &collection)?;
    if !dir.is_dir() {
        return Err(ApiError::not_found(format!(
            "no collection named {collection}"
        )));
    }
    let name = new_name(&file)?;
    let limit = s.limits.max_file_bytes;
    let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(format!(
            "{name} is too large ({}); the limit is {} per file",
            mb(declared.unwrap_or(0)),
            mb(limit)
        )));
    }
    if count_files(&dir) >= s.limits.max_files {
        return Err(ApiError::too_large(format!(
            "the collection already holds {} files, the most one collection may hold",
            s.limits.max_files
        )));
    }
    let part = dir.join(format!(".upload-{}.part", super::super::auth::new_token()));
    let written = receive(body, &part, limit).await;
    let bytes = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(match e {
                Received::TooLarge => ApiError::too_large(format!(
                    "{name} is too large; the limit is {} per file",
                    mb(limit)
                )),
                Received::CutOff => ApiError::bad_request(format!(
                    "the upload of {name} was cut off before the end; nothing was kept"
                )),
                Received::Io(e) => ApiError::internal(format!("saving {name}: {e}")),
            });
        }
    };
    if declared.is_some_and(|n| n != bytes) {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(ApiError::bad_request(format!(
            "the upload of {name} was cut off ({bytes} of {} bytes); nothing was kept",
            declared.unwrap_or(0)
        )));
    }
    let checked = part.clone();
    let shown = name.clone();
    let info = blocking(move || Ok(super::super::media::check_audio(&checked, &shown))).await?;
    let info = match info {
        Ok(info) => info,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
    };
    let target: PathBuf = paths::unique_in(&dir, &name);
    tokio::fs::rename(&part, &target).await?;
    let mut out = info;
    out["file"] = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .into();
    out["bytes"] = bytes.into();
    Ok(Json(out))
}

enum Received {
    TooLarge,
    CutOff,
    Io(std::io::Error),
}

/// Streams a request body into a new file, stopping past `limit` bytes.
async fn receive(body: Body, path: &Path, limit: u64) -> Result<u64, Received> {
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(Received::Io)?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Received::CutOff)?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(Received::TooLarge);
        }
        out.write_all(&chunk).await.map_err(Received::Io)?;
    }
    out.sync_all().await.map_err(Received::Io)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::tier;

    #[test]
    fn the_large_tier_states_its_step_budget() {
        let meaning = |n: usize| {
            tier(n, 3 * n)["meaning"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let large = meaning(500);
        let steps = format!(
            "at most {} + {} steps",
            vqvae::NATIVE_LARGE_STEPS,
            prior_config::NATIVE_LARGE_STEPS
        );
        assert!(large.contains(&steps), "{large}");
        let small = meaning(5);
        assert!(
            small.contains("60 + 100 epochs") && !small.contains("steps"),
            "{small}"
        );
        // Fifty footsteps (56 s) train as a small collection; fifty 3-s notes do not.
        let footsteps = tier(50, 56);
        assert_eq!(footsteps["name"], "small");
        let range = footsteps["range"].as_str().unwrap_or_default();
        assert!(range.contains("at most 64 one-second chunks"), "{range}");
        assert_eq!(footsteps["defaults"]["rvq_levels"], 1);
        assert_eq!(tier(50, 150)["name"], "medium");
        assert_eq!(tier(50, 150)["defaults"]["rvq_levels"], 3);
    }
}
