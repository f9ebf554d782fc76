//! The Train tab and the job queue: starting, cancelling and resuming training, the live
//! event stream of any job, and its report files (previews).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value as Json_, json};

use super::{S, serve_file};
use crate::studio::Studio;
use crate::studio::error::{ApiError, ApiResult, JsonBody};
use crate::studio::jobs::{JobKind, JobRecord, JobState};
use crate::studio::paths::{join_inside, new_name};
use crate::studio::run::TrainJob;
use crate::train::{ConfigOverrides, checkpoint_dir};

/// Every job (without events), newest first; queued ones carry their queue position.
pub async fn jobs(State(s): S) -> Json<Json_> {
    Json(json!({"jobs": s.jobs.list()}))
}

fn job_id(raw: &str) -> ApiResult<u64> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("'{raw}' is not a job number")))
}

fn get_job(s: &Studio, raw: &str) -> ApiResult<JobRecord> {
    let id = job_id(raw)?;
    s.jobs
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// One job with all its events.
pub async fn job(State(s): S, UrlPath(id): UrlPath<String>) -> ApiResult<Json<JobRecord>> {
    Ok(Json(get_job(&s, &id)?))
}

/// A training request from the page: the tier's defaults unless overridden.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// The folder of sounds.
    pub data: String,
    /// Name of the model file (without `.distill`).
    pub name: String,
    pub epochs: Option<usize>,
    pub codebook_size: Option<usize>,
    pub rvq_levels: Option<usize>,
    pub hidden_size: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub seed: Option<u64>,
    /// VQ-VAE previews every N epochs (default: about 10 per run).
    pub preview_every: Option<usize>,
}

/// Training jobs that will write `output` and have not ended.
fn active_for(s: &Studio, output: &std::path::Path) -> bool {
    !s.jobs
        .find(|r| {
            r.kind == JobKind::Train
                && !r.state.is_terminal()
                && r.request["output"].as_str() == output.to_str()
        })
        .is_empty()
}

/// Queues a training run.
pub async fn start(State(s): S, JsonBody(req): JsonBody<TrainRequest>) -> ApiResult<Json<Json_>> {
    let data = s.roots.readable_dir(&req.data)?;
    let name = new_name(req.name.trim_end_matches(".distill"))?;
    let output = s.roots.models.join(format!("{name}.distill"));
    if std::fs::symlink_metadata(&output).is_ok() || active_for(&s, &output) {
        return Err(ApiError::conflict(format!(
            "a model named {name} already exists (or is being trained); choose another name"
        )));
    }
    let ranges = [
        ("epochs", req.epochs, 1, 10_000),
        ("codebook size", req.codebook_size, 2, 4096),
        ("levels", req.rvq_levels, 1, 4),
        ("prior size", req.hidden_size, 8, 2048),
        ("layers", req.layers, 1, 24),
        ("heads", req.heads, 1, 32),
    ];
    for (what, v, lo, hi) in ranges {
        if let Some(v) = v
            && !(lo..=hi).contains(&v)
        {
            return Err(ApiError::bad_request(format!(
                "{what} must be between {lo} and {hi}, got {v}"
            )));
        }
    }
    let job = TrainJob {
        data: data.clone(),
        output: output.clone(),
        overrides: ConfigOverrides {
            epochs: req.epochs,
            codebook_size: req.codebook_size,
            rvq_levels: req.rvq_levels,
            hidden_size: req.hidden_size,
            layers: req.layers,
            heads: req.heads,
            ..ConfigOverrides::default()
        },
        seed: Some(req.seed.unwrap_or_else(|| u64::from(rand::random::<u32>()))),
        preview_every: req.preview_every,
        resume: None,
    };
    // The library checks the settings against each other (heads must divide the width…);
    // refusing now gives the message at once rather than in a failed job.
    crate::train::config::resolve(&job.overrides, 20, 20, &mut |_| {})
        .map_err(|e| ApiError::from_library(&e))?;
    let request = serde_json::to_value(&job).map_err(|e| ApiError::internal(e.to_string()))?;
    let id = s.jobs.submit(
        JobKind::Train,
        format!("train {name}"),
        request,
        Vec::new(),
        None,
    );
    Ok(Json(json!({"job": id, "model": format!("{name}.distill")})))
}

/// Stops a job: a queued one leaves the queue, a running training keeps its checkpoint.
pub async fn cancel(State(s): S, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Json_>> {
    let id = job_id(&id)?;
    let was = s.jobs.cancel(id)?;
    Ok(Json(json!({"job": id, "was": was})))
}

/// Continues a cancelled or interrupted training run from its checkpoint, as a new job
/// that carries the old one's events (the chart continues).
pub async fn resume(State(s): S, UrlPath(id): UrlPath<String>) -> ApiResult<Json<Json_>> {
    let old = get_job(&s, &id)?;
    if old.kind != JobKind::Train
        || !matches!(
            old.state,
            JobState::Cancelled | JobState::Interrupted | JobState::Failed
        )
    {
        return Err(ApiError::conflict(format!(
            "job {} cannot be resumed: only a stopped training run can",
            old.id
        )));
    }
    let mut job: TrainJob = serde_json::from_value(old.request.clone())
        .map_err(|e| ApiError::internal(format!("job {}: {e}", old.id)))?;
    let ckpt = checkpoint_dir(&job.output);
    if !ckpt.join("checkpoint.json").is_file() || !ckpt.starts_with(&s.roots.models) {
        return Err(ApiError::conflict(format!(
            "job {} left no checkpoint to resume from (it stopped before its first epoch ended); start it again",
            old.id
        )));
    }
    // The checkpoint names the folder it trains on: it must still be one the studio reads.
    let meta = crate::train::checkpoint::Checkpoints::load_meta(&ckpt)
        .map_err(|e| ApiError::from_library(&e))?;
    let readable = std::fs::canonicalize(&meta.data).is_ok_and(|d| s.roots.is_readable(&d));
    if !readable {
        return Err(ApiError::forbidden(format!(
            "the run trains on {}, which is outside the folders this studio may read",
            meta.data.display()
        )));
    }
    if active_for(&s, &job.output) {
        return Err(ApiError::conflict("this run is already queued or running"));
    }
    job.resume = Some(ckpt);
    let events: Vec<Json_> = old
        .events
        .iter()
        .filter(|e| e["event"] != "job")
        .cloned()
        .chain(std::iter::once(
            json!({"event": "resumed", "from_job": old.id}),
        ))
        .collect();
    let request = serde_json::to_value(&job).map_err(|e| ApiError::internal(e.to_string()))?;
    let title = old.title.trim_end_matches(" (resumed)").to_string() + " (resumed)";
    let id = s
        .jobs
        .submit(JobKind::Train, title, request, events, Some(old.id));
    Ok(Json(json!({"job": id})))
}

/// The events of a job as server-sent events: everything so far, then live ones, then an
/// `end` event once the job has ended. `Last-Event-ID` (a reconnecting EventSource)
/// continues after the last event received.
pub async fn events(
    State(s): S,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = job_id(&id)?;
    let rx = s
        .jobs
        .subscribe(id)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let start = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(0, |last| last + 1);
    let stream = event_stream(s.clone(), id, start, rx);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response())
}

fn event_stream(
    s: Arc<Studio>,
    id: u64,
    start: usize,
    rx: tokio::sync::watch::Receiver<usize>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(
        (s, start, rx, false),
        move |(s, next, mut rx, ended)| async move {
            if ended {
                return None;
            }
            loop {
                // Marked seen before reading, so an event pushed after the read wakes us.
                rx.borrow_and_update();
                let (event, terminal) = s.jobs.event_at(id, next)?;
                if let Some(e) = event {
                    let msg = SseEvent::default().id(next.to_string()).data(e.to_string());
                    return Some((Ok(msg), (s, next + 1, rx, false)));
                }
                if terminal {
                    let msg = SseEvent::default().event("end").data("{}");
                    return Some((Ok(msg), (s, next, rx, true)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        },
    )
}

/// A file of a training job's report folder (previews: WAV and mel PNG), with ranges.
pub async fn report_file(
    State(s): S,
    UrlPath((id, path)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let job = get_job(&s, &id)?;
    let train: TrainJob = serde_json::from_value(job.request.clone())
        .map_err(|_| ApiError::not_found(format!("job {} has no report", job.id)))?;
    let report: PathBuf = train.output.with_extension("report");
    let file = join_inside(&report, &path)?;
    if !file.starts_with(&s.roots.models) || !file.is_file() {
        return Err(ApiError::not_found(format!("{path} is not in the report")));
    }
    serve_file(&headers, &file, None).await
}
