//! `distill scan`: what a folder of sounds holds and what is wrong with it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use audio::scan::{ScanReport, scan_with_progress};
use clap::Args;

use super::progress;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Folder to scan (recursively; hidden files and folders are skipped).
    pub dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ScanArgs) -> anyhow::Result<ExitCode> {
    let bar = progress::bar(0, "scanning", args.json);
    let report = scan_with_progress(&args.dir, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("scanning {}", args.dir.display()))?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json_report(&report))?);
    } else {
        print_text(&report);
    }
    Ok(if report.usable_count() > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn json_report(r: &ScanReport) -> serde_json::Value {
    serde_json::json!({
        "root": r.root,
        "files": r.files,
        "totals": {
            "files": r.files.len(),
            "usable": r.usable_count(),
            "rejected": r.files.len() - r.usable_count(),
            "duration_s": r.total_duration_s(),
            "chunks": r.total_chunks(),
        }
    })
}

fn print_text(r: &ScanReport) {
    for f in &r.files {
        let name = f
            .path
            .strip_prefix(&r.root)
            .unwrap_or(&f.path)
            .display()
            .to_string();
        match &f.info {
            Some(i) if f.usable() => println!(
                "ok    {name}: {}, {} Hz, {} ch, {:.2} s",
                i.codec, i.sample_rate, i.channels, i.duration_s
            ),
            _ => {}
        }
        for p in &f.problems {
            let tag = if p.is_fatal() { "SKIP " } else { "warn " };
            println!("{tag} {name}: {}", p.describe());
        }
    }
    println!(
        "{} file(s): {} usable ({:.1} s, {} one-second chunks), {} skipped",
        r.files.len(),
        r.usable_count(),
        r.total_duration_s(),
        r.total_chunks(),
        r.files.len() - r.usable_count()
    );
    if r.usable_count() == 0 {
        println!("no usable audio in {}", r.root.display());
    }
}
