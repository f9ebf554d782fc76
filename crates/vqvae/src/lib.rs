//! Convolutional VQ-VAE with residual vector quantisation over log-mel spectrograms.

mod config;

pub use config::{VqvaeConfig, get_adaptive_vqvae_config};
