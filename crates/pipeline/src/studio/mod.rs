//! `distill studio`: a local web app over the library — choose or upload a collection and
//! see its scan, train with live loss curves, generate and audition sounds, manage models.
//!
//! * [`paths`]: the folders the studio may read and write, and path checks;
//! * [`auth`]: Host/Origin checks and the session token;
//! * [`jobs`] and [`run`]: the job queue and the job thread (training, generation);
//! * [`routes`]: the HTTP API; [`media`]: FLAC, mel thumbnails, kits; [`assets`]: the page.
//!
//! The server binds 127.0.0.1 unless told otherwise; the page and its scripts are embedded
//! in the binary.

mod assets;
pub mod auth;
pub mod error;
pub mod jobs;
pub mod media;
pub mod paths;
pub mod routes;
pub mod run;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;

use crate::backend::Backend;
pub use error::{ApiError, ApiResult};
use jobs::Jobs;
use paths::Roots;

/// Limits on uploads.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// Largest file accepted.
    pub max_file_bytes: u64,
    /// Most files one collection may hold.
    pub max_files: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 200_000_000,
            max_files: 1000,
        }
    }
}

/// How to run the studio.
#[derive(Debug, Clone)]
pub struct StudioOptions {
    /// Where models live (created when missing); the studio also keeps its collections,
    /// generated sounds, kits and job records here.
    pub models_dir: PathBuf,
    /// Folders whose sounds may be browsed and trained on (read only).
    pub data_roots: Vec<PathBuf>,
    pub bind: IpAddr,
    /// 0 = any free port.
    pub port: u16,
    pub backend: Backend,
    pub limits: UploadLimits,
    /// A fixed session token (tests); `None` draws a random one.
    pub token: Option<String>,
}

impl StudioOptions {
    pub fn new(models_dir: impl Into<PathBuf>, data_roots: Vec<PathBuf>) -> Self {
        Self {
            models_dir: models_dir.into(),
            data_roots,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            backend: Backend::Flex,
            limits: UploadLimits::default(),
            token: None,
        }
    }
}

/// The running studio: shared by every request and the job thread.
pub struct Studio {
    pub token: String,
    pub hosts: auth::HostCheck,
    pub roots: Roots,
    pub jobs: Jobs,
    pub limits: UploadLimits,
    pub backend: Backend,
    /// Library cards by model path, with the file's modification time and size.
    pub(crate) cards: Mutex<HashMap<PathBuf, (std::time::SystemTime, u64, serde_json::Value)>>,
}

impl Studio {
    /// The studio of `options` serving on `port`, its job thread started.
    pub fn open(options: &StudioOptions, port: u16) -> anyhow::Result<Arc<Self>> {
        let roots = Roots::new(&options.models_dir, &options.data_roots)?;
        let jobs = Jobs::load(&roots.state.join("jobs.json"));
        let studio = Arc::new(Self {
            token: options.token.clone().unwrap_or_else(auth::new_token),
            hosts: auth::HostCheck {
                port,
                bind: options.bind,
            },
            roots,
            jobs,
            limits: options.limits,
            backend: options.backend,
            cards: Mutex::new(HashMap::new()),
        });
        run::spawn_worker(studio.clone())?;
        Ok(studio)
    }

    /// The URL to open, token included.
    pub fn url(&self, addr: SocketAddr) -> String {
        let host = if addr.ip().is_loopback() || addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            match addr.ip() {
                IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            }
        };
        format!("http://{host}:{}/?token={}", addr.port(), self.token)
    }
}

/// The whole app: page, assets and API behind the guard.
pub fn router(studio: Arc<Studio>) -> Router {
    routes::api()
        .merge(assets::routes())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            studio.clone(),
            auth::guard,
        ))
        .with_state(studio)
}

/// Leaves the HTTP server headroom: the compute threads (rayon's pool, used by the
/// training and generation kernels) run at a lower priority, and on machines with more
/// than two cores one core is left out of the pool. Must run before anything uses rayon.
pub fn configure_compute_threads() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if cores > 2 { cores - 1 } else { cores };
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("distill-compute-{i}"))
        .start_handler(|_| run::lower_priority())
        .build_global();
}

/// Starts the studio and serves until the process ends; `ready` gets the URL once the
/// server listens.
pub fn serve(options: StudioOptions, ready: impl FnOnce(&str)) -> anyhow::Result<()> {
    configure_compute_threads();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("distill-studio-http")
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((options.bind, options.port))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}:{}: {e} (is another program using the port? try --port 0 for any free one)",
                    options.bind,
                    options.port
                )
            })?;
        let addr = listener.local_addr()?;
        let studio = Studio::open(&options, addr.port())?;
        ready(&studio.url(addr));
        axum::serve(listener, router(studio)).await?;
        Ok(())
    })
}
