//! The Generate tab: generation jobs, their results (audio with ranges, FLAC, mel
//! thumbnails), keeping results and exporting the kept ones as a kit.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use super::{S, blocking, serve_file};
use crate::fsutil::atomic_write;
use crate::generate::GenerateSettings;
use crate::studio::Studio;
use crate::studio::error::{ApiError, ApiResult, JsonBody, QueryParams};
use crate::studio::jobs::JobKind;
use crate::studio::paths::new_name;
use crate::studio::run::GenerateJob;

/// Longest sound and most sounds one request may ask for.
pub const MAX_DURATION_S: f64 = 60.0;
pub const MAX_COUNT: usize = 16;

fn default_temperature() -> f64 {
    GenerateSettings::default().temperature
}
fn default_top_p() -> f64 {
    GenerateSettings::default().top_p
}
fn default_iterations() -> usize {
    GenerateSettings::default().iterations
}
fn default_duration() -> f64 {
    2.0
}
fn default_count() -> usize {
    4
}

/// A seed as a JSON number or a decimal string.
#[derive(Debug, Clone, Copy)]
pub struct Seed(pub u64);

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(u64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => Ok(Self(n)),
            Either::Text(t) => t.trim().parse().map(Self).map_err(|_| {
                serde::de::Error::custom(format!(
                    "the seed must be a whole number from 0 to {}, got '{t}'",
                    u64::MAX
                ))
            }),
        }
    }
}

/// A generation request from the page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// Model file name in the models folder.
    pub model: String,
    #[serde(default = "default_duration")]
    pub duration: f64,
    #[serde(default = "default_count")]
    pub count: usize,
    /// `None`: a new random seed (recorded, so the results can be made again). Seeds are
    /// 64-bit, more than a JavaScript number holds exactly: a decimal string is accepted
    /// (and results report theirs as strings).
    pub seed: Option<Seed>,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    #[serde(default)]
    pub top_k: usize,
    #[serde(default = "default_top_p")]
    pub top_p: f64,
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    #[serde(default = "crate::studio::run::default_candidates")]
    pub candidates: usize,
    /// Keep every sound exactly `duration` long (default: a sound that dies away sooner
    /// ends there, as `distill generate` ends it).
    #[serde(default)]
    pub exact_duration: bool,
}

/// Queues a generation job.
pub async fn start(
    State(s): S,
    JsonBody(req): JsonBody<GenerateRequest>,
) -> ApiResult<Json<Json_>> {
    let model = s.roots.model_file(&req.model)?;
    if !(req.duration > 0.0 && req.duration <= MAX_DURATION_S) {
        return Err(ApiError::bad_request(format!(
            "the duration must be more than 0 and at most {MAX_DURATION_S} seconds, got {}",
            req.duration
        )));
    }
    if !(1..=MAX_COUNT).contains(&req.count) {
        return Err(ApiError::bad_request(format!(
            "the count must be between 1 and {MAX_COUNT}, got {}",
            req.count
        )));
    }
    let job = GenerateJob {
        model,
        duration: req.duration,
        count: req.count,
        seed: req
            .seed
            .map_or_else(|| u64::from(rand::random::<u32>()), |s| s.0),
        temperature: req.temperature,
        top_k: req.top_k,
        top_p: req.top_p,
        iterations: req.iterations,
        candidates: req.candidates,
        exact_duration: req.exact_duration,
    };
    job.settings()
        .validate()
        .map_err(|e| ApiError::from_library(&e))?;
    let title = format!(
        "generate {} × {} s from {} (seed {})",
        job.count, job.duration, req.model, job.seed
    );
    let request = serde_json::to_value(&job).map_err(|e| ApiError::internal(e.to_string()))?;
    let id = s
        .jobs
        .submit(JobKind::Generate, title, request, Vec::new(), None);
    Ok(Json(json!({"job": id, "seed": job.seed.to_string()})))
}

/// The folder of a generation job's results.
fn job_dir(s: &Studio, job: &str) -> ApiResult<PathBuf> {
    let id: u64 = job
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{job}' is not a job number")))?;
    let dir = s.roots.generated.join(id.to_string());
    if !dir.is_dir() {
        return Err(ApiError::not_found(format!("job {id} has no results")));
    }
    Ok(dir)
}

/// The WAV of result `seed` of job `job`.
fn result_wav(s: &Studio, job: &str, seed: &str) -> ApiResult<PathBuf> {
    let seed: u64 = seed
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{seed}' is not a seed")))?;
    let wav = job_dir(s, job)?.join(format!("gen_{seed}.wav"));
    if !wav.is_file() {
        return Err(ApiError::not_found(format!(
            "no result with seed {seed} in job {job}"
        )));
    }
    Ok(wav)
}

fn kept_file(dir: &Path) -> PathBuf {
    dir.join("kept.json")
}

fn kept_seeds(dir: &Path) -> Vec<u64> {
    std::fs::read(kept_file(dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// What the page shows of one result, from its sidecar.
pub fn result_info(s: &Studio, job: u64, sidecar: &Path) -> anyhow::Result<Json_> {
    let side: Json_ = serde_json::from_slice(&std::fs::read(sidecar)?)?;
    let seed = side["seed"].as_u64().unwrap_or(0);
    let dir = sidecar.parent().unwrap_or(&s.roots.generated);
    let model = Path::new(side["model"].as_str().unwrap_or_default())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(json!({
        "id": format!("{job}-{seed}"),
        "job": job,
        "seed": seed.to_string(),
        "file": side["file"],
        "model": model,
        "duration_s": side["duration_s"],
        // Sidecars written before sounds were cut after dying away: the length asked for.
        "requested_duration_s": side.get("requested_duration_s").unwrap_or(&side["duration_s"]),
        "exact_duration": side["exact_duration"].as_bool().unwrap_or(true),
        "count": side["count"],
        "index": side["index"],
        "base_seed": side["base_seed"].as_u64().map(|b| b.to_string()),
        "temperature": side["temperature"],
        "top_k": side["top_k"],
        "top_p": side["top_p"],
        "iterations": side["griffin_lim_iterations"],
        // Sidecars written before candidates existed had one.
        "candidates": side["candidates"].as_u64().unwrap_or(1),
        "kept": kept_seeds(dir).contains(&seed),
    }))
}

/// Every result, newest job first.
fn all_results(s: &Studio) -> ApiResult<Vec<Json_>> {
    let mut jobs: Vec<u64> = std::fs::read_dir(&s.roots.generated)?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    jobs.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for job in jobs {
        let dir = s.roots.generated.join(job.to_string());
        let mut sidecars: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("gen_"))
            })
            .collect();
        sidecars.sort();
        let mut infos: Vec<Json_> = sidecars
            .iter()
            .filter_map(|p| result_info(s, job, p).ok())
            .collect();
        infos.sort_by_key(|r| r["index"].as_u64());
        out.extend(infos);
    }
    Ok(out)
}

#[derive(Deserialize)]
pub struct ResultsQuery {
    kept: Option<bool>,
}

/// The results of every generation job (or only the kept ones).
pub async fn results(
    State(s): S,
    QueryParams(q): QueryParams<ResultsQuery>,
) -> ApiResult<Json<Json_>> {
    let studio = s.clone();
    blocking(move || {
        let mut all = all_results(&studio)?;
        if q.kept == Some(true) {
            all.retain(|r| r["kept"] == true);
        }
        Ok(Json(json!({"results": all})))
    })
    .await
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    download: Option<u8>,
}

/// The WAV of a result (byte ranges; `?download=1` as an attachment).
pub async fn wav(
    State(s): S,
    UrlPath((job, seed)): UrlPath<(String, String)>,
    QueryParams(q): QueryParams<DownloadQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let wav = result_wav(&s, &job, &seed)?;
    let name = format!("distill_{job}_{seed}.wav");
    serve_file(
        &headers,
        &wav,
        (q.download == Some(1)).then_some(name.as_str()),
    )
    .await
}

/// The result as FLAC, encoded once and kept beside the WAV.
pub async fn flac(
    State(s): S,
    UrlPath((job, seed)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let wav = result_wav(&s, &job, &seed)?;
    let flac = wav.with_extension("flac");
    if !flac.is_file() {
        let (src, dst) = (wav.clone(), flac.clone());
        blocking(move || {
            let bytes = crate::studio::media::flac_bytes(&src)
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
            atomic_write(&dst, &bytes)?;
            Ok(())
        })
        .await?;
    }
    serve_file(&headers, &flac, Some(&format!("distill_{job}_{seed}.flac"))).await
}

/// A mel spectrogram thumbnail of the result, rendered once and kept beside the WAV.
pub async fn mel(
    State(s): S,
    UrlPath((job, seed)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let wav = result_wav(&s, &job, &seed)?;
    let png = wav.with_extension("mel.png");
    if !png.is_file() {
        let (src, dst) = (wav.clone(), png.clone());
        blocking(move || {
            let bytes = crate::studio::media::mel_png(&src, 400)
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
            atomic_write(&dst, &bytes)?;
            Ok(())
        })
        .await?;
    }
    serve_file(&headers, &png, None).await
}

#[derive(Deserialize)]
pub struct KeepRequest {
    kept: bool,
}

/// Marks a result kept (or not) for the kit.
pub async fn keep(
    State(s): S,
    UrlPath((job, seed)): UrlPath<(String, String)>,
    JsonBody(req): JsonBody<KeepRequest>,
) -> ApiResult<Json<Json_>> {
    let wav = result_wav(&s, &job, &seed)?;
    let dir = wav.parent().map(Path::to_path_buf).unwrap_or_default();
    let seed: u64 = seed.parse().unwrap_or(0);
    let mut kept = kept_seeds(&dir);
    kept.retain(|&k| k != seed);
    if req.kept {
        kept.push(seed);
    }
    let bytes = serde_json::to_vec(&kept).map_err(|e| ApiError::internal(e.to_string()))?;
    atomic_write(&kept_file(&dir), &bytes)?;
    Ok(Json(
        json!({"job": job, "seed": seed.to_string(), "kept": req.kept}),
    ))
}

#[derive(Deserialize)]
pub struct KitRequest {
    name: String,
}

/// Copies the kept sounds and their sidecars into `kits/NAME/` and zips them as
/// `kits/NAME.zip`.
pub async fn export_kit(
    State(s): S,
    JsonBody(req): JsonBody<KitRequest>,
) -> ApiResult<Json<Json_>> {
    let name = new_name(&req.name)?;
    let studio = s.clone();
    blocking(move || {
        let kept: Vec<Json_> = all_results(&studio)?
            .into_iter()
            .filter(|r| r["kept"] == true)
            .collect();
        if kept.is_empty() {
            return Err(ApiError::bad_request(
                "keep some sounds first: the kit holds the kept sounds",
            ));
        }
        let folder = studio.roots.kits.join(&name);
        let zip_path = studio.roots.kits.join(format!("{name}.zip"));
        if std::fs::symlink_metadata(&folder).is_ok()
            || std::fs::symlink_metadata(&zip_path).is_ok()
        {
            return Err(ApiError::conflict(format!(
                "a kit named {name} already exists"
            )));
        }
        std::fs::create_dir(&folder)?;
        let mut files = Vec::new();
        for r in &kept {
            let job = r["job"].as_u64().unwrap_or(0);
            let seed = r["seed"].as_str().unwrap_or_default();
            let src = studio.roots.generated.join(job.to_string());
            for ext in ["wav", "json"] {
                let file = format!("gen_{seed}.{ext}");
                let shown = format!("distill_{job}_{seed}.{ext}");
                let dst = folder.join(&shown);
                std::fs::copy(src.join(&file), &dst)?;
                files.push((shown, dst));
            }
        }
        let zip = crate::studio::media::zip_files(&files)
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        atomic_write(&zip_path, &zip)?;
        Ok(Json(json!({
            "name": name,
            "folder": folder,
            "sounds": kept.len(),
            "zip": format!("{name}.zip"),
        })))
    })
    .await
}

/// A kit's zip, as a download.
pub async fn kit_file(
    State(s): S,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if !file.ends_with(".zip") {
        return Err(ApiError::not_found("kits are downloaded as .zip"));
    }
    let path = s.roots.child(&s.roots.kits, &file)?;
    serve_file(&headers, &path, Some(&file)).await
}
