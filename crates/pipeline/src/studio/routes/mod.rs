//! The HTTP API, all under `/api/` (token required): one module per tab of the page.

pub mod data;
pub mod generate;
pub mod library;
pub mod train;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::json;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::Studio;
use super::error::{ApiError, ApiResult};

type S = State<Arc<Studio>>;

/// Every API route.
pub fn api() -> Router<Arc<Studio>> {
    Router::new()
        .route("/api/state", get(state))
        .route("/api/fs/browse", get(data::browse))
        .route("/api/scan", post(data::scan))
        .route(
            "/api/collections",
            get(data::collections).post(data::create_collection),
        )
        .route("/api/collections/{name}/files/{file}", put(data::upload))
        .route("/api/jobs", get(train::jobs))
        .route("/api/jobs/train", post(train::start))
        .route("/api/jobs/generate", post(generate::start))
        .route("/api/jobs/{id}", get(train::job))
        .route("/api/jobs/{id}/events", get(train::events))
        .route("/api/jobs/{id}/cancel", post(train::cancel))
        .route("/api/jobs/{id}/resume", post(train::resume))
        .route("/api/jobs/{id}/report/{*path}", get(train::report_file))
        .route("/api/results", get(generate::results))
        .route("/api/results/{job}/{seed}/audio.wav", get(generate::wav))
        .route("/api/results/{job}/{seed}/audio.flac", get(generate::flac))
        .route("/api/results/{job}/{seed}/mel.png", get(generate::mel))
        .route("/api/results/{job}/{seed}/keep", post(generate::keep))
        .route("/api/kit", post(generate::export_kit))
        .route("/api/kits/{file}", get(generate::kit_file))
        .route("/api/models", get(library::models))
        .route(
            "/api/models/{file}",
            get(library::model).delete(library::delete),
        )
        .route("/api/models/{file}/rename", post(library::rename))
}

/// What the page needs to start: folders, limits, the machine.
async fn state(State(s): S) -> impl IntoResponse {
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "models_dir": s.roots.models,
        "collections_dir": s.roots.collections,
        "data_roots": s.roots.data,
        "browse_roots": s.roots.browse_roots(),
        "backend": s.backend.name(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "limits": {
            "max_file_bytes": s.limits.max_file_bytes,
            "max_files": s.limits.max_files,
            "max_duration_s": generate::MAX_DURATION_S,
            "max_count": generate::MAX_COUNT,
        },
    }))
}

/// Unknown paths: a JSON 404 for the API, a plain one otherwise.
pub async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::not_found(format!("no such API route: {}", uri.path())).into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found").into_response()
    }
}

/// A known route asked with the wrong method: a JSON 405.
pub async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
    .into_response()
}

/// Serves a file with byte ranges (so audio players can seek) and, for downloads, a
/// Content-Disposition naming it.
pub async fn serve_file(
    headers: &HeaderMap,
    path: &Path,
    download: Option<&str>,
) -> ApiResult<Response> {
    let mut req = Request::new(Body::empty());
    for name in [
        header::RANGE,
        header::IF_RANGE,
        header::IF_MODIFIED_SINCE,
        header::IF_NONE_MATCH,
    ] {
        if let Some(v) = headers.get(&name) {
            req.headers_mut().insert(name, v.clone());
        }
    }
    let response = ServeFile::new(path)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::internal(format!("serving a file: {e}")))?;
    let mut response = response.map(Body::new);
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::not_found("the file does not exist"));
    }
    if let Some(name) = download {
        let safe: String = name
            .chars()
            .map(|c| {
                if c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    // Generated files never change under the same name; let the browser keep them briefly.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    Ok(response)
}

/// Runs blocking work (decoding, model files, encoders) off the HTTP threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await?
}
