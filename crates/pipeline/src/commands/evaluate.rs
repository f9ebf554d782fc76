//! `distill evaluate`: how well a model fits a folder of sounds, how much of a sound
//! survives its codec and vocoder, and whether generated sounds resemble the collection.

use std::path::PathBuf;
use std::process::ExitCode;

use burn::prelude::Device;
use clap::Args;
use metrics::Summary;

use crate::backend::Backend;
use crate::evaluate::generation::{GenerationReport, Resemblance, SoundsReport, furthest_features};
use crate::evaluate::reconstruction::ChainSummary;
use crate::evaluate::{EvaluateOptions, FitReport, evaluate};
use crate::generate::GenerateSettings;

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Model file.
    #[arg(long)]
    pub model: PathBuf,
    /// Folder of sounds (the collection the model learnt, for the generation report).
    #[arg(long)]
    pub data: PathBuf,
    /// Generate this many sounds and compare them with the collection (0 = skip).
    #[arg(long, default_value_t = 32)]
    pub generate: usize,
    /// Seed of the generated sounds.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Longest a generated sound may be, in seconds (default: the lengths of files spread
    /// through the collection, within 0.5–10 s); a sound that dies away sooner ends there,
    /// as `distill generate` ends it.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Keep every generated sound exactly that long, trailing silence and all (as `distill
    /// generate --exact-duration`).
    #[arg(long)]
    pub exact_duration: bool,
    /// Sampling temperature of the generated sounds.
    #[arg(long, default_value_t = GenerateSettings::default().temperature)]
    pub temperature: f64,
    /// Nucleus sampling mass of the generated sounds (0 or 1 = off).
    #[arg(long, default_value_t = GenerateSettings::default().top_p)]
    pub top_p: f64,
    /// Candidates per generated sound (as `distill generate --candidates`).
    #[arg(long, default_value_t = 1)]
    pub candidates: usize,
    /// Also compare the sounds in this folder (made by any tool, any format) with the
    /// collection: closeness, level shape and feature distribution (no copy measure: their
    /// codes are unknown).
    #[arg(long)]
    pub sounds: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &EvaluateArgs, backend: Backend, device: &Device) -> anyhow::Result<ExitCode> {
    let options = EvaluateOptions {
        model: args.model.clone(),
        data: args.data.clone(),
        generate: args.generate,
        seed: args.seed,
        duration_s: args.duration,
        settings: GenerateSettings {
            temperature: args.temperature,
            top_p: args.top_p,
            candidates: args.candidates,
            exact_duration: args.exact_duration,
            ..GenerateSettings::default()
        },
        decoding: backend.decoding(),
        sounds: args.sounds.clone(),
    };
    let report = evaluate(&options, device)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// `median [p10–p90]`.
fn spread(s: &Summary, digits: usize) -> String {
    format!("{:.d$} [{:.d$}–{:.d$}]", s.median, s.p10, s.p90, d = digits)
}

fn chain_line(name: &str, c: &ChainSummary) -> String {
    format!(
        "  {name:<34} {:>18} {:>18} {:>18} {:>18} {:>18}",
        spread(&c.log_mel_l1, 3),
        spread(&c.lsd_db, 1),
        spread(&c.lsd_high_db, 1),
        spread(&c.mr_stft, 2),
        spread(&c.noise_floor, 2)
    )
}

fn print_text(report: &FitReport) {
    println!(
        "{} files, {} one-second chunks",
        report.files, report.chunks
    );
    println!(
        "VQ-VAE reconstruction loss (multi-scale log-mel MSE): {:.4}",
        report.vqvae.reconstruction_loss
    );
    for (q, h) in report.vqvae.codebook_health.iter().enumerate() {
        println!(
            "  level {q}: utilisation {:.1}%, perplexity {:.2}, dead codes {}",
            h.utilization * 100.0,
            h.perplexity,
            h.dead_codes
        );
    }
    match &report.prior {
        None => println!("no prior"),
        Some(p) => println!(
            "prior ({}): cross-entropy {:.4} nats/token, perplexity {:.2}, {:.3} bits/token over {} sequences",
            p.token_order, p.cross_entropy_nats, p.perplexity, p.bits_per_token, p.sequences
        ),
    }
    let r = &report.reconstruction;
    println!(
        "\nReconstruction of {} validation file(s) (median [10th–90th percentile] over files):",
        r.files.len()
    );
    println!(
        "  codec mel vs true mel: log-mel L1 {}, LSD {} dB, above 8 kHz {} dB",
        spread(&r.codec_mel.log_mel_l1, 3),
        spread(&r.codec_mel.lsd_db, 1),
        spread(&r.codec_mel.lsd_high_db, 1)
    );
    if let [coarse @ .., _] = r.codec_mel.log_mel_l1_by_levels.as_slice() {
        let levels: Vec<String> = coarse
            .iter()
            .enumerate()
            .map(|(k, l1)| format!("{} level(s) {:.3}", k + 1, l1.median))
            .collect();
        if !levels.is_empty() {
            println!("  coarse codes alone, log-mel L1: {}", levels.join(", "));
        }
    }
    if let Some(bias) = &r.codec_mel.loud_bias {
        println!(
            "  codec level on loud cells (true log-mel ≥ {}): {} (negative: peaks flattened)",
            metrics::spectral::LOUD_LOG_MEL,
            spread(bias, 2)
        );
    }
    println!(
        "  checkerboard energy (2-periodic pattern): decoded {}, recordings {}",
        spread(&r.checkerboard.decoded, 4),
        spread(&r.checkerboard.recording, 4)
    );
    println!(
        "  {:<34} {:>18} {:>18} {:>18} {:>18} {:>18}",
        "chain", "log-mel L1", "LSD dB", "LSD >8k dB", "MR-STFT", "noise floor"
    );
    println!("{}", chain_line("true mel -> vocoder", &r.vocoder));
    println!("{}", chain_line("audio -> VQ-VAE -> vocoder", &r.codec));
    println!(
        "{}",
        chain_line(
            "same, original system's vocoder",
            &r.codec_reference_vocoder
        )
    );
    println!(
        "  noise floor of the recordings: {}",
        spread(&r.input_noise_floor, 2)
    );
    if let Some(c) = r.codec_closeness {
        println!(
            "  nearest-neighbour ratio of the training files through the codec: {c:.2} (about the best generated sounds can reach)"
        );
    }
    if let Some(level) = &r.codec_level {
        println!(
            "  the training files through the codec: near-silent frames {} (the files {}), onsets per second {} (the files {})",
            spread(&level.near_silent_share.generated, 2),
            spread(&level.near_silent_share.collection, 2),
            spread(&level.onsets_per_s.generated, 2),
            spread(&level.onsets_per_s.collection, 2)
        );
    }
    if let Some(g) = &report.generation {
        print_generation(g);
    }
    if let Some(s) = &report.sounds {
        print_sounds(s);
    }
}

fn print_generation(g: &GenerationReport) {
    let candidates = match g.settings.candidates {
        1 => String::new(),
        n => format!(", best of {n} candidates"),
    };
    println!(
        "\nGeneration: {} sounds of {} s (seed {}, temperature {}, top-p {}{candidates}), {:.1} s to generate",
        g.count,
        spread(&g.duration_s, 2),
        g.seed,
        g.settings.temperature,
        g.settings.top_p,
        g.generation_s
    );
    print_resemblance("generated", &g.resemblance);
    let n = &g.novelty;
    println!(
        "  longest copied code run: {} s ({} of a sound); {}-gram overlap {}",
        spread(&n.copied_s, 2),
        spread(&n.copied_share, 2),
        n.ngram,
        spread(&n.ngram_overlap, 2)
    );
    for c in &n.most_copy_like {
        println!(
            "    seed {}: {:.2} s ({:.0}%) copied from {}",
            c.seed,
            c.copied_s,
            c.copied_share * 100.0,
            c.training_file
        );
    }
    print_verdicts(&g.verdicts);
}

fn print_verdicts(verdicts: &[String]) {
    println!("  verdicts (heuristics):");
    for v in verdicts {
        println!("    - {v}");
    }
}

/// The sounds of `--sounds` against the collection.
fn print_sounds(s: &SoundsReport) {
    println!(
        "\nSounds in {}: {} of {} s",
        s.folder,
        s.count,
        spread(&s.duration_s, 2)
    );
    print_resemblance("these", &s.resemblance);
    print_verdicts(&s.verdicts);
}

/// Closeness, level shape and feature distribution of sounds (`who`) against the collection.
fn print_resemblance(who: &str, r: &Resemblance) {
    let (closeness, near_silent_share, onsets_per_s, d) = (
        &r.closeness,
        &r.near_silent_share,
        &r.onsets_per_s,
        &r.distribution,
    );
    println!(
        "  nearest-neighbour ratio {:.2} (≈1: as close as a new recording of the collection; ≫1: far from it)",
        closeness.ratio
    );
    println!(
        "  near-silent frames: {who} {}, collection {}",
        spread(&near_silent_share.generated, 2),
        spread(&near_silent_share.collection, 2)
    );
    println!(
        "  onsets per second: {who} {}, collection {}",
        spread(&onsets_per_s.generated, 2),
        spread(&onsets_per_s.collection, 2)
    );
    println!(
        "  feature MMD² {:.3} (collection split in half: {:.3} ± {:.3}); precision {:.2}, recall {:.2}, coverage {:.2}",
        d.mmd2,
        d.split_half.mean,
        d.split_half.std,
        d.precision_recall.precision,
        d.precision_recall.recall,
        d.precision_recall.coverage
    );
    let furthest: Vec<String> = furthest_features(d, 3)
        .into_iter()
        .map(|(name, d)| format!("{name} {d:+.1}"))
        .collect();
    println!(
        "  features furthest from the collection (effect size, Cohen's d): {}",
        furthest.join(", ")
    );
}
