//! `distill studio` in process: every API route through the router (no browser, no
//! socket), including the refusals — token, Host, Origin, paths outside the chosen
//! folders, bad uploads. The browser end-to-end test is `studio_e2e_in_chromium`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use pipeline::studio::{Studio, StudioOptions, UploadLimits, router};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::util::{fixture_model, root, synthetic_collection};

const TOKEN: &str = "test-token-0123456789";
const PORT: u16 = 4242;
const HOST: &str = "127.0.0.1:4242";

struct App {
    _dir: tempfile::TempDir,
    base: PathBuf,
    /// The data root (readable) and a collection of sounds inside it.
    sounds: PathBuf,
    models: PathBuf,
    studio: Arc<Studio>,
    router: Router,
}

fn app_with(limits: UploadLimits) -> App {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().canonicalize().expect("canonical");
    let data_root = base.join("root");
    let sounds = data_root.join("sounds");
    std::fs::create_dir_all(&sounds).expect("mkdir");
    synthetic_collection(&sounds, 4);
    std::fs::write(base.join("secret.txt"), b"not for the studio").expect("secret");
    let models = base.join("models");
    let options = StudioOptions {
        token: Some(TOKEN.into()),
        limits,
        ..StudioOptions::new(&models, vec![data_root])
    };
    let studio = Studio::open(&options, PORT).expect("studio opens");
    App {
        _dir: dir,
        router: router(studio.clone()),
        studio,
        base,
        sounds,
        models,
    }
}

fn app() -> App {
    app_with(UploadLimits::default())
}

fn request(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
        .header("x-distill-token", TOKEN)
}

impl App {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, body.to_vec(), headers)
    }

    /// A JSON call with the token; the answer as JSON (`null` when it is not JSON).
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = match body {
            Some(b) => request(method, uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => request(method, uri).body(Body::empty()),
        }
        .expect("request");
        let (status, bytes, _) = self.send(req).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn upload(&self, collection: &str, file: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let req = request(
            "PUT",
            &format!("/api/collections/{collection}/files/{file}"),
        )
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes))
        .expect("request");
        let (status, body, _) = self.send(req).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// The events of a job until it ends (the stream closes after its `end` event).
    async fn events(&self, job: u64) -> Vec<Value> {
        let req = request("GET", &format!("/api/jobs/{job}/events"))
            .body(Body::empty())
            .expect("request");
        let (status, body, headers) = self.send(req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
        let text = String::from_utf8(body).expect("utf-8");
        assert!(
            text.contains("event: end"),
            "the stream ends with an end event"
        );
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "{}")
            .map(|d| serde_json::from_str(d).expect("event JSON"))
            .collect()
    }

    /// Polls a job until `pred` holds for it (30 s at most).
    async fn wait_job(&self, job: u64, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let (_, j) = self.call("GET", &format!("/api/jobs/{job}"), None).await;
            if pred(&j) {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {job} never reached the expected state");
    }

    fn error(v: &Value) -> &str {
        v["error"].as_str().unwrap_or_default()
    }
}

fn wav_bytes(seconds: f32, rate: u32) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut cursor, spec).expect("wav");
    for i in 0..(seconds * rate as f32) as usize {
        let t = i as f32 / rate as f32;
        w.write_sample(((t * 440.0 * std::f32::consts::TAU).sin() * 8000.0) as i16)
            .expect("sample");
    }
    w.finalize().expect("finalize");
    cursor.into_inner()
}

fn tiny_training(data: &Path, name: &str, epochs: usize) -> Value {
    json!({
        "data": data, "name": name, "epochs": epochs, "codebook_size": 16, "rvq_levels": 2,
        "hidden_size": 32, "layers": 1, "heads": 2, "seed": 3, "preview_every": 1,
    })
}

#[tokio::test]
async fn the_token_host_and_origin_are_checked_on_every_call() {
    let app = app();
    let plain = |uri: &str| Request::builder().uri(uri).header(header::HOST, HOST);
    // No token: 401; a wrong one: 403; in the query: fine.
    let (s, body, _) = app
        .send(plain("/api/state").body(Body::empty()).expect("req"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&body).contains("missing session token"));
    let wrong = plain("/api/state")
        .header("x-distill-token", "nope")
        .body(Body::empty());
    assert_eq!(app.send(wrong.expect("req")).await.0, StatusCode::FORBIDDEN);
    let wrong_query = plain("/api/models?token=nope")
        .body(Body::empty())
        .expect("req");
    assert_eq!(app.send(wrong_query).await.0, StatusCode::FORBIDDEN);
    let ok = plain(&format!("/api/state?token={TOKEN}"))
        .body(Body::empty())
        .expect("req");
    let (s, body, headers) = app.send(ok).await;
    assert_eq!(s, StatusCode::OK);
    let state: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(state["models_dir"], json!(app.models));
    assert!(
        headers["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("default-src 'self'")
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    // Every route refuses a missing token, before anything else happens.
    for (method, uri) in [
        ("GET", "/api/fs/browse"),
        ("POST", "/api/scan"),
        ("GET", "/api/collections"),
        ("POST", "/api/collections"),
        ("PUT", "/api/collections/x/files/y.wav"),
        ("GET", "/api/jobs"),
        ("POST", "/api/jobs/train"),
        ("POST", "/api/jobs/generate"),
        ("GET", "/api/jobs/1"),
        ("GET", "/api/jobs/1/events"),
        ("POST", "/api/jobs/1/cancel"),
        ("POST", "/api/jobs/1/resume"),
        ("GET", "/api/jobs/1/report/previews/a.wav"),
        ("GET", "/api/results"),
        ("GET", "/api/results/1/2/audio.wav"),
        ("GET", "/api/results/1/2/audio.flac"),
        ("GET", "/api/results/1/2/mel.png"),
        ("POST", "/api/results/1/2/keep"),
        ("POST", "/api/kit"),
        ("GET", "/api/kits/a.zip"),
        ("GET", "/api/models"),
        ("GET", "/api/models/a.distill"),
        ("DELETE", "/api/models/a.distill"),
        ("POST", "/api/models/a.distill/rename"),
        ("GET", "/api/no-such-route"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, HOST)
            .body(Body::empty())
            .expect("req");
        assert_eq!(
            app.send(req).await.0,
            StatusCode::UNAUTHORIZED,
            "{method} {uri}"
        );
    }
    // DNS rebinding: another name in Host is refused, even with the token; so is the page.
    for host in [
        "evil.example:4242",
        "127.0.0.1:9999",
        "localhost.evil.example:4242",
    ] {
        let req = Request::builder()
            .uri("/api/state")
            .header(header::HOST, host)
            .header("x-distill-token", TOKEN)
            .body(Body::empty())
            .expect("req");
        let (s, body, _) = app.send(req).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{host}");
        assert!(String::from_utf8_lossy(&body).contains("DNS rebinding"));
    }
    let page = Request::builder()
        .uri("/")
        .header(header::HOST, "evil.example:4242")
        .body(Body::empty())
        .expect("req");
    assert_eq!(app.send(page).await.0, StatusCode::FORBIDDEN);
    // Cross-site requests: a foreign Origin is refused; the page's own is fine.
    for (origin, expected) in [
        ("http://evil.example", StatusCode::FORBIDDEN),
        ("null", StatusCode::FORBIDDEN),
        ("http://127.0.0.1:4242", StatusCode::OK),
    ] {
        let req = request("POST", "/api/collections")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name": "from origin test"}"#))
            .expect("req");
        assert_eq!(app.send(req).await.0, expected, "{origin}");
    }
    assert_eq!(
        std::fs::read_dir(app.models.join("collections"))
            .expect("dir")
            .count(),
        1,
        "only the same-origin request created a collection"
    );
    // The page and its modules need no token (they hold no data).
    for asset in [
        "/",
        "/app.js",
        "/api.js",
        "/chart.js",
        "/data.js",
        "/train.js",
        "/generate.js",
        "/library.js",
        "/style.css",
    ] {
        let req = Request::builder()
            .uri(asset)
            .header(header::HOST, "localhost:4242")
            .body(Body::empty());
        let (s, body, _) = app.send(req.expect("req")).await;
        assert_eq!(s, StatusCode::OK, "{asset}");
        assert!(!body.is_empty());
    }
    let (s, v) = app.call("GET", "/api/jobs/train", None).await;
    assert_eq!(
        (s, App::error(&v)),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "/api/jobs/train does not accept GET"
        )
    );
    let (s, v) = app.call("GET", "/api/no-such-route", None).await;
    assert_eq!(
        (s, App::error(&v).starts_with("no such API route")),
        (StatusCode::NOT_FOUND, true)
    );
}

#[tokio::test]
async fn paths_outside_the_chosen_folders_are_refused_and_never_read() {
    let app = app();
    let secret = app.base.join("secret.txt");
    let outside = app.base.join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::copy(app.sounds.join("hit0.wav"), outside.join("hit0.wav")).expect("copy");
    // A symbolic link inside the data root that points out of it.
    std::os::unix::fs::symlink(&outside, app.sounds.parent().expect("root").join("escape"))
        .expect("symlink");
    let escape = app.sounds.parent().expect("root").join("escape");
    let dotdot = format!("{}/../../outside", app.sounds.display());
    for path in [
        "/etc".to_string(),
        outside.display().to_string(),
        dotdot.clone(),
        escape.display().to_string(),
    ] {
        for (method, uri, body) in [
            ("POST", "/api/scan".to_string(), Some(json!({"path": path}))),
            (
                "GET",
                format!("/api/fs/browse?path={}", path.replace('/', "%2F")),
                None,
            ),
            (
                "POST",
                "/api/jobs/train".to_string(),
                Some(tiny_training(Path::new(&path), "x", 1)),
            ),
        ] {
            let (s, v) = app.call(method, &uri, body).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri} {path}: {v}");
            assert!(App::error(&v).contains("outside the folders"), "{v}");
        }
    }
    let (s, v) = app
        .call(
            "POST",
            "/api/scan",
            Some(json!({"path": "relative/folder"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = app
        .call("POST", "/api/scan", Some(json!({"path": secret})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Names in URLs: traversal, absolute paths and hidden files are refused.
    for uri in [
        "/api/models/..%2Fsecret.txt",
        "/api/models/%2Fetc%2Fpasswd",
        "/api/models/.studio",
        "/api/kits/..%2F..%2Fsecret.txt",
        "/api/kits/..%2F.studio%2Fjobs.json",
        "/api/results/..%2F..%2F/1/audio.wav",
        "/api/results/1/..%2Fsecret/audio.wav",
        "/api/jobs/1/report/..%2F..%2Fsecret.txt",
    ] {
        let (s, v) = app.call("GET", uri, None).await;
        assert!(s.is_client_error(), "{uri}: {s} {v}");
        assert!(v["error"].is_string(), "{uri}: a JSON error");
    }
    let (s, _) = app
        .call(
            "DELETE",
            "/api/models/..%2Fsecret.txt",
            Some(json!({"confirm": "../secret.txt"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app
        .call("PUT", "/api/collections/..%2F..%2Froot/files/x.wav", None)
        .await;
    assert!(s.is_client_error());
    assert_eq!(
        std::fs::read(&secret).expect("secret"),
        b"not for the studio"
    );
    assert!(outside.join("hit0.wav").exists() && app.base.join("root/escape").exists());
    // Inside the data root, browsing and scanning work.
    let (s, v) = app.call("GET", "/api/fs/browse", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["dirs"][0]["path"], json!(app.sounds.parent()));
    let uri = format!(
        "/api/fs/browse?path={}",
        app.sounds.parent().expect("root").display()
    );
    let (s, v) = app.call("GET", &uri, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let names: Vec<&str> = v["dirs"]
        .as_array()
        .expect("dirs")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(names.contains(&"sounds"));
}

#[tokio::test]
async fn scanning_reports_files_totals_and_the_tier() {
    let app = app();
    std::fs::write(app.sounds.join("notes.txt"), b"just text").expect("write");
    let (s, v) = app
        .call("POST", "/api/scan", Some(json!({"path": app.sounds})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["totals"]["files"], 5);
    assert_eq!(v["totals"]["usable"], 4);
    assert_eq!(v["tier"]["name"], "small");
    assert!(
        v["tier"]["meaning"]
            .as_str()
            .expect("meaning")
            .contains("up to 20 files")
    );
    let txt = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["name"] == "notes.txt")
        .expect("txt");
    assert_eq!(txt["usable"], false);
    assert_eq!(txt["problems"][0]["text"], "not a supported audio format");
    let hit = &v["files"][0];
    assert_eq!(
        (
            hit["format"].as_str(),
            hit["sample_rate"].as_u64(),
            hit["channels"].as_u64()
        ),
        (Some("pcm_s16le"), Some(44_100), Some(1))
    );
    let (s, v) = app
        .call(
            "POST",
            "/api/scan",
            Some(json!({"path": app.sounds.join("nope")})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = app
        .call("POST", "/api/scan", Some(json!({"wrong": 1})))
        .await;
    assert!(
        s.is_client_error() && App::error(&v).starts_with("bad request body"),
        "{s} {v}"
    );
}

#[tokio::test]
async fn uploads_keep_audio_and_refuse_the_rest_with_a_clear_message() {
    let app = app_with(UploadLimits {
        max_file_bytes: 200_000,
        max_files: 3,
    });
    let (s, v) = app
        .call(
            "POST",
            "/api/collections",
            Some(json!({"name": "my kicks"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dir = app.models.join("collections/my kicks");
    let (s, _) = app
        .call(
            "POST",
            "/api/collections",
            Some(json!({"name": "my kicks"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = app
        .call("POST", "/api/collections", Some(json!({"name": "../up"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, v) = app
        .upload("my%20kicks", "kick.wav", wav_bytes(1.0, 44_100))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["file"].as_str(), v["sample_rate"].as_u64()),
        (Some("kick.wav"), Some(44_100))
    );
    // The same name again is kept beside it.
    let (s, v) = app
        .upload("my%20kicks", "kick.wav", wav_bytes(0.5, 48_000))
        .await;
    assert_eq!(
        (s, v["file"].as_str()),
        (StatusCode::OK, Some("kick (2).wav"))
    );

    let listing = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing(&dir);
    // Not audio.
    let (s, v) = app
        .upload(
            "my%20kicks",
            "notes.wav",
            b"this is text, not sound".repeat(20),
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        App::error(&v).contains("notes.wav is not an audio file"),
        "{v}"
    );
    // Too large: refused from its Content-Length, and while streaming without one.
    let (s, v) = app
        .upload("my%20kicks", "big.wav", wav_bytes(3.0, 48_000))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(App::error(&v).contains("too large"), "{v}");
    let chunked = request("PUT", "/api/collections/my%20kicks/files/big.wav")
        .body(Body::from_stream(futures_util::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(vec![0u8; 60_000])),
        )))
        .expect("req");
    assert_eq!(app.send(chunked).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Truncated: the header promises more audio than the file holds.
    let mut cut = wav_bytes(1.0, 44_100);
    cut.truncate(cut.len() / 2);
    let (s, v) = app.upload("my%20kicks", "cut.wav", cut).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(App::error(&v).contains("truncated"), "{v}");
    // A body shorter than its Content-Length (the connection dropped).
    let short = request("PUT", "/api/collections/my%20kicks/files/short.wav")
        .header(header::CONTENT_LENGTH, 50_000)
        .body(Body::from(wav_bytes(0.2, 44_100)))
        .expect("req");
    let (s, body, _) = app.send(short).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("cut off"));
    // Bad names and unknown collections.
    let (s, _) = app
        .upload("my%20kicks", "..%2Fescape.wav", wav_bytes(0.2, 44_100))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.upload("nope", "a.wav", wav_bytes(0.2, 44_100)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        listing(&dir),
        before,
        "refused uploads leave nothing behind"
    );
    assert!(
        !app.models.join("escape.wav").exists()
            && !app.models.join("collections/escape.wav").exists()
    );
    // The count limit.
    let (s, _) = app
        .upload("my%20kicks", "third.wav", wav_bytes(0.2, 44_100))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app
        .upload("my%20kicks", "fourth.wav", wav_bytes(0.2, 44_100))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        App::error(&v).contains("the most one collection may hold"),
        "{v}"
    );
    let (s, v) = app.call("GET", "/api/collections", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["collections"][0]["files"], 3);
    // A collection is a readable folder: it scans.
    let (s, v) = app
        .call("POST", "/api/scan", Some(json!({"path": dir})))
        .await;
    assert_eq!(
        (s, v["totals"]["usable"].as_u64()),
        (StatusCode::OK, Some(3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_generate_keep_export_rename_and_delete() {
    let app = app();
    let (s, v) = app
        .call(
            "POST",
            "/api/jobs/train",
            Some(tiny_training(&app.sounds, "tiny", 2)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let job = v["job"].as_u64().expect("job id");
    // Refusals while it is queued or running.
    let (s, _) = app
        .call(
            "POST",
            "/api/jobs/train",
            Some(tiny_training(&app.sounds, "tiny", 2)),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "the same model name twice");
    let mut bad = tiny_training(&app.sounds, "bad", 2);
    bad["heads"] = json!(3);
    let (s, v) = app.call("POST", "/api/jobs/train", Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let mut bad = tiny_training(&app.sounds, "bad", 2);
    bad["epochs"] = json!(0);
    let (s, v) = app.call("POST", "/api/jobs/train", Some(bad)).await;
    assert_eq!(
        (s, App::error(&v)),
        (
            StatusCode::BAD_REQUEST,
            "epochs must be between 1 and 10000, got 0"
        )
    );

    let events = app.events(job).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for k in [
        "config",
        "stage_started",
        "epoch",
        "preview",
        "stage_finished",
        "done",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    for stage in ["vqvae", "prior"] {
        let n = events
            .iter()
            .filter(|e| e["event"] == "epoch" && e["stage"] == stage)
            .count();
        assert_eq!(n, 2, "{stage} epochs");
    }
    // A second subscriber (a reloaded page) gets the same history.
    assert_eq!(app.events(job).await, events);
    let (_, j) = app.call("GET", &format!("/api/jobs/{job}"), None).await;
    assert_eq!(
        (j["state"].as_str(), j["result"]["model"].as_str()),
        (Some("finished"), Some("tiny.distill"))
    );
    let (s, _) = app
        .call("POST", &format!("/api/jobs/{job}/cancel"), None)
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "a finished job cannot be cancelled"
    );
    let (s, _) = app
        .call("POST", &format!("/api/jobs/{job}/resume"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "nor resumed");
    // Previews are served from the report folder, with byte ranges.
    let preview = events
        .iter()
        .find(|e| e["event"] == "preview")
        .expect("preview");
    let wav = preview["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f.as_str())
        .find(|f| f.ends_with(".wav"))
        .expect("wav");
    let req = request("GET", &format!("/api/jobs/{job}/report/{wav}"))
        .header(header::RANGE, "bytes=0-9")
        .body(Body::empty())
        .expect("req");
    let (s, body, _) = app.send(req).await;
    assert_eq!((s, body.len()), (StatusCode::PARTIAL_CONTENT, 10));
    for bad in [
        "..%2F..%2Fsecret.txt",
        "../../secret.txt",
        "previews/..%2F..%2F..%2Fsecret.txt",
        "%2Fetc%2Fpasswd",
    ] {
        let (s, v) = app
            .call("GET", &format!("/api/jobs/{job}/report/{bad}"), None)
            .await;
        assert!(s.is_client_error(), "{bad}: {s} {v}");
    }

    // Library: the model is a card, with the reference system's file beside it.
    std::fs::copy(fixture_model(), app.models.join("upstream.distill")).expect("copy fixture");
    std::fs::write(app.models.join("notes.txt"), b"not a model").expect("write");
    let (s, v) = app.call("GET", "/api/models", None).await;
    assert_eq!(s, StatusCode::OK);
    let cards = v["models"].as_array().expect("models");
    assert_eq!(cards.len(), 2, "{v}");
    let tiny = cards
        .iter()
        .find(|c| c["file"] == "tiny.distill")
        .expect("tiny card");
    assert_eq!(tiny["has_prior"], true);
    assert_eq!(tiny["corpus"]["files"], 4);
    assert_eq!(tiny["history"]["vqvae"].as_array().map(Vec::len), Some(2));
    assert!(
        ["healthy", "some codes unused", "collapse"]
            .contains(&tiny["health"]["verdict"].as_str().expect("verdict"))
    );
    let reference = cards
        .iter()
        .find(|c| c["file"] == "upstream.distill")
        .expect("reference card");
    assert_eq!(reference["reference"], true);
    let (s, v) = app.call("GET", "/api/models/tiny.distill", None).await;
    assert_eq!(
        (s, v["info"]["format"].as_str()),
        (StatusCode::OK, Some("distill-safetensors"))
    );
    let (s, _) = app.call("GET", "/api/models/missing.distill", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Generate 2 sounds; errors first.
    for (body, status) in [
        (json!({"model": "missing.distill"}), StatusCode::NOT_FOUND),
        (
            json!({"model": "tiny.distill", "duration": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"model": "tiny.distill", "count": 100}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"model": "tiny.distill", "top_p": 2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"model": "tiny.distill", "candidates": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"model": "tiny.distill", "bogus": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"model": "tiny.distill", "seed": "-1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (s, v) = app
            .call("POST", "/api/jobs/generate", Some(body.clone()))
            .await;
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["error"].is_string());
    }
    let settings = json!({"model": "tiny.distill", "duration": 1.5, "count": 2, "seed": 11, "temperature": 0.9, "top_k": 0, "top_p": 0.9, "iterations": 4, "candidates": 2, "exact_duration": true});
    let (s, v) = app.call("POST", "/api/jobs/generate", Some(settings)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let gen_job = v["job"].as_u64().expect("job");
    let events = app.events(gen_job).await;
    let sounds: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "sound")
        .map(|e| &e["result"])
        .collect();
    assert_eq!(sounds.len(), 2);
    assert!(events.iter().any(|e| e["event"] == "progress"));
    let first = sounds[0];
    assert_eq!(
        (first["duration_s"].as_f64(), first["temperature"].as_f64()),
        (Some(1.5), Some(0.9))
    );
    assert_eq!(first["candidates"], 2, "the result records its candidates");
    assert_eq!(
        (
            first["requested_duration_s"].as_f64(),
            first["exact_duration"].as_bool()
        ),
        (Some(1.5), Some(true))
    );
    let seed: u64 = first["seed"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("seed as a string");
    let base = format!("/api/results/{gen_job}/{seed}");
    let (s, wav, headers) = app
        .send(
            request("GET", &format!("{base}/audio.wav"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers[header::ACCEPT_RANGES], "bytes");
    let decoded = hound::WavReader::new(std::io::Cursor::new(&wav)).expect("a WAV");
    assert_eq!(decoded.duration(), 72_000, "exactly 1.5 s at 48 kHz");
    let (s, part, _) = app
        .send(
            request("GET", &format!("{base}/audio.wav"))
                .header(header::RANGE, "bytes=100-199")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(
        (s, part.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &wav[100..200])
    );
    let (s, _, headers) = app
        .send(
            request("GET", &format!("{base}/audio.wav?download=1"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .expect("cd")
            .starts_with("attachment")
    );
    let (s, flac, _) = app
        .send(
            request("GET", &format!("{base}/audio.flac"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!((s, &flac[..4]), (StatusCode::OK, b"fLaC".as_slice()));
    let flac_path = app
        .models
        .join(format!("generated/{gen_job}/gen_{seed}.flac"));
    let from_flac = audio::decode::decode_file(&flac_path).expect("the FLAC decodes");
    assert_eq!(
        (from_flac.samples.len(), from_flac.sample_rate),
        (72_000, 48_000)
    );
    let (s, png, _) = app
        .send(
            request("GET", &format!("{base}/mel.png"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!((s, &png[..4]), (StatusCode::OK, b"\x89PNG".as_slice()));
    let (s, _) = app
        .call(
            "GET",
            &format!("/api/results/{gen_job}/999/audio.wav"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Regenerating one result from its seed gives the same file.
    let again = json!({"model": "tiny.distill", "duration": 1.5, "count": 1, "seed": seed.to_string(), "temperature": 0.9, "top_k": 0, "top_p": 0.9, "iterations": 4, "candidates": 2});
    let (_, v) = app.call("POST", "/api/jobs/generate", Some(again)).await;
    let regen = v["job"].as_u64().expect("job");
    app.events(regen).await;
    // The event stream can end a moment before the job's final state is recorded; the
    // restart below expects it recorded.
    app.wait_job(regen, |j| j["state"] == "finished").await;
    let same = std::fs::read(app.models.join(format!("generated/{regen}/gen_{seed}.wav")))
        .expect("regenerated");
    assert_eq!(same, wav, "the same seed and settings give the same sound");

    // Keep one, export the kit.
    let (s, v) = app
        .call("POST", "/api/kit", Some(json!({"name": "kit one"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "nothing kept yet: {v}");
    let (s, _) = app
        .call("POST", &format!("{base}/keep"), Some(json!({"kept": true})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = app.call("GET", "/api/results?kept=true", None).await;
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1));
    let (_, v) = app.call("GET", "/api/results", None).await;
    assert_eq!(v["results"].as_array().map(Vec::len), Some(3));
    let (s, v) = app
        .call("POST", "/api/kit", Some(json!({"name": "kit one"})))
        .await;
    assert_eq!((s, v["sounds"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let kit = app.models.join("kits/kit one");
    assert!(
        kit.join(format!("distill_{gen_job}_{seed}.wav")).is_file()
            && kit.join(format!("distill_{gen_job}_{seed}.json")).is_file()
    );
    let (s, zip, headers) = app
        .send(
            request("GET", "/api/kits/kit%20one.zip")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!((s, &zip[..2]), (StatusCode::OK, b"PK".as_slice()));
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .expect("cd")
            .contains("kit one.zip")
    );
    let (s, _) = app
        .call("POST", "/api/kit", Some(json!({"name": "kit one"})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Rename, then delete with confirmation.
    let (s, _) = app
        .call(
            "POST",
            "/api/models/tiny.distill/rename",
            Some(json!({"name": "upstream"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = app
        .call(
            "POST",
            "/api/models/tiny.distill/rename",
            Some(json!({"name": "drums v1"})),
        )
        .await;
    assert_eq!(
        (s, v["file"].as_str()),
        (StatusCode::OK, Some("drums v1.distill"))
    );
    assert!(
        app.models.join("drums v1.report").is_dir() && !app.models.join("tiny.report").exists()
    );
    let (s, v) = app
        .call(
            "DELETE",
            "/api/models/drums%20v1.distill",
            Some(json!({"confirm": "wrong"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(app.models.join("drums v1.distill").is_file());
    let (s, _) = app
        .call(
            "DELETE",
            "/api/models/drums%20v1.distill",
            Some(json!({"confirm": "drums v1.distill"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !app.models.join("drums v1.distill").exists()
            && !app.models.join("drums v1.report").exists()
    );
    let (_, v) = app.call("GET", "/api/models", None).await;
    assert_eq!(v["models"].as_array().map(Vec::len), Some(1));

    // A restarted studio shows the finished jobs.
    let reopened = Studio::open(
        &StudioOptions {
            token: Some(TOKEN.into()),
            ..StudioOptions::new(&app.models, vec![app.sounds.clone()])
        },
        PORT,
    )
    .expect("reopens");
    let jobs = reopened.jobs.list();
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j["state"] == "finished"), "{jobs:?}");
    assert_eq!(app.studio.jobs.list().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_keeps_its_checkpoint_and_resumes_with_its_history() {
    let app = app();
    let (s, v) = app
        .call(
            "POST",
            "/api/jobs/train",
            Some(tiny_training(&app.sounds, "long", 6)),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let job = v["job"].as_u64().expect("job");
    app.wait_job(job, |j| {
        j["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["event"] == "epoch"))
    })
    .await;
    let (s, v) = app
        .call("POST", &format!("/api/jobs/{job}/cancel"), None)
        .await;
    assert_eq!((s, v["was"].as_str()), (StatusCode::OK, Some("running")));
    let j = app.wait_job(job, |j| j["state"] != "running").await;
    assert_eq!(j["state"], "cancelled", "{j}");
    let ckpt = app.models.join("long.distill.ckpt");
    assert_eq!(j["checkpoint"], json!(ckpt));
    assert!(ckpt.join("checkpoint.json").is_file());
    let done_before = j["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "epoch")
        .count();

    let (s, v) = app
        .call("POST", &format!("/api/jobs/{job}/resume"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let resumed = v["job"].as_u64().expect("job");
    let events = app.events(resumed).await;
    let epochs: Vec<(String, u64)> = events
        .iter()
        .filter(|e| e["event"] == "epoch")
        .map(|e| {
            (
                e["stage"].as_str().unwrap_or_default().to_string(),
                e["epoch"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        epochs.len() >= 12,
        "the resumed job's history holds the old epochs too: {epochs:?}"
    );
    assert!(epochs.len() <= 12 + done_before);
    assert!(events.iter().any(|e| e["event"] == "resumed"));
    let config = events
        .iter()
        .rfind(|e| e["event"] == "config")
        .expect("config");
    assert!(config["resumed_at"].as_u64().unwrap_or(0) >= 1);
    let (_, j) = app.call("GET", &format!("/api/jobs/{resumed}"), None).await;
    assert_eq!(
        (j["state"].as_str(), j["resumed_from"].as_u64()),
        (Some("finished"), Some(job))
    );
    assert!(app.models.join("long.distill").is_file() && !ckpt.exists());
    let (s, _) = app.call("POST", "/api/jobs/99/cancel", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.call("GET", "/api/jobs/abc", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = app.call("GET", "/api/jobs/99/events", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The browser end-to-end test: `tests/studio-e2e/e2e.mjs` drives Debian's Chromium through
/// playwright-core against the built `distill` binary and writes the screenshots in docs/.
#[test]
#[ignore = "needs Debian's chromium and the npm packages of tests/studio-e2e; .ci/run installs them and runs it with -- --ignored"]
fn studio_e2e_in_chromium() {
    let dir = root().join("tests/studio-e2e");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "the browser test needs Chromium at {chromium} (apt-get install chromium); it does not skip itself"
    );
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "the browser test needs `npm ci --prefix tests/studio-e2e` first"
    );
    let status = std::process::Command::new("node")
        .arg(dir.join("e2e.mjs"))
        .env("DISTILL_BIN", env!("CARGO_BIN_EXE_distill"))
        .env("CHROMIUM", &chromium)
        .status()
        .expect("node runs (apt-get install nodejs npm)");
    assert!(status.success(), "the browser end-to-end test failed");
}
