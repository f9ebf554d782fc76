//! The prior's weights under the reference system's names and layouts (PyTorch `[out, in]`
//! Linear weights, packed q/k/v), so one loader serves both file formats.

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use weights::{HostTensor, StateDict};

use crate::{CodePrior, PriorError, PriorShape};

impl CodePrior {
    /// Loads a reference-system (PyTorch) `prior_state_dict`, or our own copy of it, which
    /// uses the same names and layouts. Sizes come from the tensors; only the head count and
    /// dropout, which no tensor shape reveals, are passed in.
    pub fn from_state_dict(
        dict: &StateDict,
        num_heads: usize,
        dropout: f64,
        device: &Device,
    ) -> Result<Self, PriorError> {
        let shape = infer_shape(dict, num_heads, dropout)?;
        let mut m = Self::new(shape, device)?;
        let h = shape.hidden_size;
        let f = 4 * h;
        let k = shape.codebook_size;
        m.token_emb.weight = param2(dict, "token_emb.weight", [k, h], device)?;
        m.pos_emb.weight = param2(dict, "pos_emb.weight", [shape.seq_len, h], device)?;
        m.level_emb.weight = param2(dict, "level_emb.weight", [shape.num_quantizers, h], device)?;
        if let Some(emb) = m.row_emb.as_mut() {
            emb.weight = param2(dict, ROW_EMB, [shape.rows, h], device)?;
        }
        for (i, layer) in m.transformer.layers.iter_mut().enumerate() {
            let p = format!("transformer.layers.{i}.");
            let in_w =
                weights::get_f32(dict, &format!("{p}self_attn.in_proj_weight"), &[3 * h, h])?;
            let in_b = weights::get_f32(dict, &format!("{p}self_attn.in_proj_bias"), &[3 * h])?;
            for (j, lin) in [
                &mut layer.mha.query,
                &mut layer.mha.key,
                &mut layer.mha.value,
            ]
            .into_iter()
            .enumerate()
            {
                let rows = &in_w[j * h * h..(j + 1) * h * h];
                lin.weight = linear_weight(rows, h, h, device);
                lin.bias = Some(param1(in_b[j * h..(j + 1) * h].to_vec(), device));
            }
            set_linear(
                &mut layer.mha.output,
                dict,
                &format!("{p}self_attn.out_proj"),
                h,
                h,
                device,
            )?;
            set_linear(
                &mut layer.pwff.linear_inner,
                dict,
                &format!("{p}linear1"),
                h,
                f,
                device,
            )?;
            set_linear(
                &mut layer.pwff.linear_outer,
                dict,
                &format!("{p}linear2"),
                f,
                h,
                device,
            )?;
            // PyTorch's norm1 precedes attention; Burn names that norm `norm_2` in pre-norm mode.
            set_norm(&mut layer.norm_2, dict, &format!("{p}norm1"), h, device)?;
            set_norm(&mut layer.norm_1, dict, &format!("{p}norm2"), h, device)?;
        }
        set_norm(&mut m.ln_f, dict, "ln_f", h, device)?;
        let head = weights::get_f32(dict, "head.weight", &[k, h])?;
        m.head.weight = linear_weight(&head, k, h, device);
        Ok(m)
    }

    /// The weights under the reference system's names and layouts (PyTorch `[out, in]`
    /// Linear weights, packed q/k/v), so one loader serves both file formats.
    pub fn to_state_dict(&self) -> Result<StateDict, PriorError> {
        let mut d = StateDict::new();
        let h = self.shape().hidden_size;
        d.insert(
            "token_emb.weight".into(),
            host(self.token_emb.weight.val())?,
        );
        d.insert("pos_emb.weight".into(), host(self.pos_emb.weight.val())?);
        d.insert(
            "level_emb.weight".into(),
            host(self.level_emb.weight.val())?,
        );
        if let Some(emb) = &self.row_emb {
            d.insert(ROW_EMB.into(), host(emb.weight.val())?);
        }
        for (i, layer) in self.transformer.layers.iter().enumerate() {
            let p = format!("transformer.layers.{i}.");
            let mut packed_w = Vec::with_capacity(3 * h * h);
            let mut packed_b = Vec::with_capacity(3 * h);
            for lin in [&layer.mha.query, &layer.mha.key, &layer.mha.value] {
                packed_w.extend(torch_linear_weight(lin)?.1);
                packed_b.extend(bias_values(lin, h)?);
            }
            d.insert(
                format!("{p}self_attn.in_proj_weight"),
                HostTensor::f32(vec![3 * h, h], packed_w),
            );
            d.insert(
                format!("{p}self_attn.in_proj_bias"),
                HostTensor::f32(vec![3 * h], packed_b),
            );
            insert_linear(&mut d, &format!("{p}self_attn.out_proj"), &layer.mha.output)?;
            insert_linear(&mut d, &format!("{p}linear1"), &layer.pwff.linear_inner)?;
            insert_linear(&mut d, &format!("{p}linear2"), &layer.pwff.linear_outer)?;
            insert_norm(&mut d, &format!("{p}norm1"), &layer.norm_2)?;
            insert_norm(&mut d, &format!("{p}norm2"), &layer.norm_1)?;
        }
        insert_norm(&mut d, "ln_f", &self.ln_f)?;
        let (shape, w) = torch_linear_weight(&self.head)?;
        d.insert("head.weight".into(), HostTensor::f32(shape, w));
        Ok(d)
    }
}

/// The row embedding's name (not in the reference's state dicts).
const ROW_EMB: &str = "row_emb.weight";

/// Reads the prior's dimensions from a state dict's tensor shapes.
pub fn infer_shape(
    dict: &StateDict,
    num_heads: usize,
    dropout: f64,
) -> Result<PriorShape, PriorError> {
    let dims2 = |name: &str| -> Result<[usize; 2], PriorError> {
        match weights::shape_of(dict, name)? {
            [a, b] => Ok([*a, *b]),
            other => Err(PriorError::InvalidShape(format!(
                "'{name}' should be a matrix, found shape {other:?}"
            ))),
        }
    };
    let [codebook_size, hidden_size] = dims2("token_emb.weight")?;
    let [seq_len, _] = dims2("pos_emb.weight")?;
    let [num_quantizers, _] = dims2("level_emb.weight")?;
    // Only Distill's own time-major priors have a row embedding.
    let rows = if dict.contains_key(ROW_EMB) {
        dims2(ROW_EMB)?[0]
    } else {
        0
    };
    let num_layers = (0..)
        .take_while(|i| dict.contains_key(&format!("transformer.layers.{i}.linear1.weight")))
        .count();
    let shape = PriorShape {
        codebook_size,
        seq_len,
        num_quantizers,
        hidden_size,
        num_layers,
        num_heads,
        dropout,
        rows,
    };
    shape.validate()?;
    Ok(shape)
}

fn param1(values: Vec<f32>, device: &Device) -> Param<Tensor<1>> {
    let n = values.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, vec![n]), device))
}

fn param2(
    dict: &StateDict,
    name: &str,
    shape: [usize; 2],
    device: &Device,
) -> Result<Param<Tensor<2>>, PriorError> {
    let v = weights::get_f32(dict, name, &shape)?;
    Ok(Param::from_tensor(Tensor::from_data(
        TensorData::new(v, shape.to_vec()),
        device,
    )))
}

/// Burn stores Linear weights `[in, out]`; PyTorch stores `[out, in]`.
fn linear_weight(torch_rows: &[f32], out: usize, inp: usize, device: &Device) -> Param<Tensor<2>> {
    let t = weights::transpose(torch_rows, out, inp);
    Param::from_tensor(Tensor::from_data(
        TensorData::new(t, vec![inp, out]),
        device,
    ))
}

fn set_linear(
    lin: &mut Linear,
    dict: &StateDict,
    prefix: &str,
    inp: usize,
    out: usize,
    device: &Device,
) -> Result<(), PriorError> {
    let w = weights::get_f32(dict, &format!("{prefix}.weight"), &[out, inp])?;
    lin.weight = linear_weight(&w, out, inp, device);
    let b = weights::get_f32(dict, &format!("{prefix}.bias"), &[out])?;
    lin.bias = Some(param1(b, device));
    Ok(())
}

fn set_norm(
    norm: &mut LayerNorm,
    dict: &StateDict,
    prefix: &str,
    h: usize,
    device: &Device,
) -> Result<(), PriorError> {
    norm.gamma = param1(
        weights::get_f32(dict, &format!("{prefix}.weight"), &[h])?,
        device,
    );
    norm.beta = Some(param1(
        weights::get_f32(dict, &format!("{prefix}.bias"), &[h])?,
        device,
    ));
    Ok(())
}

pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>), PriorError> {
    let data = t.to_data();
    let shape = data.shape().as_slice().to_vec();
    let v = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| PriorError::Data(format!("{e:?}")))?;
    Ok((shape, v))
}

fn host<const D: usize>(t: Tensor<D>) -> Result<HostTensor, PriorError> {
    let (shape, v) = values(t)?;
    Ok(HostTensor::f32(shape, v))
}

pub(crate) fn torch_linear_weight(lin: &Linear) -> Result<(Vec<usize>, Vec<f32>), PriorError> {
    let (shape, v) = values(lin.weight.val())?;
    let (inp, out) = (shape[0], shape[1]);
    Ok((vec![out, inp], weights::transpose(&v, inp, out)))
}

pub(crate) fn bias_values(lin: &Linear, n: usize) -> Result<Vec<f32>, PriorError> {
    match &lin.bias {
        Some(b) => Ok(values(b.val())?.1),
        None => Ok(vec![0.0; n]),
    }
}

fn insert_linear(d: &mut StateDict, prefix: &str, lin: &Linear) -> Result<(), PriorError> {
    let (shape, w) = torch_linear_weight(lin)?;
    let out = shape[0];
    d.insert(format!("{prefix}.weight"), HostTensor::f32(shape, w));
    d.insert(
        format!("{prefix}.bias"),
        HostTensor::f32(vec![out], bias_values(lin, out)?),
    );
    Ok(())
}

fn insert_norm(d: &mut StateDict, prefix: &str, norm: &LayerNorm) -> Result<(), PriorError> {
    let gamma = host(norm.gamma.val())?;
    let n = gamma.numel();
    let beta = match &norm.beta {
        Some(b) => host(b.val())?,
        None => HostTensor::f32(vec![n], vec![0.0; n]),
    };
    d.insert(format!("{prefix}.weight"), gamma);
    d.insert(format!("{prefix}.bias"), beta);
    Ok(())
}
