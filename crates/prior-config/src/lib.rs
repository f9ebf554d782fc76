//! Configuration of the Distill code prior.
//!
//! Pure Rust (no Burn): the CLI, the model file and the training loop all read it.
//! Field names and defaults follow the reference system's `PriorConfig` so that
//! reference model files round-trip through our own format unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors from building, validating or reading a [`PriorConfig`].
#[derive(Debug, thiserror::Error)]
pub enum PriorConfigError {
    #[error("invalid prior config: {0}")]
    Invalid(String),
    #[error("cannot read prior config {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse prior config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("cannot serialise prior config: {0}")]
    Serialise(String),
}

/// Hyper-parameters of the autoregressive prior and of its training run.
///
/// `seq_len` and `num_quantizers` describe the code grid the prior was built for; they are
/// optional because they come from the VQ-VAE, not from the user (the reference stores them
/// in the same dictionary once a prior has been trained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriorConfig {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub dropout: f64,
    pub max_epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub gradient_clip_norm: f64,
    pub batch_size: usize,
    pub val_fraction: f64,
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_quantizers: Option<usize>,
    /// Whether a file's code stream stops where its audio ends (Distill's own tiers) rather
    /// than running on through the zero padding of its last chunk (the reference's data).
    /// Not written when off, so reference configurations round-trip unchanged.
    #[serde(skip_serializing_if = "is_false")]
    pub trim_padding: bool,
    /// Whether an epoch draws its training windows file by file — each file equally often,
    /// then a window within it — (Distill's own tiers) rather than from all windows alike,
    /// where a 6-s file counts thirty times a one-shot hit. Not written when off.
    #[serde(skip_serializing_if = "is_false")]
    pub balance_files: bool,
    /// Most optimiser steps of the run (Distill's large tier): `max_epochs` is cut to the
    /// whole epochs that fit, so training time follows this budget, not the collection's
    /// size. Not written when unset (reference configurations round-trip unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// Speeds at which the prior also learns each training file (pitch and tempo shifted
    /// together, as a tape played faster or slower): more code sequences of the same sounds
    /// for a prior that otherwise sees a few dozen. Distill's small tier learns each file a
    /// semitone down and up as well ([`SEMITONE_COPIES`]), and so does the medium tier (up to
    /// 100 files); the large tier does not (README, "Speed copies"). Empty (not written): the
    /// files only as recorded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub augment_speeds: Vec<f64>,
    /// Stop training once this many epochs have passed without a better validation loss
    /// (the best epoch's weights are kept either way); 0 or unset: train every epoch, as
    /// the reference does. Not written when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Decay per optimiser step of an exponential moving average of the prior's weights;
    /// the average is what is validated and kept. 0 or unset (not written): the weights
    /// themselves, as the reference does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_average: Option<f64>,
    /// Whether the prior embeds each token's frequency row of the time-major code grid
    /// besides its position and level, so that a row's tokens in earlier columns are found
    /// by what they describe rather than by a distance the prior must learn for every
    /// position. Not written when off (the reference's priors have no such weights).
    #[serde(skip_serializing_if = "is_false")]
    pub row_embedding: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            hidden_size: 256,
            num_layers: 4,
            num_heads: 4,
            dropout: 0.1,
            max_epochs: 100,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            gradient_clip_norm: 1.0,
            batch_size: 32,
            val_fraction: 0.2,
            device: "auto".to_string(),
            seq_len: None,
            num_quantizers: None,
            trim_padding: false,
            balance_files: false,
            max_steps: None,
            augment_speeds: Vec::new(),
            patience: None,
            weight_average: None,
            row_embedding: false,
        }
    }
}

/// The epochs a run trains: `max_epochs`, or fewer where `max_steps` optimiser steps (an
/// epoch being `ceil(items / batch_size)` steps) run out first; never fewer than one.
pub fn epochs_within_steps(
    max_epochs: usize,
    max_steps: Option<usize>,
    items_per_epoch: usize,
    batch_size: usize,
) -> usize {
    let Some(steps) = max_steps else {
        return max_epochs;
    };
    let per_epoch = items_per_epoch.div_ceil(batch_size.max(1)).max(1);
    (steps / per_epoch).clamp(1, max_epochs.max(1))
}

/// Dataset-size tier shared by the prior and the VQ-VAE configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetTier {
    /// ≤ 20 files.
    Small,
    /// 21–100 files.
    Medium,
    /// > 100 files.
    Large,
}

impl DatasetTier {
    /// The reference system's tier.
    pub fn for_file_count(file_count: usize) -> Self {
        match file_count {
            0..=20 => Self::Small,
            21..=100 => Self::Medium,
            _ => Self::Large,
        }
    }

    /// Distill's tier for `file_count` files that cut into `chunks` one-second chunks: the
    /// reference's, except that a collection of 21–100 short sounds no longer than
    /// [`NATIVE_SMALL_MAX_CHUNKS`] chunks is small. What a model can learn follows the sound
    /// it is given more than the number of files: fifty footsteps (foley50, 56 chunks) give
    /// the prior as many windows as drums20's twenty hits (32), and the medium tier's wider
    /// codec and four-layer prior learned them less well (nearest-neighbour ratio 1.65 against
    /// 1.33) in a third more time (README, "Tiers by length").
    pub fn native(file_count: usize, chunks: usize) -> Self {
        match Self::for_file_count(file_count) {
            Self::Medium if chunks <= NATIVE_SMALL_MAX_CHUNKS => Self::Small,
            tier => tier,
        }
    }
}

/// Most one-second chunks of a collection of more than 20 files that Distill still trains
/// with its small tier (see [`DatasetTier::native`]).
pub const NATIVE_SMALL_MAX_CHUNKS: usize = 64;

/// Validation fraction by file count (file-level split): 0.5 below 10 files, 0.3 below 50,
/// 0.2 below 200, else 0.1.
pub fn adaptive_val_fraction(file_count: usize) -> f64 {
    match file_count {
        0..=9 => 0.5,
        10..=49 => 0.3,
        50..=199 => 0.2,
        _ => 0.1,
    }
}

/// Batch size by file count: `min(32, max(1, files * 5 / 4))`.
pub fn adaptive_batch_size(file_count: usize) -> usize {
    (file_count * 5 / 4).clamp(1, 32)
}

/// The reference system's dataset-adaptive prior configuration.
pub fn get_adaptive_prior_config(file_count: usize) -> PriorConfig {
    adaptive_prior_for(DatasetTier::for_file_count(file_count), file_count)
}

/// The reference's prior of `tier`, with the validation share and batch of `file_count` files.
fn adaptive_prior_for(tier: DatasetTier, file_count: usize) -> PriorConfig {
    let (hidden_size, num_layers, num_heads, dropout, max_epochs, learning_rate) = match tier {
        DatasetTier::Small => (128, 2, 4, 0.3, 50, 3e-4),
        DatasetTier::Medium => (256, 4, 4, 0.2, 100, 1e-3),
        DatasetTier::Large => (512, 6, 8, 0.1, 150, 1e-3),
    };
    PriorConfig {
        hidden_size,
        num_layers,
        num_heads,
        dropout,
        max_epochs,
        learning_rate,
        val_fraction: adaptive_val_fraction(file_count),
        batch_size: adaptive_batch_size(file_count),
        ..PriorConfig::default()
    }
}

/// Distill's own prior for a collection of `file_count` files cut into `chunks` one-second
/// chunks ([`DatasetTier::native`]): the reference tier trained
/// on the files' audio only, not on the zero padding after a file's end (a quarter of the
/// chunks' time in a collection of 2-s notes, which taught short-trained priors to fall
/// silent mid-note; three prior seeds on one VQ-VAE each, trimmed against padded, gave
/// nearest-neighbour ratios of 0.77–1.04 against 1.07–1.39 on notes96, 1.82–2.73 against
/// 1.94–2.34 on drums20 and 1.20–1.24 against 1.12–1.19 on speech30, whose pauses only the
/// padded prior writes), in batches of 8 up to 100 files (notes96 under a 6-minute budget:
/// sustained notes where batches of 32 wrote fragments). The small tier also trains at a
/// learning rate of 1e-3 for 100 epochs (an epoch draws as many windows as the data has
/// chunks): the reference's 50 epochs of one or two steps at 3e-4 leave the prior near its
/// unigram statistics (drums20, padding still in the data: validation perplexity 8.3
/// against 2.9 this way), and embeds each token's code row ([`PriorConfig::row_embedding`]),
/// which the small tier's 16-row codec grid needs to keep pitched notes in tune (README,
/// "The small tier's grid"). The large tier (> 100 files) keeps the reference's 19 M-parameter
/// model but trains it in batches of 16 for at most [`NATIVE_LARGE_STEPS`] steps: its
/// 150 epochs take hours on a laptop's CPU, and batches of 32 peak at 2.6 GB. Every tier
/// draws its windows file by file ([`PriorConfig::balance_files`]): on drums20, where one
/// 6-s roll had as many windows as a dozen hits, generated sounds came nearer the collection
/// (nearest-neighbour ratio 1.99 → 1.67 and 2.57 → 2.20 over two training seeds).
pub fn native_prior_config(file_count: usize, chunks: usize) -> PriorConfig {
    let tier = DatasetTier::native(file_count, chunks);
    let mut c = adaptive_prior_for(tier, file_count);
    c.trim_padding = true;
    c.balance_files = true;
    c.patience = Some(NATIVE_PATIENCE);
    match tier {
        DatasetTier::Small => {
            c.batch_size = c.batch_size.min(NATIVE_BATCH);
            c.learning_rate = 1e-3;
            c.max_epochs = NATIVE_SMALL_EPOCHS;
            c.hidden_size = NATIVE_SMALL_HIDDEN;
            c.augment_speeds = SEMITONE_COPIES.to_vec();
            c.weight_average = Some(NATIVE_WEIGHT_AVERAGE);
            c.row_embedding = true;
        }
        DatasetTier::Medium => {
            c.batch_size = c.batch_size.min(NATIVE_BATCH);
            c.weight_average = Some(NATIVE_WEIGHT_AVERAGE);
            // Its 4-layer prior overfits a few hundred windows within ten epochs; the copies
            // halved its validation perplexity on notes96 and brought the notes nearer
            // (README, "Speed copies").
            c.augment_speeds = SEMITONE_COPIES.to_vec();
        }
        DatasetTier::Large => {
            c.batch_size = NATIVE_LARGE_BATCH;
            c.max_steps = Some(NATIVE_LARGE_STEPS);
        }
    }
    c
}

/// The small and medium tiers' speed copies: each training file also a semitone down and up
/// (2^∓1/12), as a sampler plays a note on the neighbouring keys, so pitched sounds stay in
/// tune. On drums20 (five training seeds, three evaluation seeds each) they lowered the
/// nearest-neighbour ratio from 1.79 to 1.57 (11 of 15 runs) and the feature MMD² from 0.66
/// to 0.57; on eight drum hits 0.70 → 0.67, on twenty notes of notes96 1.27 → 1.14; with
/// the medium tier on all of notes96 1.56 / 1.44 → 1.36 / 1.33 and 1.58 / 1.62 → 1.18 / 1.20.
pub const SEMITONE_COPIES: [f64; 2] = [0.943_874_312_681_693_5, 1.059_463_094_359_295_3];

/// Width of the small tier's prior (the reference's 128, two layers kept). The small tier's
/// codec keeps more of each sound (channel dropout 0.1, not 0.4: see `vqvae`'s
/// `native_vqvae_config`) and uses more of its codebooks; a 128-wide prior then wrote sounds no
/// nearer the collection, a 256-wide one did (drums20, five training seeds × three evaluation
/// seeds: nearest-neighbour ratio 1.57 → 1.40, feature MMD² 0.57 → 0.22; README, "Codec
/// dropout"). Four layers (the medium tier's) scored a lower median but one seed at 2.9.
const NATIVE_SMALL_HIDDEN: usize = 256;
/// Decay of the small and medium tiers' average of the prior's weights
/// ([`PriorConfig::weight_average`]). A prior fitted to a few dozen code sequences ends each
/// step somewhere else along a noisy path, and where it stops decides how often it writes an
/// endless noise burst; the average over the recent steps is steadier. On drums20 (six training
/// seeds, evaluate seeds 1–2, 128 sounds each) the nearest-neighbour ratio fell from 1.63 to
/// 1.46 on average (lower for four of six seeds, the other two level), on twenty notes of
/// notes96 (three seeds) from 1.14 to 1.08, on foley50 (three prior seeds) from 2.02 to 1.46;
/// README, "Weight averaging". The large tier's bounded 200 steps are not measured.
pub const NATIVE_WEIGHT_AVERAGE: f64 = 0.95;
/// Epochs of the small tier's prior.
const NATIVE_SMALL_EPOCHS: usize = 100;

/// Epochs without a better validation loss after which Distill's tiers stop training the
/// prior. The kept weights are the best epoch's either way, so stopping changes the model
/// only when a better epoch would have come after such a plateau: on drums20's small tier
/// (five training seeds' full-length logs) the best epochs were 23–44 of 100, so the runs
/// stop at 43–64 with the same weights (seed 1 run both ways: byte-identical sounds,
/// 203 s against 228 s); over 160 earlier training logs (drums20 variants mostly)
/// 151 would have kept the same epoch, the other 9 one whose validation perplexity was
/// 0.2–5 % higher.
const NATIVE_PATIENCE: usize = 20;

/// Windows per prior step in Distill's small and medium tiers.
const NATIVE_BATCH: usize = 8;
/// Windows per prior step in the large tier (large346: an epoch takes as long as with
/// 32, the peak memory of the prior stage falls from 2.6 to 1.6 GB).
const NATIVE_LARGE_BATCH: usize = 16;
/// Most steps of the large tier's prior.
pub const NATIVE_LARGE_STEPS: usize = 200;

impl PriorConfig {
    /// Checks that the configuration describes a buildable, trainable model.
    pub fn validate(&self) -> Result<(), PriorConfigError> {
        let invalid = |m: String| Err(PriorConfigError::Invalid(m));
        if let Some(s) = self
            .augment_speeds
            .iter()
            .find(|s| !(0.5..=2.0).contains(*s))
        {
            return invalid(format!("augment_speeds must lie in 0.5–2, got {s}"));
        }
        for (name, value) in [
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("max_epochs", self.max_epochs),
            ("batch_size", self.batch_size),
            ("max_steps", self.max_steps.unwrap_or(1)),
        ] {
            if value == 0 {
                return invalid(format!("{name} must be positive, got 0"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return invalid(format!(
                "num_heads ({}) must divide hidden_size ({})",
                self.num_heads, self.hidden_size
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return invalid(format!(
                "learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return invalid(format!(
                "weight_decay must be zero or positive, got {}",
                self.weight_decay
            ));
        }
        if !(self.gradient_clip_norm >= 0.0 && self.gradient_clip_norm.is_finite()) {
            return invalid(format!(
                "gradient_clip_norm must be zero (off) or positive, got {}",
                self.gradient_clip_norm
            ));
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return invalid(format!(
                "val_fraction must be in (0, 1), got {}",
                self.val_fraction
            ));
        }
        if let Some(d) = self.weight_average
            && !(0.0..1.0).contains(&d)
        {
            return invalid(format!(
                "weight_average must be in [0, 1) (0: off), got {d}"
            ));
        }
        if self.seq_len == Some(0) {
            return invalid("seq_len must be positive, got 0".into());
        }
        if let Some(q) = self.num_quantizers {
            if q == 0 {
                return invalid("num_quantizers must be positive, got 0".into());
            }
            if let Some(s) = self.seq_len
                && !s.is_multiple_of(q)
            {
                return invalid(format!(
                    "seq_len ({s}) must be a multiple of num_quantizers ({q})"
                ));
            }
        }
        Ok(())
    }

    /// Parses and validates a TOML document.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, PriorConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| PriorConfigError::Parse {
            path: origin.to_string(),
            message: e.message().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml_string(&self) -> Result<String, PriorConfigError> {
        toml::to_string_pretty(self).map_err(|e| PriorConfigError::Serialise(e.to_string()))
    }

    pub fn load_toml(path: &Path) -> Result<Self, PriorConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| PriorConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    pub fn save_toml(&self, path: &Path) -> Result<(), PriorConfigError> {
        let text = self.to_toml_string()?;
        std::fs::write(path, text).map_err(|source| PriorConfigError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_reference() {
        let c = PriorConfig::default();
        assert_eq!((c.hidden_size, c.num_layers, c.num_heads), (256, 4, 4));
        assert_eq!((c.dropout, c.max_epochs, c.learning_rate), (0.1, 100, 1e-3));
        assert_eq!((c.weight_decay, c.gradient_clip_norm), (0.01, 1.0));
        assert_eq!((c.batch_size, c.val_fraction), (32, 0.2));
        assert_eq!(c.device, "auto");
        c.validate().expect("defaults are valid");
    }

    #[test]
    fn adaptive_tiers_at_their_boundaries() {
        let small = get_adaptive_prior_config(20);
        assert_eq!(
            (small.hidden_size, small.num_layers, small.num_heads),
            (128, 2, 4)
        );
        assert_eq!(
            (small.dropout, small.max_epochs, small.learning_rate),
            (0.3, 50, 3e-4)
        );
        let medium = get_adaptive_prior_config(21);
        assert_eq!((medium.hidden_size, medium.num_layers), (256, 4));
        assert_eq!((medium.dropout, medium.max_epochs), (0.2, 100));
        let medium_top = get_adaptive_prior_config(100);
        assert_eq!(medium_top.hidden_size, 256);
        let large = get_adaptive_prior_config(101);
        assert_eq!(
            (large.hidden_size, large.num_layers, large.num_heads),
            (512, 6, 8)
        );
        assert_eq!(
            (large.dropout, large.max_epochs, large.learning_rate),
            (0.1, 150, 1e-3)
        );
        for n in [1, 5, 9, 10, 20, 49, 50, 199, 200, 500] {
            get_adaptive_prior_config(n)
                .validate()
                .expect("tier is valid");
        }
    }

    #[test]
    fn a_short_collection_of_many_files_trains_as_small() {
        assert_eq!(DatasetTier::native(50, 56), DatasetTier::Small);
        assert_eq!(
            DatasetTier::native(21, NATIVE_SMALL_MAX_CHUNKS),
            DatasetTier::Small
        );
        assert_eq!(
            DatasetTier::native(21, NATIVE_SMALL_MAX_CHUNKS + 1),
            DatasetTier::Medium
        );
        assert_eq!(DatasetTier::native(20, 500), DatasetTier::Small);
        assert_eq!(DatasetTier::native(101, 40), DatasetTier::Large);
        // The small tier's prior, with the file count's own validation share and batch.
        let (short, hits) = (native_prior_config(50, 56), native_prior_config(20, 32));
        assert_eq!(short.val_fraction, adaptive_val_fraction(50));
        assert_eq!(
            PriorConfig {
                val_fraction: hits.val_fraction,
                ..short
            },
            hits
        );
        assert_eq!(
            native_prior_config(50, 65),
            native_prior_config(50, 288),
            "longer: the medium tier"
        );
        assert_ne!(native_prior_config(50, 65).num_layers, hits.num_layers);
    }

    #[test]
    fn native_priors_differ_from_the_reference_where_documented() {
        let semitone = [2f64.powf(-1.0 / 12.0), 2f64.powf(1.0 / 12.0)];
        assert!(
            SEMITONE_COPIES
                .iter()
                .zip(semitone)
                .all(|(a, b)| (a - b).abs() < 1e-15)
        );
        // Four chunks a file: a collection long enough for its file count's tier.
        for n in [1, 5, 20, 21, 100, 101, 500] {
            let (native, reference) = (native_prior_config(n, 4 * n), get_adaptive_prior_config(n));
            native.validate().expect("native tier is valid");
            assert!(native.trim_padding && !reference.trim_padding, "{n} files");
            assert!(
                native.balance_files && !reference.balance_files,
                "{n} files"
            );
            let expected_batch = if n <= 100 {
                reference.batch_size.min(8)
            } else {
                16
            };
            assert_eq!(native.batch_size, expected_batch, "{n} files");
            let expected_steps = (n > 100).then_some(NATIVE_LARGE_STEPS);
            assert_eq!(native.max_steps, expected_steps, "{n} files");
            assert_eq!(reference.max_steps, None, "{n} files");
            if n <= 20 {
                assert_eq!(
                    (native.learning_rate, native.max_epochs),
                    (1e-3, NATIVE_SMALL_EPOCHS)
                );
                // Twice the reference's width, its depth and heads.
                assert_eq!(native.hidden_size, 2 * reference.hidden_size, "{n} files");
            } else {
                assert_eq!(
                    (native.learning_rate, native.max_epochs),
                    (reference.learning_rate, reference.max_epochs)
                );
                assert_eq!(native.hidden_size, reference.hidden_size, "{n} files");
            }
            // Semitone copies up to 100 files: the medium tier's prior overfits without them
            // (README, "Speed copies").
            if n <= 100 {
                assert_eq!(native.augment_speeds, SEMITONE_COPIES, "{n} files");
            } else {
                assert!(native.augment_speeds.is_empty(), "{n} files");
            }
            assert!(reference.augment_speeds.is_empty(), "{n} files");
            // The small and medium tiers validate and keep the average of their weights.
            let average = (n <= 100).then_some(NATIVE_WEIGHT_AVERAGE);
            assert_eq!(native.weight_average, average, "{n} files");
            assert_eq!(reference.weight_average, None, "{n} files");
            // The small tier embeds each code's row (its codec has 16 rows: see `vqvae`).
            assert_eq!(native.row_embedding, n <= 20, "{n} files");
            assert!(!reference.row_embedding, "{n} files");
            // Every native tier stops after 20 epochs without a better validation loss; the
            // reference trains every epoch.
            assert_eq!(native.patience, Some(NATIVE_PATIENCE), "{n} files");
            assert_eq!(reference.patience, None, "{n} files");
            // Everything else (the model's shape above all) is the reference tier's.
            let same = PriorConfig {
                trim_padding: true,
                balance_files: true,
                batch_size: native.batch_size,
                learning_rate: native.learning_rate,
                max_epochs: native.max_epochs,
                max_steps: native.max_steps,
                augment_speeds: native.augment_speeds.clone(),
                hidden_size: native.hidden_size,
                patience: native.patience,
                weight_average: native.weight_average,
                row_embedding: native.row_embedding,
                ..reference
            };
            assert_eq!(native, same, "{n} files");
        }
    }

    #[test]
    fn a_step_budget_becomes_whole_epochs() {
        // No budget: the configured epochs.
        assert_eq!(epochs_within_steps(150, None, 453, 16), 150);
        // 453 windows in batches of 16 = 29 steps an epoch; 200 steps hold 6 whole epochs.
        assert_eq!(epochs_within_steps(150, Some(200), 453, 16), 6);
        // Never more than asked for, never fewer than one.
        assert_eq!(epochs_within_steps(4, Some(200), 453, 16), 4);
        assert_eq!(epochs_within_steps(150, Some(10), 453, 16), 1);
        // Degenerate sizes do not divide by zero.
        assert_eq!(epochs_within_steps(150, Some(7), 0, 0), 7);
    }

    #[test]
    fn val_fraction_and_batch_size_follow_file_count() {
        let cases = [
            (1, 0.5, 1),
            (5, 0.5, 6),
            (9, 0.5, 11),
            (10, 0.3, 12),
            (20, 0.3, 25),
            (26, 0.3, 32),
            (49, 0.3, 32),
            (50, 0.2, 32),
            (199, 0.2, 32),
            (200, 0.1, 32),
        ];
        for (files, val, batch) in cases {
            let c = get_adaptive_prior_config(files);
            assert_eq!(c.val_fraction, val, "val_fraction for {files} files");
            assert_eq!(c.batch_size, batch, "batch_size for {files} files");
        }
        assert_eq!(adaptive_batch_size(0), 1);
    }

    #[test]
    fn validation_rejects_bad_values_with_a_reason() {
        let bad = |f: fn(&mut PriorConfig)| {
            let mut c = PriorConfig::default();
            f(&mut c);
            c.validate().expect_err("should be rejected").to_string()
        };
        assert!(bad(|c| c.num_heads = 3).contains("must divide hidden_size"));
        assert!(bad(|c| c.num_heads = 0).contains("num_heads must be positive"));
        assert!(bad(|c| c.hidden_size = 0).contains("hidden_size"));
        assert!(bad(|c| c.num_layers = 0).contains("num_layers"));
        assert!(bad(|c| c.learning_rate = -1.0).contains("learning_rate"));
        assert!(bad(|c| c.dropout = 1.5).contains("dropout"));
        assert!(bad(|c| c.val_fraction = 0.0).contains("val_fraction"));
        assert!(bad(|c| c.batch_size = 0).contains("batch_size"));
        assert!(bad(|c| c.augment_speeds = vec![1.1, 3.0]).contains("augment_speeds"));
        assert!(bad(|c| c.augment_speeds = vec![f64::NAN]).contains("augment_speeds"));
        for d in [-0.5, 1.0, f64::NAN] {
            let c = PriorConfig {
                weight_average: Some(d),
                ..PriorConfig::default()
            };
            assert!(
                c.validate()
                    .is_err_and(|e| e.to_string().contains("weight_average"))
            );
        }
        assert!(
            bad(|c| {
                c.seq_len = Some(10);
                c.num_quantizers = Some(3)
            })
            .contains("multiple")
        );
    }

    #[test]
    fn toml_round_trip_and_partial_files() {
        let mut c = get_adaptive_prior_config(42);
        c.seq_len = Some(144);
        c.num_quantizers = Some(3);
        let text = c.to_toml_string().expect("serialises");
        let back = PriorConfig::from_toml_str(&text, "memory").expect("parses");
        assert_eq!(back, c);
        // Missing fields fall back to the defaults, so a preset can name only what it changes.
        let partial = PriorConfig::from_toml_str("hidden_size = 64\nnum_heads = 2\n", "p.toml")
            .expect("partial file parses");
        assert_eq!(partial.hidden_size, 64);
        assert_eq!(partial.num_layers, 4);
        let err = PriorConfig::from_toml_str("hidden_size = 66\nnum_heads = 4\n", "bad.toml")
            .expect_err("heads do not divide");
        assert!(err.to_string().contains("must divide"));
        let err = PriorConfig::from_toml_str("hidden_size = \"big\"", "bad.toml")
            .expect_err("wrong type");
        assert!(err.to_string().contains("bad.toml"));
    }

    #[test]
    fn reads_the_reference_json_field_names() {
        // The reference's prior_config dictionary, as stored in its model files.
        let c: PriorConfig = serde_json::from_str(
            r#"{"hidden_size": 128, "num_layers": 2, "num_heads": 4, "dropout": 0.3,
                "max_epochs": 20, "learning_rate": 0.0003, "weight_decay": 0.01,
                "gradient_clip_norm": 1.0, "batch_size": 25, "val_fraction": 0.3,
                "device": "cpu", "seq_len": 144, "num_quantizers": 3}"#,
        )
        .expect("reference config parses");
        assert_eq!(
            (c.hidden_size, c.seq_len, c.num_quantizers),
            (128, Some(144), Some(3))
        );
        c.validate().expect("valid");
        assert!(!c.trim_padding, "reference files train on the padding");
        // Written back, a reference config has the reference's keys only; ours adds one.
        let keys = |c: &PriorConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect::<Vec<_>>(),
            other => panic!("not an object: {other:?}"),
        };
        assert!(!keys(&c).contains(&"trim_padding".to_string()));
        assert!(!keys(&c).contains(&"balance_files".to_string()));
        let native = native_prior_config(42, 100);
        assert!(keys(&native).contains(&"trim_padding".to_string()));
        assert!(keys(&native).contains(&"balance_files".to_string()));
        let text = native.to_toml_string().expect("serialises");
        assert_eq!(
            PriorConfig::from_toml_str(&text, "memory").expect("parses"),
            native
        );
    }
}
