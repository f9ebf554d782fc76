//! VQ-VAE hyper-parameters, with the reference system's field names and tiers.

use audio::chunk::Normalisation;
use serde::{Deserialize, Serialize};

use prior_config::DatasetTier;

use crate::model::{Architecture, EncoderInput, Upsample};
use crate::rvq::CodeRestart;

/// Configuration of the VQ-VAE and of its training run (reference `VQVAEConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VqvaeConfig {
    pub codebook_dim: usize,
    pub codebook_size: usize,
    pub num_quantizers: usize,
    pub decay: f64,
    pub commitment_weight: f64,
    pub threshold_ema_dead_code: f64,
    pub kmeans_init: bool,
    pub kmeans_iters: usize,
    pub dropout: f64,
    pub gradient_clip_norm: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub chunk_duration_s: f64,
    pub val_fraction: f64,
    pub augmentation_expansion: usize,
    pub checkpoint_interval: usize,
    pub preview_interval: usize,
    pub max_checkpoints: usize,
    pub device: String,
    pub num_workers: usize,
    /// Mel frames per code column (16 in reference files, which do not record it).
    #[serde(default = "reference_time_downsample")]
    pub time_downsample: usize,
    /// Mel bands per code row (16 in reference files, which do not record it).
    #[serde(default = "reference_freq_downsample")]
    pub freq_downsample: usize,
    /// How the decoder upsamples (transposed convolutions in reference files).
    #[serde(default = "reference_upsample")]
    pub upsample: Upsample,
    /// What the encoder reads (the log1p mel alone in reference files).
    #[serde(default)]
    pub encoder_input: EncoderInput,
    /// How training chunks are levelled (per chunk in reference files).
    #[serde(default = "reference_normalization")]
    pub normalization: Normalisation,
    /// Weight of the log-power term of the reconstruction loss (0 in reference files: MSE
    /// on the log1p mel alone).
    #[serde(default)]
    pub log_power_weight: f64,
    /// Where dead codes restart (at random batch vectors in reference files).
    #[serde(default)]
    pub code_restart: CodeRestart,
    /// Most optimiser steps of the run (Distill's large tier; see
    /// [`prior_config::epochs_within_steps`]). Not in reference files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// Share of training chunks whose decoder is given only a random number of the first
    /// residual levels (quantiser dropout), so the coarse levels are trained to stand alone.
    /// Not in reference files (0: every chunk decodes all levels).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quantizer_dropout: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn reference_time_downsample() -> usize {
    Architecture::REFERENCE.time_downsample
}

fn reference_freq_downsample() -> usize {
    Architecture::REFERENCE.freq_downsample
}

fn reference_upsample() -> Upsample {
    Architecture::REFERENCE.upsample
}

fn reference_normalization() -> Normalisation {
    Normalisation::PerChunk
}

impl Default for VqvaeConfig {
    fn default() -> Self {
        Self {
            codebook_dim: 128,
            codebook_size: 256,
            num_quantizers: 3,
            decay: 0.95,
            commitment_weight: 0.25,
            threshold_ema_dead_code: 2.0,
            kmeans_init: true,
            kmeans_iters: 10,
            dropout: 0.2,
            gradient_clip_norm: 1.0,
            batch_size: 32,
            max_epochs: 200,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            chunk_duration_s: 1.0,
            val_fraction: 0.2,
            augmentation_expansion: 10,
            checkpoint_interval: 10,
            preview_interval: 20,
            max_checkpoints: 3,
            device: "auto".into(),
            num_workers: 0,
            time_downsample: reference_time_downsample(),
            freq_downsample: reference_freq_downsample(),
            upsample: reference_upsample(),
            encoder_input: EncoderInput::LogMel,
            normalization: reference_normalization(),
            log_power_weight: 0.0,
            code_restart: CodeRestart::Random,
            max_steps: None,
            quantizer_dropout: 0.0,
        }
    }
}

/// The reference system's dataset-adaptive VQ-VAE configuration.
pub fn get_adaptive_vqvae_config(file_count: usize) -> VqvaeConfig {
    adaptive_vqvae_for(DatasetTier::for_file_count(file_count), file_count)
}

/// The reference's VQ-VAE of `tier`, with the validation share and batch of `file_count` files.
fn adaptive_vqvae_for(tier: DatasetTier, file_count: usize) -> VqvaeConfig {
    let (codebook_size, decay, dropout, max_epochs, learning_rate, augmentation_expansion) =
        match tier {
            DatasetTier::Small => (64, 0.8, 0.4, 100, 5e-4, 15),
            DatasetTier::Medium => (128, 0.9, 0.2, 200, 1e-3, 10),
            DatasetTier::Large => (256, 0.95, 0.1, 300, 1e-3, 5),
        };
    VqvaeConfig {
        codebook_size,
        decay,
        dropout,
        max_epochs,
        learning_rate,
        augmentation_expansion,
        val_fraction: prior_config::adaptive_val_fraction(file_count),
        batch_size: prior_config::adaptive_batch_size(file_count),
        ..VqvaeConfig::default()
    }
}

/// Distill's own VQ-VAE for a collection of `file_count` files cut into `chunks` one-second
/// chunks (its tier: [`DatasetTier::native`]): the reference tier with
/// chunks levelled per file (quiet tails stay quiet), a log-power term in the loss (the
/// decoder learns silence instead of a faint bed under it), an encoder that reads the
/// mel's log power beside the log1p mel (so it sees decays far below the peak: see
/// [`EncoderInput::LogMelAndPower`]) and small batches, so that an
/// epoch is many optimiser steps rather than a handful. Small collections (≤ 20 files, or
/// short sounds in at most [`prior_config::NATIVE_SMALL_MAX_CHUNKS`] one-second chunks) code
/// each second as 16 rows × 6 columns of one level rather than the reference's 8 × 6 × 3 and
/// decode by repetition and convolution (no checkerboard) over 60 epochs; larger
/// ones keep the transposed convolutions, whose checkerboard stays below the one harmonic
/// lines put in real mels and which take 0.7 of the time per epoch on a CPU (notes96; a half to a third
/// before the resize decoder ran as a transposed convolution). Dead codes restart where the
/// codebook fits worst, and the small tier keeps its code counts over many steps, so rare
/// sounds keep their codes. Measured with `distill evaluate` at equal
/// training time: see README, "Presets". Collections under [`NATIVE_SMALL_VAL_BELOW`] files
/// hold out [`NATIVE_SMALL_VAL_FRACTION`] of their files for validation (the prior validates
/// on the same files), larger ones the reference's share.
pub fn native_vqvae_config(file_count: usize, chunks: usize) -> VqvaeConfig {
    let tier = DatasetTier::native(file_count, chunks);
    let mut c = adaptive_vqvae_for(tier, file_count);
    if file_count < NATIVE_SMALL_VAL_BELOW {
        c.val_fraction = NATIVE_SMALL_VAL_FRACTION;
    }
    c.normalization = Normalisation::PerFile;
    c.log_power_weight = match tier {
        DatasetTier::Medium => NATIVE_MEDIUM_LOG_POWER_WEIGHT,
        _ => NATIVE_LOG_POWER_WEIGHT,
    };
    c.code_restart = CodeRestart::Farthest;
    c.encoder_input = EncoderInput::LogMelAndPower;
    c.dropout = c.dropout.min(NATIVE_DROPOUT);
    if tier == DatasetTier::Small {
        c.upsample = Upsample::Resize;
        c.batch_size = c.batch_size.min(NATIVE_SMALL_BATCH);
        c.max_epochs = NATIVE_SMALL_EPOCHS;
        c.decay = NATIVE_SMALL_DECAY;
        c.threshold_ema_dead_code = NATIVE_SMALL_DEAD_CODE;
        c.freq_downsample = NATIVE_SMALL_FREQ_DOWNSAMPLE;
        c.num_quantizers = NATIVE_SMALL_LEVELS;
    } else {
        c.batch_size = c.batch_size.min(NATIVE_BATCH);
    }
    if tier == DatasetTier::Large {
        c.max_steps = Some(NATIVE_LARGE_STEPS);
    }
    c
}

/// Most optimiser steps of the large tier's VQ-VAE (> 100 files): its 300 epochs take
/// 50 minutes on large346 and scale with the collection; this many steps take about
/// 11 minutes on 2 cores whatever the collection's size (large346: 70 epochs).
pub const NATIVE_LARGE_STEPS: usize = 4000;

/// Share of a small collection's files the native preset holds out for validation (at least
/// one file). The reference holds out 30 % of a collection of 10–49 files and half of a smaller
/// one: files the models never learn, so no generated sound can resemble them. On drums20
/// (2 files held out instead of 6) generated sounds came nearer the collection on average
/// over five training seeds, and at equal training time over three; on notes96 (9 instead of 19 of 96) nothing changed beyond a seed's noise,
/// hence the reference's 20 % from 50 files on. See README, "Validation files".
pub const NATIVE_SMALL_VAL_FRACTION: f64 = 0.1;
/// Collections with fewer files than this hold out [`NATIVE_SMALL_VAL_FRACTION`].
pub const NATIVE_SMALL_VAL_BELOW: usize = 50;

/// Weight of the log-power loss term of native models. On one-shot hits (the small tier) a
/// heavier term decodes closer but moves generated sounds away (drums20 seeds 1–4, foley50).
const NATIVE_LOG_POWER_WEIGHT: f64 = 0.1;
/// The medium tier's weight: on notes96 and speech30 under the same 6-minute budget, 0.3
/// decoded every distance closer than 0.1 (notes96's log-spectral distance 9.0 against
/// 10.1 dB) and generated notes nearer. README, "Presets".
const NATIVE_MEDIUM_LOG_POWER_WEIGHT: f64 = 0.3;
/// Batch size of the VQ-VAE for small collections (≤ 20 files).
const NATIVE_SMALL_BATCH: usize = 4;
/// Epochs of the VQ-VAE for small collections.
const NATIVE_SMALL_EPOCHS: usize = 60;
/// EMA decay of the small tier's codebooks. With 4 chunks per step a drum's codes are in
/// one batch out of four; at the reference's 0.8 their counts fell under the dead-code
/// threshold between uses and they were restarted, leaving 6–8 of 64 codes in use on drums20.
const NATIVE_SMALL_DECAY: f64 = 0.99;
/// Dead-code threshold of the small tier (EMA vectors per step; the reference's 2 assumes
/// batches of 25 chunks).
const NATIVE_SMALL_DEAD_CODE: f64 = 0.1;
/// Channel dropout of the native encoder and decoder blocks, in every tier (the reference's
/// small tier drops 0.4, its medium tier 0.2, its large tier 0.1). Dropout makes the decoder
/// hedge towards the average: at 0.4 on drums20 it decoded cells whose true log1p mel lies at
/// 8–10 (the bodies of kicks and toms) 2.8 low, through the unquantised encoder output too;
/// at 0.1 the loud-cell level on the validation files went from −2.2 to −1.2 and the
/// codebooks' use from 55/47/34 % to 88/84/62 %, and with the wider small-tier prior
/// (`prior_config::native_prior_config`) generated sounds came nearer the collection (README,
/// "Codec dropout"). On notes96 (VQ-VAE alone, 4-minute budget) 0.2 → 0.1 took the decoded
/// log-mel L1 from 0.64 to 0.60 and the loud-cell level from −1.49 to −1.00, and full runs
/// of notes96 and speech30 decoded closer for both training seeds (README, "Codec dropout").
const NATIVE_DROPOUT: f64 = 0.1;
/// Batch size of the VQ-VAE for larger collections.
const NATIVE_BATCH: usize = 8;
/// Mel bands per code row of the small tier: 16 rows instead of the reference's 8, which
/// lack the frequency detail of a note's harmonics or a drum's body. With
/// [`NATIVE_SMALL_LEVELS`] level a second is 16 × 6 × 1 = 96 prior tokens (the reference's
/// 144), and the small tier's prior embeds each code's row (`prior_config`'s
/// `row_embedding`), without which pitched notes moved away. Measured on eight twenty-file
/// collections over five training seeds (README, "The small tier's grid").
pub const NATIVE_SMALL_FREQ_DOWNSAMPLE: usize = 8;
/// Residual levels of the small tier's codes (the reference's 3): one, a plain VQ. A third
/// level on the 16-row grid doubled the tokens and brought drums20's sounds no nearer; the
/// second decodes only 0.02–0.04 log-mel L1 closer, and without it generated sounds came
/// nearer the collection on most small collections measured, in about two thirds of the
/// training time (README, "One level").
pub const NATIVE_SMALL_LEVELS: usize = 1;

impl VqvaeConfig {
    /// The layout of the model this config describes.
    pub fn arch(&self) -> Architecture {
        Architecture {
            time_downsample: self.time_downsample,
            freq_downsample: self.freq_downsample,
            upsample: self.upsample,
            input: self.encoder_input,
        }
    }

    /// Code grid `(rows, columns)` of one second of sound (what the prior reads per window)
    /// under the spectrogram settings `spec`.
    pub fn grid_per_second(&self, spec: &audio::SpectrogramConfig) -> (usize, usize) {
        let samples = spec.sample_rate as usize;
        self.arch().grid_for(spec.n_mels, spec.frames_for(samples))
    }

    /// Checks the values a model can be built and trained with.
    pub fn validate(&self) -> Result<(), String> {
        self.arch().validate().map_err(|e| e.to_string())?;
        if !(1..=4).contains(&self.num_quantizers) {
            return Err(format!(
                "num_quantizers (RVQ levels) must be 1–4, got {}",
                self.num_quantizers
            ));
        }
        if self.codebook_size < 2 {
            return Err(format!(
                "codebook_size must be at least 2, got {}",
                self.codebook_size
            ));
        }
        if self.codebook_dim == 0 {
            return Err("codebook_dim must be positive".into());
        }
        if self.max_steps == Some(0) {
            return Err("max_steps must be positive, got 0".into());
        }
        if !(0.0..1.0).contains(&self.decay) {
            return Err(format!("decay must be in [0, 1), got {}", self.decay));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(0.0..=1.0).contains(&self.quantizer_dropout) {
            return Err(format!(
                "quantizer_dropout must be in [0, 1], got {}",
                self.quantizer_dropout
            ));
        }
        // With one level there is nothing to drop: say so rather than ignore the setting.
        if self.quantizer_dropout > 0.0 && self.num_quantizers < 2 {
            return Err(format!(
                "quantizer_dropout needs at least 2 levels (num_quantizers = {})",
                self.num_quantizers
            ));
        }
        if !(self.commitment_weight >= 0.0 && self.commitment_weight.is_finite()) {
            return Err(format!(
                "commitment_weight must be zero or positive, got {}",
                self.commitment_weight
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(format!(
                "learning_rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(self.log_power_weight >= 0.0 && self.log_power_weight.is_finite()) {
            return Err(format!(
                "log_power_weight must be zero or positive, got {}",
                self.log_power_weight
            ));
        }
        if self.batch_size == 0 || self.max_epochs == 0 {
            return Err("batch_size and max_epochs must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_match_the_reference() {
        let cases = [
            (20, 64, 0.8, 0.4, 100, 5e-4),
            (21, 128, 0.9, 0.2, 200, 1e-3),
            (100, 128, 0.9, 0.2, 200, 1e-3),
            (101, 256, 0.95, 0.1, 300, 1e-3),
        ];
        for (n, k, decay, dropout, epochs, lr) in cases {
            let c = get_adaptive_vqvae_config(n);
            assert_eq!(
                (
                    c.codebook_size,
                    c.decay,
                    c.dropout,
                    c.max_epochs,
                    c.learning_rate
                ),
                (k, decay, dropout, epochs, lr),
                "{n} files"
            );
            assert_eq!(
                (
                    c.commitment_weight,
                    c.threshold_ema_dead_code,
                    c.kmeans_iters
                ),
                (0.25, 2.0, 10)
            );
            c.validate().expect("tier is valid");
        }
        assert_eq!(get_adaptive_vqvae_config(20).batch_size, 25);
        assert_eq!(get_adaptive_vqvae_config(20).val_fraction, 0.3);
    }

    #[test]
    fn validation_names_the_problem() {
        let c = VqvaeConfig {
            num_quantizers: 5,
            ..VqvaeConfig::default()
        };
        assert!(c.validate().expect_err("5 levels").contains("1–4"));
        let c = VqvaeConfig {
            num_quantizers: 0,
            ..VqvaeConfig::default()
        };
        assert!(c.validate().expect_err("0 levels").contains("1–4"));
        // One level is a plain VQ: allowed, since the small tier's second level adds little.
        let c = VqvaeConfig {
            num_quantizers: 1,
            ..VqvaeConfig::default()
        };
        c.validate().expect("1 level");
        let c = VqvaeConfig {
            log_power_weight: -0.1,
            ..VqvaeConfig::default()
        };
        assert!(
            c.validate()
                .expect_err("negative")
                .contains("log_power_weight")
        );
        for share in [-0.1, 1.5, f64::NAN] {
            let c = VqvaeConfig {
                quantizer_dropout: share,
                ..VqvaeConfig::default()
            };
            let e = c.validate().expect_err("outside [0, 1]");
            assert!(e.contains("quantizer_dropout"), "{share}: {e}");
        }
        let c = VqvaeConfig {
            quantizer_dropout: 0.5,
            num_quantizers: 1,
            ..VqvaeConfig::default()
        };
        let e = c.validate().expect_err("nothing to drop");
        assert!(e.contains("at least 2 levels"), "{e}");
    }

    #[test]
    fn quantiser_dropout_is_written_only_when_used() {
        // Reference files do not have the field: a config without dropout serialises as before.
        let plain = serde_json::to_value(VqvaeConfig::default()).expect("serialises");
        assert!(plain.get("quantizer_dropout").is_none());
        let read: VqvaeConfig = serde_json::from_value(plain).expect("reads");
        assert_eq!(read.quantizer_dropout, 0.0);
        let with = VqvaeConfig {
            quantizer_dropout: 0.5,
            ..VqvaeConfig::default()
        };
        let text = serde_json::to_string(&with).expect("serialises");
        let back: VqvaeConfig = serde_json::from_str(&text).expect("reads");
        assert_eq!(back.quantizer_dropout, 0.5);
    }

    #[test]
    fn a_short_collection_of_many_files_gets_the_small_codec() {
        // Fifty footsteps in 56 chunks: drums20's codec, with fifty files' validation share.
        let (short, hits) = (native_vqvae_config(50, 56), native_vqvae_config(20, 32));
        assert_eq!(
            short.val_fraction,
            get_adaptive_vqvae_config(50).val_fraction
        );
        assert_eq!(
            VqvaeConfig {
                val_fraction: hits.val_fraction,
                ..short
            },
            hits
        );
        let long = native_vqvae_config(50, 150);
        assert_eq!((long.freq_downsample, long.num_quantizers), (16, 3));
    }

    #[test]
    fn native_tiers_differ_from_the_reference_where_measured() {
        use audio::chunk::Normalisation;
        // Four chunks a file: a collection long enough for its file count's tier.
        for n in [5, 20, 21, 49, 50, 100, 101, 500] {
            let (native, reference) = (native_vqvae_config(n, 4 * n), get_adaptive_vqvae_config(n));
            native.validate().expect("native tier is valid");
            assert_eq!(reference.log_power_weight, 0.0, "{n} files");
            assert_eq!(reference.arch(), Architecture::REFERENCE, "{n} files");
            assert_eq!(native.normalization, Normalisation::PerFile, "{n} files");
            let medium = (21..=100).contains(&n);
            assert_eq!(
                native.log_power_weight,
                if medium { 0.3 } else { 0.1 },
                "{n} files"
            );
            assert_eq!(native.codebook_size, reference.codebook_size, "{n} files");
            let small = n <= 20;
            assert_eq!(native.upsample == Upsample::Resize, small, "{n} files");
            assert_eq!(native.batch_size, if small { 4 } else { 8 }, "{n} files");
            let large = n > 100;
            assert_eq!(
                native.max_steps,
                large.then_some(NATIVE_LARGE_STEPS),
                "{n} files"
            );
            assert_eq!(reference.max_steps, None, "{n} files");
            assert_eq!(reference.code_restart, CodeRestart::Random, "{n} files");
            assert_eq!(native.code_restart, CodeRestart::Farthest, "{n} files");
            assert_eq!(
                native.encoder_input,
                EncoderInput::LogMelAndPower,
                "{n} files"
            );
            if n < NATIVE_SMALL_VAL_BELOW {
                assert_eq!(native.val_fraction, NATIVE_SMALL_VAL_FRACTION, "{n} files");
                assert!(reference.val_fraction >= 0.3, "{n} files");
            } else {
                assert_eq!(native.val_fraction, reference.val_fraction, "{n} files");
            }
            assert_eq!(
                (native.decay, native.threshold_ema_dead_code) == (0.99, 0.1),
                small,
                "{n} files"
            );
            // Native models drop at most a tenth of their channels (the reference 0.4/0.2/0.1).
            assert_eq!(native.dropout, 0.1, "{n} files");
            assert!(reference.dropout >= native.dropout, "{n} files");
            // Small collections: 16 rows of 1 level; larger ones keep the reference's grid.
            let grid = if small { (16, 8, 1) } else { (16, 16, 3) };
            assert_eq!(
                (
                    native.time_downsample,
                    native.freq_downsample,
                    native.num_quantizers
                ),
                grid,
                "{n} files"
            );
        }
    }

    #[test]
    fn the_grid_per_second_follows_the_layout() {
        let spec = audio::SpectrogramConfig::default();
        assert_eq!(
            VqvaeConfig::default().grid_per_second(&spec),
            (8, 6),
            "the reference's"
        );
        let finer = VqvaeConfig {
            freq_downsample: 4,
            time_downsample: 8,
            ..VqvaeConfig::default()
        };
        // 128 mels in rows of 4; 94 frames (1 s at hop 512) in columns of 8, the last partial.
        assert_eq!(finer.grid_per_second(&spec), (32, 12));
    }

    #[test]
    fn files_without_a_layout_read_as_the_reference_layout() {
        // Reference files (and Distill files written before the frequency layout existed)
        // record neither downsampling.
        let mut value = serde_json::to_value(VqvaeConfig::default()).expect("serialises");
        let table = value.as_object_mut().expect("an object");
        table.remove("time_downsample");
        table.remove("freq_downsample");
        table.remove("encoder_input");
        let read: VqvaeConfig = serde_json::from_value(value).expect("reads");
        assert_eq!(read.arch(), Architecture::REFERENCE);
        let finer = VqvaeConfig {
            freq_downsample: 8,
            encoder_input: EncoderInput::LogMelAndPower,
            ..VqvaeConfig::default()
        };
        let text = serde_json::to_string(&finer).expect("serialises");
        assert!(
            text.contains(r#""encoder_input":"log_mel_and_power""#),
            "{text}"
        );
        let back: VqvaeConfig = serde_json::from_str(&text).expect("reads");
        assert_eq!(back.arch().freq_downsample, 8, "a finer layout is kept");
        assert_eq!(back.arch().input, EncoderInput::LogMelAndPower);
    }
}
