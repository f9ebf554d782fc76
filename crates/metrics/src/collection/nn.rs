//! Nearest-neighbour distance of generated sounds to a collection, in log-mel windows, scaled
//! by how far each collection file is from the rest of the collection.
//!
//! Cost: the search is exact brute force, pruned by a lower bound. Each window keeps 64
//! block sums (8 bands × 8 frames, divided by √64); by Cauchy–Schwarz the squared distance
//! of those coarse vectors never exceeds the full squared distance, so a query ranks every
//! candidate by the bound, computes full 4,096-value distances (abandoned once past the best
//! so far) for the best-ranked first and skips every candidate whose bound is already worse.
//! On noise-like windows the bound prunes only ~90 % (distances concentrate), so a query
//! costs ~64 operations per candidate plus ~10 % full distances. Measured on 2 shared cores
//! (debug profile, i.e. opt-level 1): 32 generated 1 s sounds against 20 files of 1–3 s
//! ≈ 0.2 s; against 500 files of 3 s (16,000 windows, 16 KiB each: ~260 MB) ≈ 6 s, of which
//! ~2 s are the mels, ~1.3 s the generated queries and ~3 s the baseline, bounded by
//! [`NnOptions::max_baseline_files`] and [`NnOptions::max_baseline_queries`] (an unbounded
//! leave-one-file-out baseline would be 16,000 queries: about a minute).

use std::ops::Range;

use audio::mel::MelSpectrogram;
use rayon::prelude::*;
use serde::Serialize;

use crate::summary::median;
use crate::{MetricsError, Result};

/// Side of the square blocks whose sums form the lower bound (bands × frames).
const BLOCK: usize = 8;
/// Candidates ranked by the bound whose full distances are computed first; enough to find a
/// good best distance early, few enough that partial selection beats a full sort.
const FIRST_CANDIDATES: usize = 32;

/// How windows are cut and filtered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NnOptions {
    /// Frames per window: 32 (≈ 0.34 s at hop 512 / 48 kHz).
    pub window_frames: usize,
    /// Hop between windows: 8 frames (≈ 85 ms). A last window aligned to the end of the sound
    /// is added when the hop does not land there, so the tail is never left out.
    pub hop_frames: usize,
    /// Windows whose waveform segment (after peak normalisation of the whole sound) has an
    /// RMS below this many dB re full scale are skipped: silence would match silence and
    /// pull every distance towards zero. The segment is the samples `[s·hop, (s+W)·hop)`
    /// of a window starting at frame s, zero-padded past the end.
    pub min_level_db: f64,
    /// At most this many collection files (evenly spaced in the given order) are queried
    /// for the baseline, each still against every other file; 0 = all.
    pub max_baseline_files: usize,
    /// At most about this many baseline queries in all: past it, each queried file uses
    /// `max(1, budget / files)` evenly spaced windows (its median is then estimated from
    /// them); 0 = no limit. Small collections (20 files ≈ 400 windows) stay exact.
    pub max_baseline_queries: usize,
}

impl Default for NnOptions {
    fn default() -> Self {
        Self {
            window_frames: 32,
            hop_frames: 8,
            min_level_db: -50.0,
            max_baseline_files: 100,
            max_baseline_queries: 1024,
        }
    }
}

/// Result of [`nearest_neighbour_ratio`]. Distances are RMS differences of log1p mel
/// values: sqrt of the mean squared difference over the window's n_mels × frames values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NnRatio {
    /// `generated_median / baseline_median`: ≈ 1 "as close as a new real recording", ≫ 1 far
    /// from the collection, ≪ 1 closer than the collection's files are to each other
    /// (copies; 0 when the generated sounds are collection files).
    pub ratio: f64,
    /// Median over all generated windows of the distance to the nearest collection window.
    pub generated_median: f64,
    /// Median over collection files of (median over the file's windows of the distance to
    /// the nearest window of any other file).
    pub baseline_median: f64,
    /// Per generated sound, the median distance of its windows (`None`: all windows silent).
    pub per_sound_median: Vec<Option<f64>>,
    pub generated_windows: usize,
    pub generated_windows_skipped: usize,
    pub collection_windows: usize,
    pub collection_windows_skipped: usize,
    /// Collection files queried for the baseline.
    pub baseline_files: usize,
    /// Collection windows queried for the baseline.
    pub baseline_queries: usize,
}

/// All windows of a set of sounds. Each file's windows stay in their own buffer (no copy
/// into one big array, which would double the peak memory of a large collection); window i
/// of the set is window `i - ranges[f].start` of file `f = file[i]`.
struct Bank {
    dim: usize,
    cdim: usize,
    per_file: Vec<Vec<f32>>,
    coarse: Vec<f32>,
    file: Vec<u32>,
    ranges: Vec<Range<usize>>,
    skipped: usize,
}

impl Bank {
    fn len(&self) -> usize {
        self.file.len()
    }
    fn window(&self, i: usize) -> &[f32] {
        let f = self.file[i] as usize;
        let local = i - self.ranges[f].start;
        &self.per_file[f][local * self.dim..(local + 1) * self.dim]
    }
    fn coarse(&self, i: usize) -> &[f32] {
        &self.coarse[i * self.cdim..(i + 1) * self.cdim]
    }
}

/// Windows of one sound, `[n_mels][window_frames]` each, and the number skipped as silent.
fn windows_of(signal: &[f32], mel: &MelSpectrogram, o: &NnOptions) -> (Vec<f32>, usize, usize) {
    let hop = mel.config.hop_length;
    let n_mels = mel.config.n_mels;
    let w = o.window_frames;
    let mut x = signal.to_vec();
    audio::chunk::peak_normalise(&mut x);
    // Short sounds are zero-padded to one window, as training pads chunks with silence.
    let min_len = (w - 1) * hop;
    if x.len() < min_len {
        x.resize(min_len, 0.0);
    }
    let frames = mel.frames_for(x.len());
    let log_mel = mel.log_mel(&x);
    let mut starts: Vec<usize> = (0..=frames - w).step_by(o.hop_frames).collect();
    if starts.last() != Some(&(frames - w)) {
        starts.push(frames - w);
    }
    let (mut out, mut kept, mut skipped) = (Vec::new(), 0, 0);
    for s in starts {
        let seg = &x[(s * hop).min(x.len())..((s + w) * hop).min(x.len())];
        let ms = seg
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            / (w * hop) as f64;
        if ms <= 0.0 || 10.0 * ms.log10() < o.min_level_db {
            skipped += 1;
            continue;
        }
        for m in 0..n_mels {
            out.extend_from_slice(&log_mel[m * frames + s..m * frames + s + w]);
        }
        kept += 1;
    }
    (out, kept, skipped)
}

fn build_bank(sounds: &[Vec<f32>], mel: &MelSpectrogram, o: &NnOptions) -> Bank {
    let n_mels = mel.config.n_mels;
    let w = o.window_frames;
    let dim = n_mels * w;
    let (gb, gt) = (n_mels.div_ceil(BLOCK), w.div_ceil(BLOCK));
    let cdim = gb * gt;
    // Per file: its windows, their coarse vectors, kept and skipped counts.
    let per: Vec<(Vec<f32>, Vec<f32>, usize, usize)> = sounds
        .par_iter()
        .map(|s| {
            let (data, kept, skipped) = windows_of(s, mel, o);
            let mut coarse = Vec::with_capacity(kept * cdim);
            for win in data.chunks_exact(dim) {
                for b in 0..gb {
                    let bands = b * BLOCK..((b + 1) * BLOCK).min(n_mels);
                    for t in 0..gt {
                        let times = t * BLOCK..((t + 1) * BLOCK).min(w);
                        let count = (bands.len() * times.len()) as f32;
                        let sum: f32 = bands
                            .clone()
                            .flat_map(|m| win[m * w + times.start..m * w + times.end].iter())
                            .sum();
                        coarse.push(sum / count.sqrt());
                    }
                }
            }
            (data, coarse, kept, skipped)
        })
        .collect();
    let mut bank = Bank {
        dim,
        cdim,
        per_file: Vec::with_capacity(per.len()),
        coarse: Vec::new(),
        file: Vec::new(),
        ranges: Vec::with_capacity(per.len()),
        skipped: 0,
    };
    for (f, (data, coarse, kept, skipped)) in per.into_iter().enumerate() {
        let start = bank.file.len();
        bank.per_file.push(data);
        bank.coarse.extend_from_slice(&coarse);
        bank.file.extend(std::iter::repeat_n(f as u32, kept));
        bank.ranges.push(start..start + kept);
        bank.skipped += skipped;
    }
    bank
}

/// Squared distance, abandoned (returning a value ≥ `best`) once past `best`.
fn dist2_bounded(a: &[f32], b: &[f32], best: f32) -> f32 {
    let mut total = 0.0f32;
    for (ca, cb) in a.chunks(128).zip(b.chunks(128)) {
        // Eight independent accumulators let the compiler keep the loop in vector registers.
        let mut acc = [0.0f32; 8];
        let (ea, eb) = (ca.chunks_exact(8), cb.chunks_exact(8));
        let (ra, rb) = (ea.remainder(), eb.remainder());
        for (xa, xb) in ea.zip(eb) {
            for l in 0..8 {
                let d = xa[l] - xb[l];
                acc[l] += d * d;
            }
        }
        total += acc.iter().sum::<f32>();
        total += ra
            .iter()
            .zip(rb)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>();
        if total >= best {
            return total;
        }
    }
    total
}

fn coarse_dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Squared distance from `q` (window `qi` of `queries`) to its nearest window in `bank`,
/// ignoring windows of file `exclude`; `None` when no candidate is left.
fn nearest(
    queries: &Bank,
    qi: usize,
    bank: &Bank,
    exclude: Option<u32>,
    cand: &mut Vec<(f32, u32)>,
) -> Option<f32> {
    let (q, qc) = (queries.window(qi), queries.coarse(qi));
    // A file's windows are contiguous, so excluding it leaves two ranges.
    let skip = exclude.map_or(0..0, |f| bank.ranges[f as usize].clone());
    cand.clear();
    cand.extend(
        (0..skip.start)
            .chain(skip.end..bank.len())
            .map(|i| (coarse_dist2(qc, bank.coarse(i)), i as u32)),
    );
    if cand.is_empty() {
        return None;
    }
    let first = FIRST_CANDIDATES.min(cand.len());
    cand.select_nth_unstable_by(first - 1, |a, b| a.0.total_cmp(&b.0));
    cand[..first].sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = f32::INFINITY;
    for &(lb, i) in cand.iter() {
        if lb >= best {
            continue;
        }
        best = best.min(dist2_bounded(q, bank.window(i as usize), best));
    }
    Some(best)
}

/// How close `generated` sounds are to a `collection`, relative to how close the
/// collection's own files are to each other (see [`NnRatio`]), with default options.
pub fn nearest_neighbour_ratio(
    generated: &[Vec<f32>],
    collection: &[Vec<f32>],
    mel: &MelSpectrogram,
) -> Result<NnRatio> {
    nearest_neighbour_ratio_with(generated, collection, mel, &NnOptions::default())
}

/// [`nearest_neighbour_ratio`] with explicit options.
pub fn nearest_neighbour_ratio_with(
    generated: &[Vec<f32>],
    collection: &[Vec<f32>],
    mel: &MelSpectrogram,
    options: &NnOptions,
) -> Result<NnRatio> {
    if options.window_frames == 0 || options.hop_frames == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "window_frames/hop_frames",
            reason: "must be at least 1",
        });
    }
    if generated.is_empty() {
        return Err(MetricsError::Empty {
            what: "generated sounds",
        });
    }
    let gen_bank = build_bank(generated, mel, options);
    let coll = build_bank(collection, mel, options);
    if gen_bank.len() == 0 {
        return Err(MetricsError::Empty {
            what: "generated windows above the level floor",
        });
    }
    let mut files: Vec<usize> = (0..coll.ranges.len())
        .filter(|&f| !coll.ranges[f].is_empty())
        .collect();
    if files.len() < 2 {
        return Err(MetricsError::TooFew {
            what: "collection files with non-silent windows",
            need: 2,
            got: files.len(),
        });
    }
    if options.max_baseline_files > 0 && files.len() > options.max_baseline_files {
        let n = files.len();
        files = (0..options.max_baseline_files)
            .map(|i| files[i * n / options.max_baseline_files])
            .collect();
    }
    let scale = 1.0 / gen_bank.dim as f64;
    let to_rms = |d2: f32| (f64::from(d2.max(0.0)) * scale).sqrt();

    let gen_d: Vec<f64> = (0..gen_bank.len())
        .into_par_iter()
        .map_init(Vec::new, |cand, qi| {
            nearest(&gen_bank, qi, &coll, None, cand).map_or(f64::NAN, to_rms)
        })
        .collect();
    // Per baseline file, the windows it queries: all, or evenly spaced ones when the total
    // would exceed the query budget.
    let total: usize = files.iter().map(|&f| coll.ranges[f].len()).sum();
    let per_file_cap = match options.max_baseline_queries {
        0 => usize::MAX,
        cap if total > cap => (cap / files.len()).max(1),
        _ => usize::MAX,
    };
    let queries: Vec<Vec<usize>> = files
        .iter()
        .map(|&f| {
            let r = coll.ranges[f].clone();
            let q = r.len().min(per_file_cap);
            (0..q).map(|j| r.start + j * r.len() / q).collect()
        })
        .collect();
    let base_q: Vec<usize> = queries.iter().flatten().copied().collect();
    let base_d: Vec<f64> = base_q
        .par_iter()
        .map_init(Vec::new, |cand, &qi| {
            let own = Some(coll.file[qi]);
            nearest(&coll, qi, &coll, own, cand).map_or(f64::NAN, to_rms)
        })
        .collect();

    let mut per_file = Vec::with_capacity(files.len());
    let mut offset = 0;
    for q in &queries {
        let n = q.len();
        per_file.extend(median(&base_d[offset..offset + n]));
        offset += n;
    }
    let per_sound_median: Vec<Option<f64>> = gen_bank
        .ranges
        .iter()
        .map(|r| median(&gen_d[r.clone()]))
        .collect();
    let generated_median = median(&gen_d).unwrap_or(f64::NAN);
    let baseline_median = median(&per_file).unwrap_or(f64::NAN);
    if !baseline_median.is_finite() || baseline_median <= 0.0 {
        return Err(MetricsError::Undefined(
            "baseline distance is zero (the collection's files duplicate each other)",
        ));
    }
    Ok(NnRatio {
        ratio: generated_median / baseline_median,
        generated_median,
        baseline_median,
        per_sound_median,
        generated_windows: gen_bank.len(),
        generated_windows_skipped: gen_bank.skipped,
        collection_windows: coll.len(),
        collection_windows_skipped: coll.skipped,
        baseline_files: files.len(),
        baseline_queries: base_q.len(),
    })
}
