//! The page: plain ES modules and CSS embedded in the binary (no build step).

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Studio;

/// (URL path, content type, contents).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/api.js"),
    ),
    (
        "/chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/chart.js"),
    ),
    (
        "/data.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/data.js"),
    ),
    (
        "/train.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/train.js"),
    ),
    (
        "/generate.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/generate.js"),
    ),
    (
        "/library.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/library.js"),
    ),
];

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn routes() -> Router<Arc<Studio>> {
    let mut router = Router::new();
    for &(path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router.route(
        "/favicon.ico",
        get(|| async { axum::http::StatusCode::NO_CONTENT }),
    )
}
