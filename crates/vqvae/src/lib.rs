//! Convolutional VQ-VAE with residual vector quantisation over log-mel spectrograms.

mod config;
pub mod loss;
pub mod model;
pub mod rvq;
mod state_dict;

pub use config::{NATIVE_LARGE_STEPS, VqvaeConfig, get_adaptive_vqvae_config, native_vqvae_config};
pub use loss::{
    LevelHealth, codebook_health, log_power_l1, multi_scale_mel_loss, reconstruction_loss,
};
pub use model::{Architecture, ConvVqvae, EncoderInput, Upsample, VqvaeOutput, VqvaeShape};
pub use rvq::{Assignment, CodeRestart, ResidualVq, RvqOutput, RvqTraining, draw_kept_levels};

/// Errors of the VQ-VAE crate.
#[derive(Debug, thiserror::Error)]
pub enum VqvaeError {
    #[error("invalid VQ-VAE shape: {0}")]
    InvalidShape(String),
    #[error("VQ-VAE weights: {0}")]
    Weights(#[from] weights::WeightsError),
    #[error("cannot read tensor data: {0}")]
    Data(String),
}
