//! `distill studio`: the command line of [`crate::studio`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::backend::Backend;
use crate::studio::{StudioOptions, UploadLimits, serve};

#[derive(Debug, Args)]
pub struct StudioArgs {
    /// Models folder (created when missing): models, their reports, uploaded collections,
    /// generated sounds and kits live here.
    #[arg(long, default_value = "distill-models")]
    pub models: PathBuf,
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 7860)]
    pub port: u16,
    /// Open the page in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Folder whose sounds the studio may browse and train on (read only; repeatable).
    /// Default: your home folder.
    #[arg(long = "data-root")]
    pub data_roots: Vec<PathBuf>,
    /// Address to listen on. Anything but 127.0.0.1 / ::1 lets other computers reach the
    /// studio (they still need the token): only on a network you trust.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Largest uploaded file, in MB.
    #[arg(long, default_value_t = 200)]
    pub max_upload_mb: u64,
}

pub fn run(args: &StudioArgs, backend: Backend) -> anyhow::Result<ExitCode> {
    let data_roots = if args.data_roots.is_empty() {
        crate::studio::paths::home_dir().into_iter().collect()
    } else {
        args.data_roots.clone()
    };
    if !args.bind.is_loopback() {
        eprintln!(
            "warning: listening on {} — other computers on the network can reach the studio (they still need the token in the URL). Use this only on a network you trust.",
            args.bind
        );
    }
    let options = StudioOptions {
        bind: args.bind,
        port: args.port,
        backend,
        limits: UploadLimits {
            max_file_bytes: args.max_upload_mb.saturating_mul(1_000_000),
            ..UploadLimits::default()
        },
        ..StudioOptions::new(&args.models, data_roots)
    };
    let open = args.open;
    serve(options, |url| {
        println!("distill studio: {url}");
        println!("(models in {}; stop with Ctrl-C)", args.models.display());
        if open {
            open_browser(url);
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Asks the desktop to open `url`; a failure only prints a hint.
fn open_browser(url: &str) {
    let cmd = if cfg!(target_os = "macos") {
        ("open", vec![url])
    } else if cfg!(windows) {
        ("explorer", vec![url])
    } else {
        ("xdg-open", vec![url])
    };
    if std::process::Command::new(cmd.0)
        .args(&cmd.1)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_err()
    {
        eprintln!("could not open a browser; open the URL above yourself");
    }
}
