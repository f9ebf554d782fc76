//! Building the Burn models a model file describes.

use burn::prelude::Device;
use prior_model::CodePrior;
use vqvae::ConvVqvae;

use crate::modelfile::ModelFile;

/// The VQ-VAE of a model file, in inference mode on `device`.
pub fn vqvae(model: &ModelFile, device: &Device) -> anyhow::Result<ConvVqvae> {
    let dropout = model.vqvae_config.dropout.clamp(0.0, 0.99);
    ConvVqvae::from_state_dict_with(&model.vqvae, model.vqvae_config.arch(), dropout, device)
        .map_err(|e| anyhow::anyhow!("building the VQ-VAE: {e}"))
}

/// The prior of a model file, or a clear error when it has none.
pub fn prior(model: &ModelFile, device: &Device) -> anyhow::Result<CodePrior> {
    let (Some(sd), Some(cfg)) = (&model.prior, &model.prior_config) else {
        anyhow::bail!(
            "the model has no prior; train one with `distill train --stage prior --model …`"
        );
    };
    CodePrior::from_state_dict(sd, cfg.num_heads, cfg.dropout.clamp(0.0, 0.99), device)
        .map_err(|e| anyhow::anyhow!("building the prior: {e}"))
}
