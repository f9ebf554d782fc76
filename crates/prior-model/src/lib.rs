//! `CodePrior`: an autoregressive transformer over flattened residual-VQ codes.
//!
//! Architecture (the reference system's, so its weights load unchanged): summed token,
//! learned absolute position and level embeddings (level = t mod Q), dropout, pre-norm
//! transformer layers with a ReLU feed-forward of width 4h, a causal mask built once at
//! construction, a final LayerNorm and a bias-free linear head.
//!
//! * [`model`]: the Burn module and its one transformer layer, which serves the inference
//!   forward pass, the training forward pass (with dropout masks) and cached decoding.
//! * [`host`]: the same single-token step as plain loops over a host copy of the weights,
//!   a fast path for CPU generation.
//! * [`token_order`]: how a code grid becomes a token stream and back.
//! * [`sample`]: next-token selection.

mod cache;
mod dropout;
mod host;
pub mod model;
pub mod sample;
mod state_dict;
pub mod token_order;

pub use cache::PriorCache;
pub use host::{HostDecoder, HostState, HostWeights};
pub use model::CodePrior;
pub use state_dict::infer_shape;
pub use token_order::{GridShape, TokenOrder, flatten_codes, unflatten_codes};

use weights::WeightsError;

/// Errors from building, running or loading a [`CodePrior`].
#[derive(Debug, thiserror::Error)]
pub enum PriorError {
    #[error("sequence of {len} tokens is longer than the prior's context of {seq_len}")]
    TooLong { len: usize, seq_len: usize },
    #[error("empty token sequence")]
    Empty,
    #[error("token sequence length {len} is not a multiple of the level count {levels}")]
    NotMultiple { len: usize, levels: usize },
    #[error("invalid prior shape: {0}")]
    InvalidShape(String),
    #[error("prior weights: {0}")]
    Weights(#[from] WeightsError),
    #[error("cannot read tensor data: {0}")]
    Data(String),
}

/// Everything that determines the prior's tensor shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorShape {
    pub codebook_size: usize,
    pub seq_len: usize,
    pub num_quantizers: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub dropout: f64,
    /// Frequency rows of the time-major code grid whose tokens the prior reads, for an
    /// embedding of each token's row (`(position / num_quantizers) % rows`); 0: none, as in the
    /// reference's priors (raster order) and Distill's earlier ones.
    pub rows: usize,
}

impl PriorShape {
    pub fn validate(&self) -> Result<(), PriorError> {
        let bad = |m: String| Err(PriorError::InvalidShape(m));
        for (name, v) in [
            ("codebook_size", self.codebook_size),
            ("seq_len", self.seq_len),
            ("num_quantizers", self.num_quantizers),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad(format!(
                "num_heads ({}) must divide hidden_size ({})",
                self.num_heads, self.hidden_size
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }
}
