//! Named host tensors and the files that carry them.
//!
//! * [`torch`]: reads PyTorch `torch.save` zip checkpoints (the reference system's `.distill`
//!   files) with a small pickle interpreter that only builds data — it never imports or runs
//!   anything named in the file, unlike Python's `pickle`.
//! * [`st`]: reads and writes safetensors containers with string metadata (our own model file).
//!
//! Model crates map these host tensors onto their Burn modules; keeping the formats here lets
//! every model share one reader and one writer.

use std::collections::BTreeMap;

pub mod pickle;
pub mod st;
pub mod torch;

/// Errors from reading or writing weight files.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("not a PyTorch checkpoint: {0}")]
    NotTorch(String),
    #[error("corrupt PyTorch checkpoint: {0}")]
    CorruptTorch(String),
    #[error("unsupported pickle content: {0}")]
    Pickle(String),
    #[error("corrupt safetensors data: {0}")]
    Safetensors(String),
    #[error("tensor '{name}': {message}")]
    Tensor { name: String, message: String },
    #[error("missing tensor '{0}'")]
    Missing(String),
}

pub type Result<T, E = WeightsError> = std::result::Result<T, E>;

/// Element storage of a [`HostTensor`]. Floating types are widened/narrowed to `f32` and
/// integer types to `i64` on read, which is all the models need.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// A dense, row-major tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: HostData,
}

impl HostTensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            data: HostData::F32(data),
        }
    }

    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Self {
        Self {
            shape,
            data: HostData::I64(data),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            HostData::F32(_) => "float32",
            HostData::I64(_) => "int64",
            HostData::Bool(_) => "bool",
        }
    }

    /// The values as `f32`, converting integers and booleans.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        }
    }

    /// The values as `i64`; floats are rejected rather than truncated.
    pub fn to_i64(&self, name: &str) -> Result<Vec<i64>> {
        match &self.data {
            HostData::I64(v) => Ok(v.clone()),
            HostData::Bool(v) => Ok(v.iter().map(|&x| i64::from(x)).collect()),
            HostData::F32(_) => Err(WeightsError::Tensor {
                name: name.to_string(),
                message: "expected an integer tensor, found float32".into(),
            }),
        }
    }
}

/// Tensors by name, in a stable order.
pub type StateDict = BTreeMap<String, HostTensor>;

/// Looks up a tensor and checks its shape, with errors that name the tensor.
pub fn get_shaped<'a>(dict: &'a StateDict, name: &str, shape: &[usize]) -> Result<&'a HostTensor> {
    let t = dict
        .get(name)
        .ok_or_else(|| WeightsError::Missing(name.to_string()))?;
    if t.shape != shape {
        return Err(WeightsError::Tensor {
            name: name.to_string(),
            message: format!("expected shape {shape:?}, found {:?}", t.shape),
        });
    }
    Ok(t)
}

/// Looks up a float tensor of the given shape and returns its values.
pub fn get_f32(dict: &StateDict, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = get_shaped(dict, name, shape)?;
    match &t.data {
        HostData::F32(v) => Ok(v.clone()),
        _ => Err(WeightsError::Tensor {
            name: name.to_string(),
            message: format!("expected float32, found {}", t.dtype_name()),
        }),
    }
}

/// The shape of a named tensor, or a `Missing` error.
pub fn shape_of<'a>(dict: &'a StateDict, name: &str) -> Result<&'a [usize]> {
    dict.get(name)
        .map(|t| t.shape.as_slice())
        .ok_or_else(|| WeightsError::Missing(name.to_string()))
}

/// Keeps the entries whose names start with `prefix`, with the prefix removed.
pub fn strip_prefix(dict: &StateDict, prefix: &str) -> StateDict {
    dict.iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_string(), v.clone())))
        .collect()
}

/// Transposes a row-major `[rows, cols]` matrix (PyTorch Linear `[out, in]` ↔ Burn `[in, out]`).
pub fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}
