//! The VQ-VAE's weights under the reference system's names and layouts: one name table
//! serves both loading and saving.

use burn::module::{Param, RunningState};
use burn::nn::BatchNorm;
use burn::prelude::*;
use weights::{HostTensor, StateDict};

use crate::VqvaeError;
use crate::model::{Architecture, ConvVqvae, VqvaeShape};

impl ConvVqvae {
    /// Loads the reference system's `model_state_dict` (or ours of the reference layout,
    /// which uses its names). Sizes come from the tensors.
    pub fn from_state_dict(
        dict: &StateDict,
        dropout: f64,
        device: &Device,
    ) -> Result<Self, VqvaeError> {
        Self::from_state_dict_with(dict, Architecture::REFERENCE, dropout, device)
    }

    /// Loads weights of any layout (the same names; the layout comes from the model file).
    pub fn from_state_dict_with(
        dict: &StateDict,
        arch: Architecture,
        dropout: f64,
        device: &Device,
    ) -> Result<Self, VqvaeError> {
        let [codebook_dim, _, _, _] = dims::<4>(dict, "encoder.proj.weight")?;
        let num_quantizers = (0..)
            .take_while(|i| dict.contains_key(&format!("{RVQ_PREFIX}.{i}._codebook.embed")))
            .count();
        let [_, codebook_size, _] = dims::<3>(dict, &format!("{RVQ_PREFIX}.0._codebook.embed"))?;
        let shape = VqvaeShape {
            codebook_dim,
            codebook_size,
            num_quantizers,
            dropout,
        };
        let mut m = Self::with_arch(shape, arch, device)?;
        for (prefix, part) in NAME_TABLE.iter().flat_map(|e| e.entries()) {
            match part {
                Part::Conv(layer) => {
                    let (weight, bias) = m.conv_mut(layer);
                    set_conv(weight, bias, dict, &prefix, device)?;
                }
                Part::Norm(layer) => set_bn(m.bn_mut(layer), dict, &prefix, device)?,
            }
        }
        m.quantizer.load_state(dict, RVQ_PREFIX, device)?;
        Ok(m)
    }

    /// Weights and buffers under the reference system's names and layouts.
    pub fn to_state_dict(&self) -> Result<StateDict, VqvaeError> {
        let mut d = StateDict::new();
        for (prefix, part) in NAME_TABLE.iter().flat_map(|e| e.entries()) {
            match part {
                Part::Conv(layer) => {
                    let (weight, bias) = self.conv(layer);
                    put_conv(&mut d, &prefix, weight, bias)?;
                }
                Part::Norm(layer) => put_bn(&mut d, &prefix, self.bn(layer))?,
            }
        }
        self.quantizer.save_state(&mut d, RVQ_PREFIX)?;
        Ok(d)
    }

    /// Weight and bias of a convolution of the table.
    fn conv(&self, layer: Layer) -> (&Param<Tensor<4>>, &Option<Param<Tensor<1>>>) {
        match layer {
            Layer::EncoderBlock(i) => {
                let c = &self.encoder.blocks[i].conv;
                (&c.weight, &c.bias)
            }
            Layer::EncoderProj => (&self.encoder.proj.weight, &self.encoder.proj.bias),
            Layer::DecoderProj => (&self.decoder.proj.weight, &self.decoder.proj.bias),
            Layer::DecoderBlock(i) => self.decoder.blocks[i].deconv.params(),
            Layer::DecoderOut => self.decoder.out.params(),
        }
    }

    fn conv_mut(&mut self, layer: Layer) -> (&mut Param<Tensor<4>>, &mut Option<Param<Tensor<1>>>) {
        match layer {
            Layer::EncoderBlock(i) => {
                let c = &mut self.encoder.blocks[i].conv;
                (&mut c.weight, &mut c.bias)
            }
            Layer::EncoderProj => (&mut self.encoder.proj.weight, &mut self.encoder.proj.bias),
            Layer::DecoderProj => (&mut self.decoder.proj.weight, &mut self.decoder.proj.bias),
            Layer::DecoderBlock(i) => self.decoder.blocks[i].deconv.params_mut(),
            Layer::DecoderOut => self.decoder.out.params_mut(),
        }
    }

    /// The BatchNorm of a block of the table.
    fn bn(&self, layer: Layer) -> &BatchNorm {
        match layer {
            Layer::DecoderBlock(i) => &self.decoder.blocks[i].bn,
            _ => &self.encoder.blocks[layer.block()].bn,
        }
    }

    fn bn_mut(&mut self, layer: Layer) -> &mut BatchNorm {
        match layer {
            Layer::DecoderBlock(i) => &mut self.decoder.blocks[i].bn,
            _ => &mut self.encoder.blocks[layer.block()].bn,
        }
    }
}

/// Where the residual quantiser's codebooks live in the reference's state dict.
const RVQ_PREFIX: &str = "quantizer.rvq.layers";

/// A layer of the VQ-VAE that carries weights.
#[derive(Debug, Clone, Copy)]
enum Layer {
    EncoderBlock(usize),
    EncoderProj,
    DecoderProj,
    DecoderBlock(usize),
    DecoderOut,
}

impl Layer {
    fn block(self) -> usize {
        match self {
            Self::EncoderBlock(i) | Self::DecoderBlock(i) => i,
            _ => 0,
        }
    }
}

/// What a name of the table holds.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// `{prefix}.weight` and `{prefix}.bias` of a (transposed) convolution.
    Conv(Layer),
    /// `{prefix}.weight/bias/running_mean/running_var` of a BatchNorm.
    Norm(Layer),
}

/// One row of the name table: the reference's `nn.Sequential` indices of a layer (and of
/// its BatchNorm, which follows the convolution in the same Sequential).
struct TableEntry {
    layer: Layer,
    prefix: &'static str,
    /// Position in the reference's Sequential; `None` for a layer named by `prefix` alone.
    index: Option<usize>,
    norm: bool,
}

impl TableEntry {
    fn entries(&self) -> Vec<(String, Part)> {
        let Some(i) = self.index else {
            return vec![(self.prefix.to_string(), Part::Conv(self.layer))];
        };
        let mut out = vec![(format!("{}{i}", self.prefix), Part::Conv(self.layer))];
        if self.norm {
            out.push((format!("{}{}", self.prefix, i + 1), Part::Norm(self.layer)));
        }
        out
    }
}

/// The reference system's names of every weighted layer, used both to load and to save:
/// encoder blocks are `encoder.convs.{4i}` (Conv2d, then BatchNorm at `4i+1`, ReLU and
/// Dropout2d), decoder blocks `decoder.deconvs.{4i}` likewise, the output deconvolution
/// `decoder.deconvs.12`; the 1×1 projections have no index.
const NAME_TABLE: [TableEntry; 10] = [
    entry(Layer::EncoderBlock(0), "encoder.convs.", 0, true),
    entry(Layer::EncoderBlock(1), "encoder.convs.", 4, true),
    entry(Layer::EncoderBlock(2), "encoder.convs.", 8, true),
    entry(Layer::EncoderBlock(3), "encoder.convs.", 12, true),
    named(Layer::EncoderProj, "encoder.proj"),
    named(Layer::DecoderProj, "decoder.proj"),
    entry(Layer::DecoderBlock(0), "decoder.deconvs.", 0, true),
    entry(Layer::DecoderBlock(1), "decoder.deconvs.", 4, true),
    entry(Layer::DecoderBlock(2), "decoder.deconvs.", 8, true),
    entry(Layer::DecoderOut, "decoder.deconvs.", 12, false),
];

const fn entry(layer: Layer, prefix: &'static str, index: usize, norm: bool) -> TableEntry {
    TableEntry {
        layer,
        prefix,
        index: Some(index),
        norm,
    }
}

/// An entry whose name is the prefix alone.
const fn named(layer: Layer, name: &'static str) -> TableEntry {
    TableEntry {
        layer,
        prefix: name,
        index: None,
        norm: false,
    }
}

fn dims<const N: usize>(dict: &StateDict, name: &str) -> Result<[usize; N], VqvaeError> {
    let s = weights::shape_of(dict, name)?;
    s.try_into().map_err(|_| {
        VqvaeError::InvalidShape(format!("'{name}' should have {N} dimensions, found {s:?}"))
    })
}

pub(crate) fn tensor<const D: usize>(
    dict: &StateDict,
    name: &str,
    device: &Device,
) -> Result<Tensor<D>, VqvaeError> {
    let t = dict
        .get(name)
        .ok_or_else(|| weights::WeightsError::Missing(name.to_string()))?;
    if t.shape.len() != D {
        return Err(VqvaeError::InvalidShape(format!(
            "'{name}' should have {D} dimensions, found {:?}",
            t.shape
        )));
    }
    Ok(Tensor::from_data(
        TensorData::new(t.to_f32(), t.shape.clone()),
        device,
    ))
}

/// Replaces a parameter after checking the new value has its shape.
pub(crate) fn replace<const D: usize>(
    param: &mut Param<Tensor<D>>,
    value: Tensor<D>,
    name: &str,
) -> Result<(), VqvaeError> {
    let want = param.shape();
    if value.shape() != want {
        return Err(VqvaeError::InvalidShape(format!(
            "'{name}' has shape {:?}, the model needs {:?}",
            value.shape().as_slice(),
            want.as_slice()
        )));
    }
    let require_grad = param.is_require_grad();
    *param = Param::from_tensor(value).set_require_grad(require_grad);
    Ok(())
}

fn set_conv(
    weight: &mut Param<Tensor<4>>,
    bias: &mut Option<Param<Tensor<1>>>,
    dict: &StateDict,
    prefix: &str,
    device: &Device,
) -> Result<(), VqvaeError> {
    // Conv2d and ConvTranspose2d weights share PyTorch's layouts in Burn.
    replace(
        weight,
        tensor(dict, &format!("{prefix}.weight"), device)?,
        &format!("{prefix}.weight"),
    )?;
    if let Some(b) = bias {
        replace(
            b,
            tensor(dict, &format!("{prefix}.bias"), device)?,
            &format!("{prefix}.bias"),
        )?;
    }
    Ok(())
}

fn set_bn(
    bn: &mut BatchNorm,
    dict: &StateDict,
    prefix: &str,
    device: &Device,
) -> Result<(), VqvaeError> {
    replace(
        &mut bn.gamma,
        tensor(dict, &format!("{prefix}.weight"), device)?,
        prefix,
    )?;
    replace(
        &mut bn.beta,
        tensor(dict, &format!("{prefix}.bias"), device)?,
        prefix,
    )?;
    let n = bn.gamma.shape().dims::<1>()[0];
    for (name, slot) in [
        ("running_mean", &mut bn.running_mean),
        ("running_var", &mut bn.running_var),
    ] {
        let t: Tensor<1> = tensor(dict, &format!("{prefix}.{name}"), device)?;
        if t.dims()[0] != n {
            return Err(VqvaeError::InvalidShape(format!(
                "'{prefix}.{name}' has the wrong length"
            )));
        }
        *slot = RunningState::new(t);
    }
    Ok(())
}

pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Result<HostTensor, VqvaeError> {
    let data = t.to_data();
    let shape = data.shape().as_slice().to_vec();
    let v = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| VqvaeError::Data(format!("{e:?}")))?;
    Ok(HostTensor::f32(shape, v))
}

fn put_conv(
    d: &mut StateDict,
    prefix: &str,
    weight: &Param<Tensor<4>>,
    bias: &Option<Param<Tensor<1>>>,
) -> Result<(), VqvaeError> {
    d.insert(format!("{prefix}.weight"), host(weight.val())?);
    if let Some(b) = bias {
        d.insert(format!("{prefix}.bias"), host(b.val())?);
    }
    Ok(())
}

fn put_bn(d: &mut StateDict, prefix: &str, bn: &BatchNorm) -> Result<(), VqvaeError> {
    d.insert(format!("{prefix}.weight"), host(bn.gamma.val())?);
    d.insert(format!("{prefix}.bias"), host(bn.beta.val())?);
    d.insert(
        format!("{prefix}.running_mean"),
        host(bn.running_mean.value())?,
    );
    d.insert(
        format!("{prefix}.running_var"),
        host(bn.running_var.value())?,
    );
    Ok(())
}
