//! Whether generated sounds resemble the collection, and whether they copy it.
//!
//! * Closeness: the nearest-neighbour ratio of log-mel windows (≈ 1: as close to the
//!   collection as one of its own files is to the others; ≫ 1: far from it).
//! * Level shape: share of near-silent 50 ms frames and onsets per second, generated vs
//!   collection.
//! * Distribution: MMD² of standardised per-sound features against the collection's
//!   split-half spread; precision / recall / coverage of the same features.
//! * Novelty: the longest run of code-grid columns copied verbatim from a training file
//!   (on the codes that made each sound, not a re-encoding) and the share of 8-token
//!   n-grams of the prior's stream found in the training streams.
//!
//! Verdicts are heuristics (thresholds from `metrics::verdict`).

use std::borrow::Cow;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};

use audio::mel::MelSpectrogram;
use metrics::Summary;
use metrics::collection::features::{Standardiser, sound_features_all};
use metrics::collection::mmd::{SplitHalf, mmd2_unbiased, split_half_baseline};
use metrics::collection::nn::{NnRatio, nearest_neighbour_ratio};
use metrics::collection::prc::{Prc, precision_recall_coverage};
use metrics::levels::{near_silent_share, onset_rate};
use metrics::novelty::{longest_copied_span, ngram_overlap};
use metrics::verdict;
use prior_model::{GridShape, TokenOrder};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::generate::{BATCH, GenerateSettings, Generator, Sound, sound_seeds};

/// Level below which a 50 ms frame counts as near-silent (dB re the sound's peak).
pub const NEAR_SILENT_DB: f64 = -40.0;
/// Tokens per n-gram of the overlap measure.
pub const NGRAM: usize = 8;
/// Neighbours of the precision / recall manifolds.
const PRC_K: usize = 3;
/// Most copy-like sounds listed.
const LISTED: usize = 5;
/// Points of near-silent share beyond which the level shape counts as different.
const LEVEL_TOLERANCE: f64 = 0.15;

/// Generated vs collection values of one statistic.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub generated: Summary,
    pub collection: Summary,
}

/// One of the most copy-like sounds.
#[derive(Debug, Clone, Serialize)]
pub struct CopyCase {
    pub seed: u64,
    /// Longest run of code columns found verbatim in a training file, in seconds.
    pub copied_s: f64,
    /// The same as a share of the sound.
    pub copied_share: f64,
    pub training_file: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Novelty {
    pub copied_s: Summary,
    pub copied_share: Summary,
    pub ngram: usize,
    /// Share of the generated n-grams found in the training streams.
    pub ngram_overlap: Summary,
    pub most_copy_like: Vec<CopyCase>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Distribution {
    pub features: Vec<&'static str>,
    /// Effect size of each feature (same order as `features`): the generated sounds' mean
    /// minus the collection's, over the pooled standard deviation of the two sets (Cohen's
    /// d) — which features set them apart. Pooled, so a feature the collection never varies
    /// (no energy in the top band of band-limited speech) does not read as thousands of σ.
    pub effect_size: Vec<f64>,
    pub mmd2: f64,
    /// MMD² between random halves of the collection: the scale `mmd2` is read against.
    pub split_half: SplitHalf,
    pub precision_recall: Prc,
}

/// The generation report.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationReport {
    pub count: usize,
    pub seed: u64,
    pub duration_s: Summary,
    pub settings: GenerateSettings,
    pub token_order: TokenOrder,
    pub generation_s: f64,
    #[serde(flatten)]
    pub resemblance: Resemblance,
    pub novelty: Novelty,
    /// Plain-language heuristics.
    pub verdicts: Vec<String>,
}

/// How a set of sounds compares with the collection: everything the generation report
/// measures except copying (which needs the codes that made each sound).
#[derive(Debug, Clone, Serialize)]
pub struct Resemblance {
    pub closeness: NnRatio,
    pub near_silent_share: Compared,
    pub onsets_per_s: Compared,
    pub distribution: Distribution,
}

/// Sounds from a folder (made by any tool) against the collection.
#[derive(Debug, Clone, Serialize)]
pub struct SoundsReport {
    pub folder: String,
    pub count: usize,
    pub duration_s: Summary,
    #[serde(flatten)]
    pub resemblance: Resemblance,
    /// Plain-language heuristics.
    pub verdicts: Vec<String>,
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct GenerationOptions {
    pub count: usize,
    pub seed: u64,
    /// Length of each sound; `None`: the lengths of the collection's files (within 0.5–10 s;
    /// see [`length_source`]), so level statistics compare like with like.
    pub samples: Option<usize>,
    /// Mel frames per code column of the model.
    pub time_downsample: usize,
}

/// A training file's code sequence: its chunks' grids, as the prior saw them.
pub struct TrainingCodes {
    pub name: String,
    pub grids: Vec<Vec<i64>>,
    pub shape: GridShape,
}

/// The columns (one time step: every row and level) of a sequence of raster grids.
fn columns(grids: &[Vec<i64>], shape: GridShape) -> anyhow::Result<Vec<Vec<i64>>> {
    let mut out = Vec::new();
    for g in grids {
        let tokens = TokenOrder::TimeMajor.tokens(g, shape)?;
        out.extend(tokens.chunks(shape.tokens_per_step()).map(<[i64]>::to_vec));
    }
    Ok(out)
}

/// The prior-order token stream of a sound's or a file's grids.
fn stream(order: TokenOrder, grids: &[Vec<i64>], shape: GridShape) -> anyhow::Result<Vec<i64>> {
    let refs: Vec<&[i64]> = grids.iter().map(Vec::as_slice).collect();
    Ok(order.stream(&refs, shape)?)
}

/// Generates `options.count` sounds and measures them against `collection` (48 kHz mono
/// recordings) and the training files' codes.
pub fn generation(
    generator: &Generator,
    options: GenerationOptions,
    collection: &[Vec<f32>],
    training: &[TrainingCodes],
    mel: &MelSpectrogram,
) -> anyhow::Result<GenerationReport> {
    let started = Instant::now();
    let seeds = sound_seeds(options.seed, options.count);
    let lengths: Vec<usize> = match options.samples {
        Some(n) => vec![n; options.count],
        None => (0..options.count)
            .map(|i| {
                collection_length(&collection[length_source(i, options.count, collection.len())])
            })
            .collect(),
    };
    // Sounds of equal length step together (one pass over the prior serves a batch).
    let mut order: Vec<usize> = (0..options.count).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut rendered: Vec<Option<Sound>> = vec![None; options.count];
    for group in order.chunk_by(|&a, &b| lengths[a] == lengths[b]) {
        for batch in group.chunks(BATCH) {
            let mut rngs: Vec<StdRng> = batch
                .iter()
                .map(|&i| StdRng::seed_from_u64(seeds[i]))
                .collect();
            let sounds = generator.render_many(lengths[batch[0]], &mut rngs, &mut || {})?;
            for (&i, s) in batch.iter().zip(sounds) {
                rendered[i] = Some(s);
            }
        }
    }
    let sounds: Vec<Sound> = rendered.into_iter().flatten().collect();
    let generation_s = started.elapsed().as_secs_f64();
    let audio: Vec<Vec<f32>> = sounds.iter().map(|s| s.audio.clone()).collect();

    let r = resemblance(
        &audio,
        collection,
        options.samples.is_none(),
        mel,
        options.seed,
    )?;

    // Seconds of audio per code column.
    let column_s = (options.time_downsample * mel.config.hop_length) as f64
        / f64::from(mel.config.sample_rate);
    let novelty = novelty(generator.token_order(), &sounds, &seeds, training, column_s)?;

    let mut verdicts = resemblance_verdicts(&r);
    // The copy verdict reads second, after closeness.
    verdicts.insert(1, verdict::copy_risk(novelty.copied_share.max).to_string());
    Ok(GenerationReport {
        count: options.count,
        seed: options.seed,
        // As made: shorter than asked where a sound died away.
        duration_s: Summary::of(&sounds.iter().map(Sound::seconds).collect::<Vec<_>>())?,
        settings: *generator.settings(),
        token_order: generator.token_order(),
        generation_s,
        resemblance: r,
        novelty,
        verdicts,
    })
}

/// Compares `sounds` (48 kHz mono) with `collection`. With `at_collection_lengths`, each
/// sound took the length of a collection file as its length (or, ending where it died
/// away, as its longest), and level statistics measure each file at that length (a 0.2-s
/// hit generated as 0.5 s is a hit and then silence, as is the file padded to 0.5 s; a
/// sound that died away sooner is measured as made, the file still at that length);
/// otherwise files are measured as they are.
pub fn resemblance(
    sounds: &[Vec<f32>],
    collection: &[Vec<f32>],
    at_collection_lengths: bool,
    mel: &MelSpectrogram,
    seed: u64,
) -> anyhow::Result<Resemblance> {
    let closeness = nearest_neighbour_ratio(sounds, collection, mel)?;
    let levelled: Vec<Cow<[f32]>> = collection
        .iter()
        .map(|f| match at_collection_lengths {
            true => at_generated_length(f),
            false => Cow::Borrowed(f.as_slice()),
        })
        .collect();
    let levelled: Vec<&[f32]> = levelled.iter().map(|f| f.as_ref()).collect();
    let generated: Vec<&[f32]> = sounds.iter().map(Vec::as_slice).collect();
    let LevelShape {
        near_silent_share,
        onsets_per_s,
    } = level_shape(&generated, &levelled, mel)?;
    let real = sound_features_all(collection, mel)?;
    let fake = sound_features_all(sounds, mel)?;
    let standard = Standardiser::fit(&real)?;
    let (real, fake) = (standard.apply(&real)?, standard.apply(&fake)?);
    let distribution = Distribution {
        features: metrics::collection::features::FEATURE_NAMES.to_vec(),
        effect_size: effect_sizes(&real, &fake),
        mmd2: mmd2_unbiased(&fake, &real)?,
        split_half: split_half_baseline(&real, seed)?,
        precision_recall: precision_recall_coverage(&real, &fake, PRC_K)?,
    };
    Ok(Resemblance {
        closeness,
        near_silent_share,
        onsets_per_s,
        distribution,
    })
}

/// The level shape of a set of sounds against reference sounds: the share of near-silent
/// frames and the onset rate, per sound.
#[derive(Debug, Clone, Serialize)]
pub struct LevelShape {
    pub near_silent_share: Compared,
    pub onsets_per_s: Compared,
}

/// [`LevelShape`] of `sounds` (the `generated` side) against `references` (the
/// `collection` side), each sound measured as it is.
pub fn level_shape(
    sounds: &[&[f32]],
    references: &[&[f32]],
    mel: &MelSpectrogram,
) -> anyhow::Result<LevelShape> {
    let per = |sounds: &[&[f32]], f: &dyn Fn(&[f32]) -> metrics::Result<f64>| {
        let values = sounds
            .iter()
            .map(|s| f(s))
            .collect::<metrics::Result<Vec<f64>>>()?;
        Summary::of(&values)
    };
    let silent = |s: &[f32]| near_silent_share(s, NEAR_SILENT_DB);
    let onsets = |s: &[f32]| onset_rate(s, mel);
    Ok(LevelShape {
        near_silent_share: Compared {
            generated: per(sounds, &silent)?,
            collection: per(references, &silent)?,
        },
        onsets_per_s: Compared {
            generated: per(sounds, &onsets)?,
            collection: per(references, &onsets)?,
        },
    })
}

/// The heuristic verdicts on a [`Resemblance`]: closeness, feature distribution,
/// fidelity / diversity, and the level shape where it differs.
fn resemblance_verdicts(r: &Resemblance) -> Vec<String> {
    let d = &r.distribution;
    let mut verdicts = vec![
        verdict::closeness(r.closeness.ratio).to_string(),
        verdict::distribution(d.mmd2, &d.split_half).to_string(),
    ];
    verdicts.extend(
        verdict::fidelity_diversity(d.precision_recall.precision, d.precision_recall.recall)
            .into_iter()
            .map(str::to_string),
    );
    let (g, c) = (
        r.near_silent_share.generated.median,
        r.near_silent_share.collection.median,
    );
    if (g - c).abs() > LEVEL_TOLERANCE {
        verdicts.push(format!(
            "level shape unlike the collection: {:.0}% of frames near-silent, the collection {:.0}%",
            g * 100.0,
            c * 100.0
        ));
    }
    verdicts
}

/// The sounds of `folder` (every usable audio file, any format, resampled to 48 kHz mono)
/// against `collection`, as they are (their own lengths).
pub fn sounds_in_folder(
    folder: &Path,
    collection: &[Vec<f32>],
    mel: &MelSpectrogram,
    seed: u64,
) -> anyhow::Result<SoundsReport> {
    let scan = audio::scan::scan_dataset(folder)
        .with_context(|| format!("scanning {}", folder.display()))?;
    let paths: Vec<_> = scan.usable().map(|f| f.path.clone()).collect();
    if paths.is_empty() {
        bail!("{}: no usable audio files to compare", folder.display());
    }
    let sounds: Vec<Vec<f32>> = paths
        .iter()
        .map(|p| audio::load_48k(p).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<_>>()?;
    let resemblance = resemblance(&sounds, collection, false, mel, seed)?;
    let verdicts = resemblance_verdicts(&resemblance);
    let seconds: Vec<f64> = sounds
        .iter()
        .map(|s| s.len() as f64 / f64::from(audio::SAMPLE_RATE))
        .collect();
    Ok(SoundsReport {
        folder: folder.display().to_string(),
        count: sounds.len(),
        duration_s: Summary::of(&seconds)?,
        resemblance,
        verdicts,
    })
}

/// Copying of training code sequences by each generated sound.
fn novelty(
    order: TokenOrder,
    sounds: &[Sound],
    seeds: &[u64],
    training: &[TrainingCodes],
    column_s: f64,
) -> anyhow::Result<Novelty> {
    anyhow::ensure!(
        !training.is_empty(),
        "no training files to compare codes with"
    );
    let shape = training[0].shape;
    let column_samples = ((column_s * f64::from(audio::SAMPLE_RATE)).round() as usize).max(1);
    let train_columns: Vec<Vec<Vec<i64>>> = training
        .iter()
        .map(|t| columns(&t.grids, t.shape))
        .collect::<anyhow::Result<_>>()?;
    let train_streams: Vec<Vec<i64>> = training
        .iter()
        .map(|t| stream(order, &t.grids, t.shape))
        .collect::<anyhow::Result<_>>()?;
    let mut cases = Vec::with_capacity(sounds.len());
    let (mut copied_s, mut shares, mut overlaps) = (Vec::new(), Vec::new(), Vec::new());
    for (sound, &seed) in sounds.iter().zip(seeds) {
        anyhow::ensure!(
            sound.codes.shape.rows == shape.rows && sound.codes.shape.levels == shape.levels,
            "generated grids do not have the training grids' rows and levels"
        );
        let mut cols = columns(&sound.codes.grids, sound.codes.shape)?;
        // Only the columns the sound keeps: one that ended where it died away is the start
        // of its grid, and codes of the residue after it are heard by no one.
        cols.truncate(sound.audio.len().div_ceil(column_samples).max(1));
        let span = longest_copied_span(&cols, &train_columns);
        let share = span.share();
        copied_s.push(span.len as f64 * column_s);
        shares.push(share);
        // A time-major stream is its columns in order; a raster one (1-s grids of the
        // reference's priors) is scored whole.
        let tokens = match order {
            TokenOrder::TimeMajor => cols.concat(),
            TokenOrder::Raster => stream(order, &sound.codes.grids, sound.codes.shape)?,
        };
        overlaps.push(ngram_overlap(&tokens, &train_streams, NGRAM)?);
        cases.push(CopyCase {
            seed,
            copied_s: span.len as f64 * column_s,
            copied_share: share,
            training_file: training
                .get(span.training_index)
                .map(|t| t.name.clone())
                .unwrap_or_default(),
        });
    }
    cases.sort_by(|a, b| b.copied_share.total_cmp(&a.copied_share));
    cases.truncate(LISTED);
    Ok(Novelty {
        copied_s: Summary::of(&copied_s)?,
        copied_share: Summary::of(&shares)?,
        ngram: NGRAM,
        ngram_overlap: Summary::of(&overlaps)?,
        most_copy_like: cases,
    })
}

/// Cohen's d of each feature: the mean of `fake` minus the mean of `real`, over the pooled
/// standard deviation `sqrt((s_fake² + s_real²) / 2)` (0 where neither set varies). Rows are
/// sounds, columns features, as many in both sets.
fn effect_sizes(real: &[Vec<f64>], fake: &[Vec<f64>]) -> Vec<f64> {
    let moments = |rows: &[Vec<f64>], j: usize| {
        let n = rows.len().max(1) as f64;
        let mean = rows.iter().map(|r| r[j]).sum::<f64>() / n;
        let var = rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / n;
        (mean, var)
    };
    let dim = fake.first().map_or(0, Vec::len);
    (0..dim)
        .map(|j| {
            let ((mf, vf), (mr, vr)) = (moments(fake, j), moments(real, j));
            let pooled = ((vf + vr) / 2.0).sqrt();
            if pooled > 0.0 {
                (mf - mr) / pooled
            } else {
                0.0
            }
        })
        .collect()
}

/// The `n` features that set the generated sounds furthest apart from the collection, by
/// the size of their effect (either sign), largest first.
pub fn furthest_features(d: &Distribution, n: usize) -> Vec<(&'static str, f64)> {
    let mut pairs: Vec<(&'static str, f64)> = d
        .features
        .iter()
        .copied()
        .zip(d.effect_size.iter().copied())
        .collect();
    pairs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    pairs.truncate(n);
    pairs
}

/// The file whose length the `i`-th of `count` sounds takes: the files in turn, or where the
/// collection has more files than sounds, files spread evenly through it (the first files of
/// a folder sorted by name may all be one kind of sound).
fn length_source(i: usize, count: usize, files: usize) -> usize {
    if files > count {
        i * files / count
    } else {
        i % files.max(1)
    }
}

/// A file padded with silence or cut to the length a sound generated after it gets.
fn at_generated_length(file: &[f32]) -> Cow<'_, [f32]> {
    let n = collection_length(file);
    if n == file.len() {
        return Cow::Borrowed(file);
    }
    let mut v = file[..n.min(file.len())].to_vec();
    v.resize(n, 0.0);
    Cow::Owned(v)
}

/// The length a generated sound takes after a collection file: the file's, within 0.5–10 s.
fn collection_length(file: &[f32]) -> usize {
    let rate = audio::SAMPLE_RATE as usize;
    file.len().clamp(rate / 2, 10 * rate)
}

#[cfg(test)]
mod tests {
    use super::{
        Distribution, NEAR_SILENT_DB, TrainingCodes, at_generated_length, effect_sizes,
        furthest_features, length_source, level_shape, novelty,
    };
    use crate::generate::{Sound, SoundCodes};
    use metrics::levels::near_silent_share;
    use prior_model::{GridShape, TokenOrder};

    #[test]
    fn copies_count_only_in_the_columns_a_sound_keeps() {
        // One row, one level: a grid is its columns. The sound's last two columns are a
        // training file's; its first two are not.
        let shape = |steps| GridShape {
            rows: 1,
            steps,
            levels: 1,
        };
        let training = [TrainingCodes {
            name: "file".into(),
            grids: vec![vec![7, 8, 9, 3, 4, 9]],
            shape: shape(6),
        }];
        let column_s = 0.1;
        let sound = |samples: usize| Sound {
            audio: vec![0.1; samples],
            codes: SoundCodes {
                order: TokenOrder::TimeMajor,
                grids: vec![vec![1, 2, 3, 4]],
                shape: shape(4),
            },
        };
        let copied = |samples| {
            let n = novelty(
                TokenOrder::TimeMajor,
                &[sound(samples)],
                &[1],
                &training,
                column_s,
            )
            .expect("novelty");
            (n.copied_s.max, n.copied_share.max)
        };
        // Whole: the last two of four columns copied.
        let (s, share) = copied(4 * 4_800);
        assert!(
            (s - 0.2).abs() < 1e-9 && (share - 0.5).abs() < 1e-9,
            "{s} {share}"
        );
        // Ended after 1.5 columns: two columns kept, none copied.
        assert_eq!(copied(7_200), (0.0, 0.0));
    }

    #[test]
    fn sound_lengths_come_from_files_spread_through_the_collection() {
        let picks = |count: usize, files: usize| -> Vec<usize> {
            (0..count).map(|i| length_source(i, count, files)).collect()
        };
        // More files than sounds: spread evenly, not the first ones.
        assert_eq!(picks(4, 12), [0, 3, 6, 9]);
        assert_eq!(picks(32, 741).last(), Some(&717));
        // Fewer files than sounds: the files in turn.
        assert_eq!(picks(5, 3), [0, 1, 2, 0, 1]);
        assert_eq!(picks(3, 3), [0, 1, 2]);
    }

    #[test]
    fn files_are_measured_at_the_length_their_sounds_get() {
        let rate = audio::SAMPLE_RATE as usize;
        // A 0.2-s burst: generated as 0.5 s, so measured padded to 0.5 s, mostly silence.
        let hit = vec![0.5f32; rate / 5];
        let padded = at_generated_length(&hit);
        assert_eq!(padded.len(), rate / 2);
        assert_eq!(&padded[..hit.len()], hit.as_slice());
        let share = near_silent_share(&padded, NEAR_SILENT_DB).expect("share");
        assert!((0.5..0.7).contains(&share), "{share}");
        assert_eq!(near_silent_share(&hit, NEAR_SILENT_DB).expect("share"), 0.0);
        // Within 0.5–10 s a file is its own length; above, it is cut at 10 s.
        let mid = vec![0.1f32; rate];
        assert!(matches!(
            at_generated_length(&mid),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            at_generated_length(&vec![0.1f32; 11 * rate]).len(),
            10 * rate
        );
    }

    #[test]
    fn level_shape_measures_each_side_per_sound() {
        let rate = audio::SAMPLE_RATE as usize;
        let mel = audio::mel::MelSpectrogram::new(audio::SpectrogramConfig::default());
        // Four 0.25-s tone bursts, each followed by as much silence; and a steady tone.
        let tone = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
                .collect()
        };
        let bursts: Vec<f32> = (0..4)
            .flat_map(|_| {
                let mut b = tone(rate / 4);
                b.resize(rate / 2, 0.0);
                b
            })
            .collect();
        let steady = tone(2 * rate);
        let shape = level_shape(&[&bursts, &bursts], &[&steady], &mel).expect("level shape");
        let ns = &shape.near_silent_share;
        assert_eq!((ns.generated.n, ns.collection.n), (2, 1));
        assert!((0.45..=0.55).contains(&ns.generated.median), "{ns:?}");
        assert_eq!(ns.collection.median, 0.0);
        // Each burst starts with an onset: at least two per second, the steady tone fewer.
        let onsets = &shape.onsets_per_s;
        assert!(onsets.generated.median >= 2.0, "{onsets:?}");
        assert!(onsets.collection.median < 2.0, "{onsets:?}");
    }

    #[test]
    fn the_furthest_features_are_the_largest_shifts_either_way() {
        // Standardised features of four generated sounds: the third feature sits 3 σ below
        // the collection, the first 1 σ above, the second on it.
        let fake = vec![
            vec![0.5, 0.2, -2.0],
            vec![1.5, -0.2, -4.0],
            vec![1.0, 0.1, -3.5],
            vec![1.0, -0.1, -2.5],
        ];
        // The collection, standardised: every feature mean 0, standard deviation 1.
        let real = vec![vec![-1.0; 3], vec![1.0; 3]];
        let shift = effect_sizes(&real, &fake);
        assert_eq!(shift.len(), 3);
        // Feature a: mean 1, variance 0.125 → d = 1 / sqrt((0.125 + 1) / 2) = 4/3.
        assert!((shift[0] - 4.0 / 3.0).abs() < 1e-12, "{shift:?}");
        assert!(shift[1].abs() < 1e-12);
        // Feature c: mean −3, variance 0.625 → d = −3 / sqrt(0.8125).
        assert!(
            (shift[2] + 3.0 / 0.8125f64.sqrt()).abs() < 1e-12,
            "{shift:?}"
        );
        // A generated set spread as widely as it is shifted is less set apart.
        let wide = effect_sizes(&real[..], &[vec![3.0; 3], vec![-1.0; 3]]);
        assert!((wide[0] - 1.0 / 2.5f64.sqrt()).abs() < 1e-12, "{wide:?}");
        // A feature neither set varies: no effect rather than a division by zero.
        let flat = effect_sizes(&[vec![0.0], vec![0.0]], &[vec![0.0], vec![0.0]]);
        assert_eq!(flat, [0.0]);
        let d = Distribution {
            features: vec!["a", "b", "c"],
            effect_size: shift,
            mmd2: 0.0,
            split_half: metrics::collection::mmd::SplitHalf {
                mean: 0.0,
                std: 0.0,
                max: 0.0,
                splits: 0,
            },
            precision_recall: metrics::collection::prc::Prc {
                precision: 1.0,
                recall: 1.0,
                coverage: 1.0,
                density: 1.0,
                k: 3,
            },
        };
        let furthest = furthest_features(&d, 2);
        assert_eq!(furthest.len(), 2);
        assert_eq!(furthest[0].0, "c");
        assert!(furthest[0].1 < -3.0, "the sign is kept");
        assert_eq!(furthest[1].0, "a");
        assert!(effect_sizes(&real, &[]).is_empty());
    }
}
