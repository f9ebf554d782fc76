//! Vocoder study: every vocoder variant on true mels of real recordings and on VQ-VAE-decoded
//! mels, measured the way `distill evaluate` measures its chains. Needs corpora on disk, so it
//! is ignored and never runs in CI. Run by hand:
//!
//! ```sh
//! VOCODER_STUDY_CORPORA=/work/corpora/drums20:/work/corpora/notes96 \
//! VOCODER_STUDY_DECODED=/work/exp/decoded \
//! cargo test -p metrics --test vocoder_study -- --ignored --nocapture
//! ```
//!
//! Environment: `VOCODER_STUDY_CORPORA` (`:`-separated folders of recordings),
//! `VOCODER_STUDY_DECODED` (`:`-separated folders of `*.safetensors` holding `true_mel`,
//! `decoded_mel` and `audio`), `VOCODER_STUDY_FILES` (recordings per corpus, default 8),
//! `VOCODER_STUDY_SECONDS` (recordings cut to this length, default 3, to keep runs short),
//! `VOCODER_STUDY_VARIANTS` (space-separated variants, see [`variant`]; default
//! `old new reference`), `VOCODER_STUDY_PER_FILE`
//! (set: print every file's row too).

use std::path::{Path, PathBuf};
use std::time::Instant;

use audio::SpectrogramConfig;
use audio::mel::MelSpectrogram;
use audio::vocoder::{PhaseInit, Tolerance, Vocoder};
use metrics::Summary;
use metrics::spectral::{
    HIGH_BAND_HZ, band_above_hz, log_mel_l1, log_spectral_distance, multi_resolution_stft_distance,
    noise_floor,
};

/// Seed of the reference recipe's random phases, as in `distill evaluate`.
const REFERENCE_SEED: u64 = 1234;

/// One mel to vocode: the mel handed over, the recording it came from, a label.
struct Item {
    mel: Vec<f32>,
    original: Vec<f32>,
}

/// A named group of items (corpus × true/decoded).
struct Set {
    name: String,
    items: Vec<Item>,
}

type Build = Box<dyn Fn(SpectrogramConfig) -> Vocoder>;

/// Today's recipe before this study: non-negative inverse, phase-locked start, 16 iterations.
fn old(cfg: SpectrogramConfig) -> Vocoder {
    let mut v = Vocoder::new(cfg);
    v.nnls_iterations = 30;
    v.griffin_lim.iterations = 16;
    v.griffin_lim.momentum = 0.99;
    v.griffin_lim.init = PhaseInit::PhaseLocked;
    v.follow_mel_from = None;
    v
}

/// A variant by name: `new` (`Vocoder::new`), `reference` (`reference@SEED` for another
/// seed of its random phases), `old`, or a spec
/// `key=value,...` on top of `old` with keys `init` (`pghi`, `locked`, `random`), `tol`
/// (PGHI tolerance), `it` (iterations), `mom` (momentum), `nnls` (inverse iterations),
/// `mel` (iteration from which Griffin-Lim follows the mel).
fn variant(spec: &str) -> Option<Build> {
    match spec {
        "new" => return Some(Box::new(Vocoder::new)),
        "reference" => return Some(Box::new(|cfg| Vocoder::reference(cfg, REFERENCE_SEED))),
        "old" => return Some(Box::new(old)),
        _ => {}
    }
    if let Some(seed) = spec.strip_prefix("reference@") {
        let seed: u64 = seed.parse().ok()?;
        return Some(Box::new(move |cfg| Vocoder::reference(cfg, seed)));
    }
    let mut edits: Vec<(String, String)> = Vec::new();
    for kv in spec.split(',') {
        let (k, v) = kv.split_once('=')?;
        edits.push((k.to_owned(), v.to_owned()));
    }
    Some(Box::new(move |cfg| {
        let mut v = old(cfg.clone());
        let mut tol = Tolerance::default();
        for (k, val) in &edits {
            let num = || val.parse::<f64>().unwrap_or_else(|_| panic!("{k}={val}"));
            match k.as_str() {
                "tol" => tol = Tolerance::new(num() as f32).expect("tolerance in (0, 1)"),
                "it" => v.griffin_lim.iterations = num() as usize,
                "mom" => v.griffin_lim.momentum = num() as f32,
                "nnls" => v.nnls_iterations = num() as usize,
                "mel" => v.follow_mel_from = Some(num() as usize),
                "init" => {}
                _ => panic!("unknown key {k}"),
            }
        }
        for (k, val) in &edits {
            if k == "init" {
                v.griffin_lim.init = match val.as_str() {
                    "pghi" => PhaseInit::Pghi(tol),
                    "locked" => PhaseInit::PhaseLocked,
                    "random" => PhaseInit::Random(REFERENCE_SEED),
                    _ => panic!("unknown init {val}"),
                };
            }
        }
        v
    }))
}

const DEFAULT_VARIANTS: &str = "old new reference";

fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|s| {
            s.split([':', ','])
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn sorted_files(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && ext.is_none_or(|e| p.extension().is_some_and(|x| x == e)));
    files.sort();
    files
}

fn peak_normalised(mut x: Vec<f32>) -> Vec<f32> {
    audio::chunk::peak_normalise(&mut x);
    x
}

/// `count` recordings spread evenly over the sorted folder, cut to `seconds`.
fn corpus_set(dir: &Path, count: usize, seconds: f64, mel: &MelSpectrogram) -> Set {
    let files = sorted_files(dir, None);
    let step = (files.len() as f64 / count.max(1) as f64).max(1.0);
    let max_len = (seconds * f64::from(audio::SAMPLE_RATE)) as usize;
    let items = (0..count)
        .filter_map(|i| files.get((i as f64 * step) as usize))
        .filter_map(|p| audio::load_48k(p).ok())
        .map(|mut x| {
            x.truncate(max_len);
            let x = peak_normalised(x);
            Item {
                mel: mel.log_mel(&x),
                original: x,
            }
        })
        .collect();
    Set {
        name: format!(
            "{} true",
            dir.file_name().map_or("?".into(), |n| n.to_string_lossy())
        ),
        items,
    }
}

/// The true and the decoded mels of a folder of dumps.
fn decoded_sets(dir: &Path) -> [Set; 2] {
    let name = dir
        .file_name()
        .map_or("?".into(), |n| n.to_string_lossy().into_owned());
    let (mut truth, mut decoded) = (Vec::new(), Vec::new());
    for path in sorted_files(dir, Some("safetensors")) {
        let bytes = std::fs::read(&path).expect("readable dump");
        let (dict, _) = weights::st::from_bytes(&bytes).expect("safetensors dump");
        let get = |k: &str| dict.get(k).map(|t| t.to_f32()).expect("tensor in dump");
        let original = get("audio");
        truth.push(Item {
            mel: get("true_mel"),
            original: original.clone(),
        });
        decoded.push(Item {
            mel: get("decoded_mel"),
            original,
        });
    }
    [
        Set {
            name: format!("{name} true"),
            items: truth,
        },
        Set {
            name: format!("{name} decoded"),
            items: decoded,
        },
    ]
}

/// Per-file metrics of one variant on one item.
#[derive(Default)]
struct Row {
    l1: Vec<f64>,
    l1_high: Vec<f64>,
    lsd: Vec<f64>,
    lsd_high: Vec<f64>,
    mrstft: Vec<f64>,
    floor_out: Vec<f64>,
    floor_in: Vec<f64>,
    floor_raw: Vec<f64>,
    peak_db: Vec<f64>,
    seconds: f64,
    audio_seconds: f64,
}

fn measure(vocoder: &Vocoder, set: &Set, mel: &MelSpectrogram, repeats: usize) -> Row {
    let n_mels = mel.config.n_mels;
    let high = band_above_hz(&mel.config, HIGH_BAND_HZ);
    let mut row = Row::default();
    for item in &set.items {
        let frames = item.mel.len() / n_mels;
        let len = item.original.len();
        // The fastest of `repeats` runs: the machine may be shared.
        let mut best = f64::INFINITY;
        let mut out = Vec::new();
        for _ in 0..repeats.max(1) {
            let start = Instant::now();
            out = vocoder.synthesize(&item.mel, frames, Some(len));
            best = best.min(start.elapsed().as_secs_f64());
        }
        row.seconds += best;
        row.audio_seconds += len as f64 / f64::from(audio::SAMPLE_RATE);
        let out_mel = mel.log_mel(&out);
        row.l1.push(log_mel_l1(&item.mel, &out_mel).expect("l1"));
        let from = high * frames;
        row.l1_high
            .push(log_mel_l1(&item.mel[from..], &out_mel[from..]).expect("l1"));
        row.lsd
            .push(log_spectral_distance(&item.mel, &out_mel, n_mels, frames, 0).expect("lsd"));
        row.lsd_high
            .push(log_spectral_distance(&item.mel, &out_mel, n_mels, frames, high).expect("lsd"));
        row.mrstft
            .push(multi_resolution_stft_distance(&out, &item.original).expect("mrstft"));
        row.floor_raw.push(noise_floor(&out_mel).expect("floor"));
        let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        row.peak_db.push(20.0 * f64::from(peak.max(1e-9)).log10());
        row.floor_out
            .push(noise_floor(&mel.log_mel(&peak_normalised(out))).expect("floor"));
        row.floor_in.push(noise_floor(&item.mel).expect("floor"));
    }
    row
}

fn mean(v: &[f64]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.mean)
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.median)
}

/// A log1p-mel floor difference in dB of power.
fn floor_db(out: f64, reference: f64) -> f64 {
    10.0 * (out.exp_m1().max(1e-12) / reference.exp_m1().max(1e-12)).log10()
}

/// How the handed mels differ from the recordings' own: level of the loudest frame and of the
/// whole sound (dB of mel power), and the floor (dB, as in the table).
fn print_handed_vs_recording(set: &Set, mel: &MelSpectrogram) {
    let n_mels = mel.config.n_mels;
    let frame_power = |m: &[f32]| -> Vec<f64> {
        let frames = m.len() / n_mels;
        (0..frames)
            .map(|t| {
                (0..n_mels)
                    .map(|b| f64::from(m[b * frames + t]).exp_m1())
                    .sum()
            })
            .collect()
    };
    let db = |a: f64, b: f64| 10.0 * (a.max(1e-30) / b.max(1e-30)).log10();
    let (mut loudest, mut total, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for item in &set.items {
        let own = mel.log_mel(&item.original);
        let (h, o) = (frame_power(&item.mel), frame_power(&own));
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        loudest.push(db(max(&h), max(&o)));
        total.push(db(h.iter().sum(), o.iter().sum()));
        let (fh, fo) = (noise_floor(&item.mel), noise_floor(&own));
        floor.push(floor_db(fh.expect("floor"), fo.expect("floor")));
    }
    println!(
        "handed mel vs the recording's: loudest frame {:+.1} dB, total {:+.1} dB, floor {:+.1} dB \
         (medians)",
        median(&loudest),
        median(&total),
        median(&floor)
    );
}

/// Timing only: every variant on every item, interleaved item by item over `repeats`
/// rounds so that a busy machine slows all variants alike; per item the fastest run counts.
/// Ratios to the first variant.
fn timing(sets: &[Set], variants: &[(&str, Build)], cfg: &SpectrogramConfig, repeats: usize) {
    let vocoders: Vec<Vocoder> = variants.iter().map(|(_, b)| b(cfg.clone())).collect();
    let items: Vec<&Item> = sets.iter().flat_map(|s| &s.items).collect();
    let audio_seconds: f64 = items
        .iter()
        .map(|i| i.original.len() as f64 / f64::from(audio::SAMPLE_RATE))
        .sum();
    let mut best = vec![vec![f64::INFINITY; items.len()]; vocoders.len()];
    for _ in 0..repeats.max(1) {
        for (i, item) in items.iter().enumerate() {
            let frames = item.mel.len() / cfg.n_mels;
            for (b, vocoder) in best.iter_mut().zip(&vocoders) {
                let start = Instant::now();
                let out = vocoder.synthesize(&item.mel, frames, Some(item.original.len()));
                b[i] = b[i].min(start.elapsed().as_secs_f64());
                std::hint::black_box(out);
            }
        }
    }
    let totals: Vec<f64> = best.iter().map(|b| b.iter().sum()).collect();
    println!(
        "timing: {audio_seconds:.1} s of audio, fastest of {repeats} interleaved runs per \
         item, {} threads",
        rayon::current_num_threads()
    );
    for ((name, _), t) in variants.iter().zip(&totals) {
        println!(
            "{name:<40} {:.4} s/s  {:.2}x",
            t / audio_seconds,
            t / totals[0]
        );
    }
}

#[test]
#[ignore = "needs the corpora on disk; run by hand with VOCODER_STUDY_* set"]
fn vocoder_study() {
    let cfg = SpectrogramConfig::default();
    let mel = MelSpectrogram::new(cfg.clone());
    let count = env_num("VOCODER_STUDY_FILES", 8.0) as usize;
    let seconds = env_num("VOCODER_STUDY_SECONDS", 3.0);
    let repeats = env_num("VOCODER_STUDY_REPEATS", 1.0) as usize;
    let mut sets: Vec<Set> = env_list("VOCODER_STUDY_CORPORA")
        .iter()
        .map(|d| corpus_set(Path::new(d), count, seconds, &mel))
        .collect();
    for d in env_list("VOCODER_STUDY_DECODED") {
        sets.extend(decoded_sets(Path::new(&d)));
    }
    sets.retain(|s| !s.items.is_empty());
    if sets.is_empty() {
        eprintln!("vocoder_study: set VOCODER_STUDY_CORPORA and/or VOCODER_STUDY_DECODED");
        return;
    }
    let wanted = std::env::var("VOCODER_STUDY_VARIANTS").unwrap_or(DEFAULT_VARIANTS.into());
    let per_file = std::env::var_os("VOCODER_STUDY_PER_FILE").is_some();
    let variants: Vec<(&str, Build)> = wanted
        .split([' ', ';'])
        .filter(|n| !n.is_empty())
        .map(|n| (n, variant(n).unwrap_or_else(|| panic!("bad variant {n}"))))
        .collect();
    println!(
        "medians over files; floor = median log1p mel of the peak-normalised output \
         (in = of the handed mel); dB = mean over files of 10·log10 of their powers; raw = \
         floor of the output as it comes; peak = its peak, dBFS; s/s = compute seconds per \
         second of audio ({} threads)",
        rayon::current_num_threads()
    );
    if std::env::var_os("VOCODER_STUDY_TIMING").is_some() {
        timing(&sets, &variants, &cfg, repeats);
        return;
    }
    for set in &sets {
        println!("\n== {} ({} files)", set.name, set.items.len());
        print_handed_vs_recording(set, &mel);
        println!(
            "{:<24} {:>7} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8} {:>6} {:>8} {:>6} {:>6}",
            "variant",
            "L1",
            "L1>8k",
            "LSD",
            "LSD>8k",
            "MRSTFT",
            "floor",
            "in",
            "dB",
            "raw",
            "peak",
            "s/s"
        );
        for (name, build) in &variants {
            let row = measure(&build(cfg.clone()), set, &mel, repeats);
            let (fo, fi) = (median(&row.floor_out), median(&row.floor_in));
            println!(
                "{:<24} {:>7.4} {:>7.4} {:>7.2} {:>8.2} {:>7.3} {:>8.5} {:>8.5} {:>6.1} {:>8.5} \
                 {:>6.2} {:>6.3}",
                name,
                median(&row.l1),
                median(&row.l1_high),
                median(&row.lsd),
                median(&row.lsd_high),
                median(&row.mrstft),
                fo,
                fi,
                mean(
                    &row.floor_out
                        .iter()
                        .zip(&row.floor_in)
                        .map(|(&o, &i)| floor_db(o, i))
                        .collect::<Vec<_>>()
                ),
                median(&row.floor_raw),
                median(&row.peak_db),
                row.seconds / row.audio_seconds.max(1e-9),
            );
            if per_file {
                for i in 0..row.l1.len() {
                    println!(
                        "  file {i:<19} {:>7.4} {:>7.4} {:>7.2} {:>8.2} {:>7.3} {:>8.5} {:>8.5} {:>6.1} \
                         {:>8.5} {:>6.2}",
                        row.l1[i],
                        row.l1_high[i],
                        row.lsd[i],
                        row.lsd_high[i],
                        row.mrstft[i],
                        row.floor_out[i],
                        row.floor_in[i],
                        floor_db(row.floor_out[i], row.floor_in[i]),
                        row.floor_raw[i],
                        row.peak_db[i],
                    );
                }
            }
        }
    }
}
