//! The convolutional VQ-VAE: the reference `ConvVQVAE`, and Distill's own layouts of it.
//!
//! Encoder: input right/bottom-padded to a multiple of the downsampling (with
//! [`EncoderInput::LogMelAndPower`] a log-power channel beside it), four Conv2d(k3, p1) blocks
//! 1 (or 2)→32→64→128→256 (BatchNorm, ReLU, channel dropout), each halving frequency or not
//! and time or not ([`Architecture::freq_downsample`], [`Architecture::time_downsample`]; the
//! reference halves both in all four), 1×1 projection to
//! `codebook_dim`. Residual VQ over the `H×W` grid in raster order (position `p = h·W + w`,
//! frequency-row major — the reference's order, which imported priors depend on).
//! Decoder: 1×1 projection to 256, three upsampling blocks 256→128→64→32 (BatchNorm, ReLU,
//! channel dropout) and an upsampling layer 32→1, then Softplus; output cropped to the
//! input size. The reference upsamples with ConvTranspose2d(k3, s2, p1, output_padding 1),
//! whose uneven kernel overlap paints a checkerboard; [`Upsample::Resize`] repeats each
//! cell (nearest neighbour) and then applies an ordinary 3×3 convolution instead (on larger
//! inputs computed as the equivalent transposed convolution of the unrepeated input).

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, softplus};
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::ops::PadMode;

use crate::VqvaeError;
use crate::loss::{LOG_POWER_EPS, log_power};
use crate::rvq::{ResidualVq, RvqTraining};
use rand::Rng;
use rand::rngs::StdRng;

const CHANNELS: [usize; 5] = [1, 32, 64, 128, 256];
/// The reference's downsampling of frequency and of time (four stride-2 convolutions).
pub const DOWNSAMPLE: usize = 16;

/// How the decoder upsamples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    /// ConvTranspose2d (the reference).
    Transposed,
    /// Nearest-neighbour repetition, then a 3×3 convolution (no checkerboard).
    Resize,
}

/// What the encoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderInput {
    /// The log1p mel (the reference).
    #[default]
    LogMel,
    /// The log1p mel and, as a second channel, its log power
    /// `(ln(power + ε) − ln ε) / `[`LOG_POWER_INPUT_SCALE`] with ε = [`LOG_POWER_EPS`]. The
    /// log1p mel is ≈ 0 everywhere below about −20 dB, so an encoder reading it alone cannot
    /// tell a decay 70 dB down from digital silence, and a code for one decodes the other.
    LogMelAndPower,
}

/// Divides the log-power input channel so that it spans about the log1p mel's range (0 for
/// silence, ~8 at a loud peak-normalised cell).
pub const LOG_POWER_INPUT_SCALE: f32 = 2.5;

impl EncoderInput {
    fn channels(self) -> usize {
        match self {
            Self::LogMel => 1,
            Self::LogMelAndPower => 2,
        }
    }

    /// The encoder's input `[B, channels, H, W]` for a (padded) log1p mel `[B, 1, H, W]`.
    fn build(self, mel: Tensor<4>) -> Tensor<4> {
        match self {
            Self::LogMel => mel,
            Self::LogMelAndPower => {
                let power = log_power(mel.clone())
                    .sub_scalar(LOG_POWER_EPS.ln())
                    .div_scalar(LOG_POWER_INPUT_SCALE);
                Tensor::cat(vec![mel, power], 1)
            }
        }
    }
}

/// The layout of a VQ-VAE beyond its sizes: how coarse its code grid is, what its encoder
/// reads and how its decoder upsamples. Stored in the model file's VQ-VAE config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Architecture {
    /// Mel frames per code column: 16 (reference), 8, 4 or 2.
    pub time_downsample: usize,
    /// Mel bands per code row: 16 (reference), 8 or 4.
    pub freq_downsample: usize,
    pub upsample: Upsample,
    pub input: EncoderInput,
}

impl Architecture {
    /// The reference system's layout (its model files have no other).
    pub const REFERENCE: Self = Self {
        time_downsample: DOWNSAMPLE,
        freq_downsample: DOWNSAMPLE,
        upsample: Upsample::Transposed,
        input: EncoderInput::LogMel,
    };

    pub fn validate(&self) -> Result<(), VqvaeError> {
        if ![2, 4, 8, 16].contains(&self.time_downsample) {
            return Err(VqvaeError::InvalidShape(format!(
                "time_downsample must be 2, 4, 8 or 16, got {}",
                self.time_downsample
            )));
        }
        if ![4, 8, 16].contains(&self.freq_downsample) {
            return Err(VqvaeError::InvalidShape(format!(
                "freq_downsample must be 4, 8 or 16, got {}",
                self.freq_downsample
            )));
        }
        Ok(())
    }

    /// Strides `[frequency, time]` of encoder block `i` (0 = first): the first
    /// log2(downsample) blocks halve each axis.
    fn strides(&self, block: usize) -> [usize; 2] {
        let halve = |downsample: usize| if (1usize << block) < downsample { 2 } else { 1 };
        [halve(self.freq_downsample), halve(self.time_downsample)]
    }

    /// Code grid `(rows, steps)` for a mel of `n_mels × frames`.
    pub fn grid_for(&self, n_mels: usize, frames: usize) -> (usize, usize) {
        (
            n_mels.div_ceil(self.freq_downsample),
            frames.div_ceil(self.time_downsample),
        )
    }
}

/// Channel-wise dropout (`Dropout2d`): whole feature maps are dropped during training.
#[derive(Module, Debug)]
pub struct ChannelDropout {
    inner: Dropout,
}

impl ChannelDropout {
    fn new(prob: f64) -> Self {
        Self {
            inner: DropoutConfig::new(prob).init(),
        }
    }

    /// Drops whole channels with masks drawn from `rng` (kept ones scaled by 1/(1 − p));
    /// identity without an `rng`. Masks come from the caller's stream rather than the
    /// backend's, so batches trained in concurrent parts stay deterministic.
    fn forward(&self, x: Tensor<4>, rng: Option<&mut StdRng>) -> Tensor<4> {
        let p = self.inner.prob;
        let Some(rng) = rng.filter(|_| p > 0.0) else {
            return x;
        };
        let [b, c, _, _] = x.dims();
        let keep = (1.0 / (1.0 - p)) as f32;
        let mask: Vec<f32> = (0..b * c)
            .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
            .collect();
        let mask = Tensor::<4>::from_data(TensorData::new(mask, [b, c, 1, 1]), &x.device());
        x * mask
    }
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub dropout: ChannelDropout,
}

/// An upsampling layer: a transposed convolution, or repetition and a convolution.
#[derive(Module, Debug)]
pub enum UpConv {
    Transposed(ConvTranspose2d),
    Resize(ResizeConv),
}

/// Nearest-neighbour upsampling by `scale`, then a 3×3 convolution.
#[derive(Module, Debug)]
pub struct ResizeConv {
    pub conv: Conv2d,
    #[module(skip)]
    scale: [usize; 2],
}

impl UpConv {
    fn new(
        cin: usize,
        cout: usize,
        stride: [usize; 2],
        upsample: Upsample,
        device: &Device,
    ) -> Self {
        match upsample {
            Upsample::Transposed => Self::Transposed(
                ConvTranspose2dConfig::new([cin, cout], [3, 3])
                    .with_stride(stride)
                    .with_padding([1, 1])
                    .with_padding_out([stride[0] - 1, stride[1] - 1])
                    .init(device),
            ),
            Upsample::Resize => Self::Resize(ResizeConv {
                conv: Conv2dConfig::new([cin, cout], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
                scale: stride,
            }),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Transposed(d) => d.forward(x),
            Self::Resize(r) => r.forward(x),
        }
    }

    /// Weight and bias (the name table's view).
    pub(crate) fn params(&self) -> (&Param<Tensor<4>>, &Option<Param<Tensor<1>>>) {
        match self {
            Self::Transposed(d) => (&d.weight, &d.bias),
            Self::Resize(r) => (&r.conv.weight, &r.conv.bias),
        }
    }

    pub(crate) fn params_mut(&mut self) -> (&mut Param<Tensor<4>>, &mut Option<Param<Tensor<1>>>) {
        match self {
            Self::Transposed(d) => (&mut d.weight, &mut d.bias),
            Self::Resize(r) => (&mut r.conv.weight, &mut r.conv.bias),
        }
    }
}

impl ResizeConv {
    /// Repetition then a 3×3 convolution: repeated for the smallest inputs, as a transposed
    /// convolution for larger ones ([`TRANSPOSED_FROM_CELLS`]).
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        if h * w < TRANSPOSED_FROM_CELLS {
            self.repeated(x)
        } else {
            self.transposed(x)
        }
    }

    /// Each cell repeated (nearest neighbour), then the convolution.
    fn repeated(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let [sh, sw] = self.scale;
        let up = x
            .reshape([b, c, h, 1, w, 1])
            .expand([b, c, h, sh, w, sw])
            .reshape([b, c, h * sh, w * sw]);
        self.conv.forward(up)
    }

    /// The same function as one transposed convolution of the unrepeated input, whose
    /// kernel sums the 3×3 kernel's taps ([`unrepeated_taps`]): 4 multiply-adds per output
    /// and input channel instead of 9 when both axes double, and Burn's transposed
    /// convolution needs no copy of the repeated input. Gradients reach the 3×3 weights
    /// through the sums.
    fn transposed(&self, x: Tensor<4>) -> Tensor<4> {
        // A transposed convolution's weight is [in, out, kh, kw].
        let weight = self.conv.weight.val().swap_dims(0, 1);
        let weight = unrepeated_taps(unrepeated_taps(weight, 2, self.scale[0]), 3, self.scale[1]);
        let bias = self.conv.bias.as_ref().map(|b| b.val());
        let options = ConvTransposeOptions::new(self.scale, [1, 1], [0, 0], [1, 1], 1);
        conv_transpose2d(x, weight, bias, options)
    }
}

/// Inputs of at least this many cells go through [`ResizeConv::transposed`]. Measured on
/// flex, 2 cores, training batches of 4 and decoding 1 or 10 chunks: the transposed form
/// took 0.9–2.4× the time of repetition at 8 × 6 (the first decoder layer), 0.28–1.06× at
/// 16 × 12, 0.15–0.38× at 32 × 24 and 0.015–0.12× at 64 × 48.
const TRANSPOSED_FROM_CELLS: usize = 128;

/// Axis `dim` of a 3-tap kernel `[k0, k1, k2]` (padding 1) applied after repeating each
/// input cell `scale` times, as the taps of a transposed convolution (padding 1, stride
/// `scale`) of the unrepeated input. Stride 2: output `2m` sees input `m − 1` through `k0`
/// and `m` through `k1 + k2`; output `2m + 1` sees `m` through `k0 + k1` and `m + 1` through
/// `k2`; a transposed convolution reaches input `j` from output `y` through tap
/// `y − 2j + 1`, hence `[k2, k1 + k2, k0 + k1, k0]`. Stride 1: the kernel flipped.
fn unrepeated_taps(w: Tensor<4>, dim: usize, scale: usize) -> Tensor<4> {
    let tap = |k: usize| w.clone().narrow(dim, k, 1);
    let taps = if scale == 2 {
        vec![tap(2), tap(1) + tap(2), tap(0) + tap(1), tap(0)]
    } else {
        vec![tap(2), tap(1), tap(0)]
    };
    Tensor::cat(taps, dim)
}

#[derive(Module, Debug)]
pub struct DeconvBlock {
    pub deconv: UpConv,
    pub bn: BatchNorm,
    pub dropout: ChannelDropout,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub blocks: Vec<ConvBlock>,
    pub proj: Conv2d,
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub proj: Conv2d,
    pub blocks: Vec<DeconvBlock>,
    pub out: UpConv,
}

/// Shape parameters of a VQ-VAE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VqvaeShape {
    pub codebook_dim: usize,
    pub codebook_size: usize,
    pub num_quantizers: usize,
    pub dropout: f64,
}

impl From<&crate::VqvaeConfig> for VqvaeShape {
    fn from(c: &crate::VqvaeConfig) -> Self {
        Self {
            codebook_dim: c.codebook_dim,
            codebook_size: c.codebook_size,
            num_quantizers: c.num_quantizers,
            dropout: c.dropout,
        }
    }
}

/// Output of [`ConvVqvae::forward`].
#[derive(Debug, Clone)]
pub struct VqvaeOutput {
    /// Reconstructed log-mel `[B, 1, n_mels, T]`.
    pub recon: Tensor<4>,
    /// Codes `[B, H·W, Q]`.
    pub indices: Tensor<3, Int>,
    /// Weighted commitment loss (zero outside training).
    pub commit_loss: Tensor<1>,
    /// Code grid `(H, W)`.
    pub grid: (usize, usize),
}

#[derive(Module, Debug)]
pub struct ConvVqvae {
    pub encoder: Encoder,
    pub quantizer: ResidualVq,
    pub decoder: Decoder,
    #[module(skip)]
    shape: VqvaeShape,
    #[module(skip)]
    arch: Architecture,
}

fn batch_norm(n: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(n).init(device)
}

impl ConvVqvae {
    /// A randomly initialised VQ-VAE of the reference layout.
    pub fn new(shape: VqvaeShape, device: &Device) -> Result<Self, VqvaeError> {
        Self::with_arch(shape, Architecture::REFERENCE, device)
    }

    /// A randomly initialised VQ-VAE of any layout.
    pub fn with_arch(
        shape: VqvaeShape,
        arch: Architecture,
        device: &Device,
    ) -> Result<Self, VqvaeError> {
        arch.validate()?;
        if shape.codebook_dim == 0 || shape.codebook_size < 2 || shape.num_quantizers == 0 {
            return Err(VqvaeError::InvalidShape(format!("{shape:?}")));
        }
        if !(0.0..1.0).contains(&shape.dropout) {
            return Err(VqvaeError::InvalidShape(format!(
                "dropout must be in [0, 1), got {}",
                shape.dropout
            )));
        }
        let in_channels = |block: usize| match block {
            0 => arch.input.channels(),
            _ => CHANNELS[block],
        };
        let blocks = (0..4)
            .map(|i| ConvBlock {
                conv: Conv2dConfig::new([in_channels(i), CHANNELS[i + 1]], [3, 3])
                    .with_stride(arch.strides(i))
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
                bn: batch_norm(CHANNELS[i + 1], device),
                dropout: ChannelDropout::new(shape.dropout),
            })
            .collect();
        let encoder = Encoder {
            blocks,
            proj: Conv2dConfig::new([256, shape.codebook_dim], [1, 1]).init(device),
        };
        // Decoder block i mirrors encoder block 3 − i; the output layer mirrors block 0.
        let up = |cin: usize, cout: usize, block: usize| {
            UpConv::new(cin, cout, arch.strides(block), arch.upsample, device)
        };
        let decoder = Decoder {
            proj: Conv2dConfig::new([shape.codebook_dim, 256], [1, 1]).init(device),
            blocks: (0..3)
                .map(|i| DeconvBlock {
                    deconv: up(CHANNELS[4 - i], CHANNELS[3 - i], 3 - i),
                    bn: batch_norm(CHANNELS[3 - i], device),
                    dropout: ChannelDropout::new(shape.dropout),
                })
                .collect(),
            out: up(32, 1, 0),
        };
        Ok(Self {
            encoder,
            quantizer: ResidualVq::new(
                shape.num_quantizers,
                shape.codebook_size,
                shape.codebook_dim,
                device,
            ),
            decoder,
            shape,
            arch,
        })
    }

    pub fn shape(&self) -> VqvaeShape {
        self.shape
    }

    pub fn arch(&self) -> Architecture {
        self.arch
    }

    /// Sets how far each training step moves every batch norm's running statistics
    /// (a training schedule's choice; the model file does not record it).
    pub fn set_batch_norm_momentum(&mut self, momentum: f64) {
        let encoder = self.encoder.blocks.iter_mut().map(|b| &mut b.bn);
        for bn in encoder.chain(self.decoder.blocks.iter_mut().map(|b| &mut b.bn)) {
            bn.momentum = momentum;
        }
    }

    /// Code grid `(H, W)` for a mel of `n_mels × frames`.
    pub fn grid_for(&self, n_mels: usize, frames: usize) -> (usize, usize) {
        self.arch.grid_for(n_mels, frames)
    }

    /// Encoder output `[B, D, H, W]` for a log-mel `[B, 1, n_mels, T]`.
    pub fn encode(&self, mel: Tensor<4>) -> Tensor<4> {
        self.encode_with(mel, None)
    }

    /// [`encode`](Self::encode) in training: channel dropout with masks from `rng`.
    pub fn encode_train(&self, mel: Tensor<4>, rng: &mut StdRng) -> Tensor<4> {
        self.encode_with(mel, Some(rng))
    }

    fn encode_with(&self, mel: Tensor<4>, mut dropout: Option<&mut StdRng>) -> Tensor<4> {
        let [_, _, h, w] = mel.dims();
        let (f, t) = (self.arch.freq_downsample, self.arch.time_downsample);
        let ph = h.div_ceil(f) * f - h;
        let pw = w.div_ceil(t) * t - w;
        // Padded before the log-power channel is added, so padding reads as silence in both.
        let padded = if ph > 0 || pw > 0 {
            mel.pad([(0, ph), (0, pw)], PadMode::Constant(0.0))
        } else {
            mel
        };
        let mut x = self.arch.input.build(padded);
        for b in &self.encoder.blocks {
            x = b.dropout.forward(
                relu(b.bn.forward(b.conv.forward(x))),
                dropout.as_deref_mut(),
            );
        }
        self.encoder.proj.forward(x)
    }

    /// Decodes embeddings `[B, D, H, W]` to a log-mel cropped to `(n_mels, frames)`.
    pub fn decode(&self, z: Tensor<4>, target: (usize, usize)) -> Tensor<4> {
        self.decode_with(z, target, None)
    }

    /// [`decode`](Self::decode) in training: channel dropout with masks from `rng`.
    pub fn decode_train(
        &self,
        z: Tensor<4>,
        target: (usize, usize),
        rng: &mut StdRng,
    ) -> Tensor<4> {
        self.decode_with(z, target, Some(rng))
    }

    fn decode_with(
        &self,
        z: Tensor<4>,
        target: (usize, usize),
        mut dropout: Option<&mut StdRng>,
    ) -> Tensor<4> {
        let mut x = self.decoder.proj.forward(z);
        for b in &self.decoder.blocks {
            x = b.dropout.forward(
                relu(b.bn.forward(b.deconv.forward(x))),
                dropout.as_deref_mut(),
            );
        }
        let x = softplus(self.decoder.out.forward(x), 1.0);
        let [bsz, c, _, _] = x.dims();
        x.slice([0..bsz, 0..c, 0..target.0, 0..target.1])
    }

    /// Full pass: encode, quantise, decode.
    pub fn forward(&self, mel: Tensor<4>) -> VqvaeOutput {
        self.forward_levels(mel, self.shape.num_quantizers)
    }

    /// [`forward`](Self::forward) decoding only the first `levels` residual levels (at
    /// least one; all when `levels` is larger): how much the coarse codes carry alone.
    /// The output's codes have that many levels.
    pub fn forward_levels(&self, mel: Tensor<4>, levels: usize) -> VqvaeOutput {
        let [_, _, n_mels, frames] = mel.dims();
        let z = self.encode(mel);
        let [b, d, h, w] = z.dims();
        let flat = z.permute([0, 2, 3, 1]).reshape([b * h * w, d]);
        let q = self.quantizer.forward_levels(flat, levels);
        let used = q.indices.dims()[1];
        let quantized = q.quantized.reshape([b, h, w, d]).permute([0, 3, 1, 2]);
        let recon = self.decode(quantized, (n_mels, frames));
        VqvaeOutput {
            recon,
            indices: q.indices.reshape([b, h * w, used]),
            commit_loss: q.commit_loss,
            grid: (h, w),
        }
    }

    /// Training pass: the quantiser updates its codebooks (k-means init, EMA, dead-code
    /// restarts) and returns the weighted commitment loss; gradients pass straight through.
    /// Dropout masks and the quantiser's random choices come from `rng`. A caller that runs
    /// a batch in concurrent parts composes the same steps itself: [`encode_train`] and
    /// [`flatten`] per part, [`ResidualVq::assign_train`] once, then
    /// [`Assignment::output`](crate::rvq::Assignment::output) and [`decode_train`] per part.
    ///
    /// [`encode_train`]: Self::encode_train
    /// [`decode_train`]: Self::decode_train
    /// [`flatten`]: Self::flatten
    /// [`ResidualVq::assign_train`]: crate::rvq::ResidualVq::assign_train
    pub fn forward_train(
        &mut self,
        mel: Tensor<4>,
        rvq: &RvqTraining,
        rng: &mut StdRng,
    ) -> VqvaeOutput {
        let [_, _, n_mels, frames] = mel.dims();
        let z = self.encode_train(mel, rng);
        let (flat, (b, h, w)) = Self::flatten(z);
        let q = self.quantizer.forward_train(flat, rvq, rng);
        let recon = self.decode_train(
            Self::unflatten(q.quantized, (b, h, w)),
            (n_mels, frames),
            rng,
        );
        VqvaeOutput {
            recon,
            indices: q.indices.reshape([b, h * w, self.shape.num_quantizers]),
            commit_loss: q.commit_loss,
            grid: (h, w),
        }
    }

    /// Encoder output `[B, D, H, W]` as the quantiser's rows `[B·H·W, D]` (batch-major),
    /// with `(B, H, W)`.
    pub fn flatten(z: Tensor<4>) -> (Tensor<2>, (usize, usize, usize)) {
        let [b, d, h, w] = z.dims();
        (z.permute([0, 2, 3, 1]).reshape([b * h * w, d]), (b, h, w))
    }

    /// The inverse of [`flatten`](Self::flatten): rows `[B·H·W, D]` back to `[B, D, H, W]`.
    pub fn unflatten(rows: Tensor<2>, (b, h, w): (usize, usize, usize)) -> Tensor<4> {
        let [_, d] = rows.dims();
        rows.reshape([b, h, w, d]).permute([0, 3, 1, 2])
    }

    /// Quantises encoder output `[B, D, H, W]` (eval mode): the summed codes in the same
    /// layout, the codes `[B, H·W, Q]` in raster order, and the (zero) commitment loss.
    pub fn quantize(&self, z: Tensor<4>) -> (Tensor<4>, Tensor<3, Int>, Tensor<1>) {
        let [b, d, h, w] = z.dims();
        let flat = z.permute([0, 2, 3, 1]).reshape([b * h * w, d]);
        let q = self.quantizer.forward(flat);
        (
            q.quantized.reshape([b, h, w, d]).permute([0, 3, 1, 2]),
            q.indices.reshape([b, h * w, self.shape.num_quantizers]),
            q.commit_loss,
        )
    }

    /// Codes `[B, H·W, Q]` for a log-mel, without decoding.
    pub fn codes(&self, mel: Tensor<4>) -> (Tensor<3, Int>, (usize, usize)) {
        let z = self.encode(mel);
        let [b, d, h, w] = z.dims();
        let flat = z.permute([0, 2, 3, 1]).reshape([b * h * w, d]);
        let idx = self.quantizer.encode(flat);
        (idx.reshape([b, h * w, self.shape.num_quantizers]), (h, w))
    }

    /// Sum of the codebook vectors of `indices [B, H·W, Q]`, as `[B, D, H, W]`.
    pub fn codes_to_embeddings(
        &self,
        indices: Tensor<3, Int>,
        grid: (usize, usize),
    ) -> Result<Tensor<4>, VqvaeError> {
        let [b, s, q] = indices.dims();
        if s != grid.0 * grid.1 || q != self.shape.num_quantizers {
            return Err(VqvaeError::InvalidShape(format!(
                "codes of shape [{b}, {s}, {q}] do not fit a {}x{} grid with {} levels",
                grid.0, grid.1, self.shape.num_quantizers
            )));
        }
        let d = self.shape.codebook_dim;
        let z = self.quantizer.decode(indices.reshape([b * s, q]))?;
        Ok(z.reshape([b, grid.0, grid.1, d]).permute([0, 3, 1, 2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn channel_dropout_drops_whole_channels_from_the_callers_stream() {
        let device = Device::flex();
        let drop = ChannelDropout::new(0.5);
        let x = Tensor::<4>::ones([4, 16, 3, 5], &device);
        let host = |t: Tensor<4>| {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32")
        };
        assert_eq!(
            host(drop.forward(x.clone(), None)),
            host(x.clone()),
            "identity without a stream"
        );
        let out = host(drop.forward(x.clone(), Some(&mut StdRng::seed_from_u64(1))));
        // Each channel's 15 cells share one value: dropped (0) or kept and scaled by 2.
        let channels: Vec<f32> = out.chunks(15).map(|c| c[0]).collect();
        assert!(out.chunks(15).all(|c| c.iter().all(|v| *v == c[0])));
        assert!(channels.iter().all(|v| *v == 0.0 || *v == 2.0));
        let dropped = channels.iter().filter(|v| **v == 0.0).count();
        assert!((16..=48).contains(&dropped), "{dropped} of 64 dropped");
        let again = host(drop.forward(x, Some(&mut StdRng::seed_from_u64(1))));
        assert_eq!(out, again, "the same stream gives the same masks");
    }

    #[test]
    fn batch_norm_momentum_reaches_every_batch_norm() {
        let device = Device::flex().autodiff();
        let shape = VqvaeShape {
            codebook_dim: 8,
            codebook_size: 4,
            num_quantizers: 2,
            dropout: 0.0,
        };
        let mut vq = ConvVqvae::new(shape, &device).expect("valid shape");
        let mel = Tensor::<4>::random(
            [2, 1, 128, 94],
            burn::tensor::Distribution::Uniform(0.0, 4.0),
            &device,
        );
        // Every batch norm's running mean, one list per layer.
        let running = |vq: &ConvVqvae| -> Vec<Vec<f32>> {
            let enc = vq.encoder.blocks.iter().map(|b| &b.bn);
            enc.chain(vq.decoder.blocks.iter().map(|b| &b.bn))
                .map(|bn| {
                    let data = bn.running_mean.value_sync().into_data().convert::<f32>();
                    data.try_to_vec::<f32>().expect("f32")
                })
                .collect()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let mut train_pass = |vq: &ConvVqvae| {
            let z = vq.encode_train(mel.clone(), &mut rng);
            let _ = vq.decode_train(z, (128, 94), &mut rng);
        };
        let initial = running(&vq);
        assert_eq!(initial.len(), 7);
        vq.set_batch_norm_momentum(0.0);
        train_pass(&vq);
        assert_eq!(running(&vq), initial, "momentum 0 keeps the statistics");
        vq.set_batch_norm_momentum(1.0);
        train_pass(&vq);
        for (layer, (now, before)) in running(&vq).iter().zip(&initial).enumerate() {
            assert_ne!(now, before, "layer {layer} kept its initial statistics");
        }
    }

    #[test]
    fn resize_conv_as_a_transposed_convolution_equals_repetition_then_convolution() {
        let device = Device::flex().autodiff();
        // A small input, and one as large as a decoder's (several tiles of the convolution).
        for (input, scale) in [
            ([2, 3, 4, 5], [2, 2]),
            ([2, 3, 4, 5], [1, 2]),
            ([2, 3, 4, 5], [2, 1]),
            ([2, 3, 4, 5], [1, 1]),
            ([2, 16, 32, 24], [2, 2]),
        ] {
            let r = ResizeConv {
                conv: Conv2dConfig::new([input[1], 5], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(&device),
                scale,
            };
            let x =
                Tensor::<4>::random(input, burn::tensor::Distribution::Normal(0.0, 1.0), &device)
                    .require_grad();
            let direct = r.repeated(x.clone());
            let transposed = r.transposed(x.clone());
            let [b, _, h, w] = input;
            assert_eq!(
                transposed.dims(),
                [b, 5, h * scale[0], w * scale[1]],
                "{scale:?}"
            );
            let close = |a: Tensor<4>, b: Tensor<4>, what: &str| {
                let scale_of = b.clone().abs().max().into_scalar::<f32>().max(1.0);
                let diff = (a - b).abs().max().into_scalar::<f32>() / scale_of;
                assert!(diff < 1e-5, "{input:?} {scale:?} {what}: {diff}");
            };
            close(transposed.clone(), direct.clone(), "output");
            // Gradients reach the 3×3 weights through the summed taps, and the input.
            let upstream = Tensor::<4>::random(
                transposed.dims(),
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let grad = |out: Tensor<4>| {
                let grads = (out * upstream.clone()).sum().backward();
                let weight = r.conv.weight.val().grad(&grads).expect("weight gradient");
                let bias = r.conv.bias.as_ref().expect("bias");
                let bias = bias.val().grad(&grads).expect("bias gradient");
                let input = x.grad(&grads).expect("input gradient");
                (weight, bias.reshape([1, 1, 1, 5]), input)
            };
            let (tw, tb, tx) = grad(transposed);
            let (dw, db, dx) = grad(direct);
            close(tw, dw, "weight gradient");
            close(tb, db, "bias gradient");
            close(tx, dx, "input gradient");
        }
    }

    #[test]
    fn the_log_power_channel_tells_faint_cells_from_silence() {
        let device = Device::flex();
        // Mel powers: silence, ε·(e^2.5 − 1) (reads 1 in the power channel), a cell 40 dB
        // under a full-scale bin and a loud one.
        let eps = f64::from(LOG_POWER_EPS);
        let scale = f64::from(LOG_POWER_INPUT_SCALE);
        let powers = [0.0, eps * (scale.exp() - 1.0), 1e-4, 6f64.exp_m1()];
        let mel: Vec<f32> = powers.iter().map(|p| p.ln_1p() as f32).collect();
        let input = Tensor::<4>::from_data(TensorData::new(mel.clone(), [1, 1, 2, 2]), &device);
        let built = EncoderInput::LogMelAndPower.build(input.clone());
        assert_eq!(built.dims(), [1, 2, 2, 2]);
        let v: Vec<f32> = built.into_data().try_to_vec().expect("f32");
        assert_eq!(
            &v[..4],
            mel.as_slice(),
            "the first channel is the log1p mel unchanged"
        );
        for (got, p) in v[4..].iter().zip(powers) {
            let want = ((p + eps).ln() - eps.ln()) / scale;
            assert!(
                (f64::from(*got) - want).abs() < 1e-3,
                "{p}: {got} vs {want}"
            );
        }
        assert!(v[4].abs() < 1e-6 && (v[5] - 1.0).abs() < 1e-3, "{v:?}");
        // The faint cell lies 1e-4 above silence in the mel, about 1 in the power channel.
        assert!(mel[2] < 2e-4 && v[6] > 0.9, "{v:?}");
        let same: Vec<f32> = EncoderInput::LogMel
            .build(input)
            .into_data()
            .try_to_vec()
            .expect("f32");
        assert_eq!(same, mel);
    }

    #[test]
    fn every_layout_keeps_the_mel_size_and_its_own_grid() {
        let device = Device::flex();
        let shape = VqvaeShape {
            codebook_dim: 8,
            codebook_size: 4,
            num_quantizers: 2,
            dropout: 0.0,
        };
        // One second of mel (128 × 94): rows follow the frequency downsampling, columns the
        // time downsampling (rounded up: the encoder pads).
        for (freq, time, grid) in [(16, 16, (8, 6)), (8, 16, (16, 6)), (4, 4, (32, 24))] {
            let inputs = [EncoderInput::LogMel, EncoderInput::LogMelAndPower];
            for (upsample, input) in [Upsample::Transposed, Upsample::Resize]
                .into_iter()
                .zip(inputs)
            {
                let arch = Architecture {
                    time_downsample: time,
                    freq_downsample: freq,
                    upsample,
                    input,
                };
                let vq = ConvVqvae::with_arch(shape, arch, &device).expect("valid layout");
                assert_eq!(vq.grid_for(128, 94), grid);
                let mel = Tensor::<4>::random(
                    [2, 1, 128, 94],
                    burn::tensor::Distribution::Uniform(0.0, 4.0),
                    &device,
                );
                let out = vq.forward(mel);
                assert_eq!(out.recon.dims(), [2, 1, 128, 94], "{arch:?}");
                assert_eq!(out.grid, grid, "{arch:?}");
                assert_eq!(out.indices.dims(), [2, grid.0 * grid.1, 2], "{arch:?}");
            }
        }
        let bad = Architecture {
            freq_downsample: 2,
            ..Architecture::REFERENCE
        };
        let err = ConvVqvae::with_arch(shape, bad, &device).expect_err("2 is not a layout");
        assert!(err.to_string().contains("freq_downsample"), "{err}");
    }
}
