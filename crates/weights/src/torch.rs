//! Reader for PyTorch `torch.save` files (zip container, pickle protocol 2+).
//!
//! The pickle is interpreted by [`crate::pickle`], which never executes anything; tensors are
//! rebuilt from their storages here, with every size, stride and offset checked against the
//! bytes actually present.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use crate::pickle::{self, Resolver, Value};
use crate::{HostData, HostTensor, Result, StateDict, WeightsError};

/// True when the bytes start like a zip archive (what `torch.save` writes since PyTorch 1.6).
pub fn looks_like_torch_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

fn corrupt(msg: impl Into<String>) -> WeightsError {
    WeightsError::CorruptTorch(msg.into())
}

/// Reads a whole checkpoint into a value tree whose tensors are [`HostTensor`]s.
pub fn load_checkpoint(bytes: &[u8]) -> Result<Value> {
    if !looks_like_torch_zip(bytes) {
        return Err(WeightsError::NotTorch(
            "no zip signature (PyTorch checkpoints written by torch.save start with 'PK')".into(),
        ));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| corrupt(format!("unreadable zip container: {e}")))?;
    let pkl_name = (0..archive.len())
        .filter_map(|i| archive.name_for_index(i).map(str::to_string))
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| corrupt("no '<archive>/data.pkl' entry"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if let Ok(mut f) = archive.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        f.read_to_string(&mut order)
            .map_err(|e| corrupt(format!("byteorder entry: {e}")))?;
        if order.trim() != "little" {
            return Err(corrupt(format!(
                "unsupported byte order '{}'",
                order.trim()
            )));
        }
    }
    let pkl = read_entry(&mut archive, &pkl_name)?;
    let mut resolver = TorchResolver {
        archive,
        prefix,
        storages: HashMap::new(),
    };
    pickle::load(&pkl, &mut resolver)
}

fn read_entry(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Vec<u8>> {
    let mut f = archive
        .by_name(name)
        .map_err(|e| corrupt(format!("entry '{name}': {e}")))?;
    // The declared size is untrusted: cap the pre-allocation, let the read find the truth.
    let mut buf = Vec::with_capacity((f.size() as usize).min(1 << 26));
    f.read_to_end(&mut buf)
        .map_err(|e| corrupt(format!("entry '{name}': {e}")))?;
    Ok(buf)
}

struct TorchResolver<'a> {
    archive: zip::ZipArchive<Cursor<&'a [u8]>>,
    prefix: String,
    storages: HashMap<String, std::rc::Rc<Vec<u8>>>,
}

fn element_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "FloatStorage" | "IntStorage" => 4,
        "DoubleStorage" | "LongStorage" => 8,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "BoolStorage" | "ByteStorage" | "CharStorage" => 1,
        _ => return None,
    })
}

impl TorchResolver<'_> {
    fn storage(&mut self, key: &str) -> Result<std::rc::Rc<Vec<u8>>> {
        if let Some(s) = self.storages.get(key) {
            return Ok(s.clone());
        }
        let name = format!("{}data/{key}", self.prefix);
        let bytes = std::rc::Rc::new(read_entry(&mut self.archive, &name)?);
        self.storages.insert(key.to_string(), bytes.clone());
        Ok(bytes)
    }

    fn rebuild_tensor(&mut self, args: Value) -> Result<Value> {
        let Value::Tuple(args) = args else {
            return Err(corrupt("_rebuild_tensor_v2 arguments are not a tuple"));
        };
        let (
            Some(Value::Storage { key, dtype }),
            Some(offset),
            Some(Value::Tuple(size)),
            Some(Value::Tuple(stride)),
        ) = (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            return Err(corrupt("_rebuild_tensor_v2 arguments have the wrong form"));
        };
        let as_usize = |v: &Value| -> Result<usize> {
            v.as_i64()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| corrupt("negative or non-integer tensor geometry"))
        };
        let offset = as_usize(offset)?;
        let shape = size.iter().map(as_usize).collect::<Result<Vec<_>>>()?;
        let stride = stride.iter().map(as_usize).collect::<Result<Vec<_>>>()?;
        if shape.len() != stride.len() {
            return Err(corrupt("tensor size and stride ranks differ"));
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| corrupt("tensor size overflows"))?;
        let esize = element_size(dtype)
            .ok_or_else(|| corrupt(format!("unsupported storage type {dtype}")))?;
        let storage = self.storage(key)?;
        let n_storage = storage.len() / esize;
        // Largest element index touched, to bound-check once instead of per element.
        if numel > 0 {
            let mut last = offset;
            for (&d, &s) in shape.iter().zip(&stride) {
                last = (d - 1)
                    .checked_mul(s)
                    .and_then(|x| x.checked_add(last))
                    .ok_or_else(|| corrupt("tensor extent overflows"))?;
            }
            if last >= n_storage {
                return Err(corrupt(format!(
                    "tensor reaches element {last} of a storage holding {n_storage}"
                )));
            }
        }
        // Walk the strided view in row-major order (an odometer over the dimensions).
        let mut indices = Vec::with_capacity(numel);
        let mut idx = vec![0usize; shape.len()];
        for _ in 0..numel {
            indices.push(offset + idx.iter().zip(&stride).map(|(i, s)| i * s).sum::<usize>());
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        let bytes = storage.as_slice();
        let at = |i: usize| &bytes[i * esize..(i + 1) * esize];
        let data = match dtype.as_str() {
            "FloatStorage" => HostData::F32(
                indices
                    .iter()
                    .map(|&i| f32::from_le_bytes(at(i).try_into().unwrap_or([0; 4])))
                    .collect(),
            ),
            "DoubleStorage" => HostData::F32(
                indices
                    .iter()
                    .map(|&i| f64::from_le_bytes(at(i).try_into().unwrap_or([0; 8])) as f32)
                    .collect(),
            ),
            "HalfStorage" => HostData::F32(
                indices
                    .iter()
                    .map(|&i| half::f16::from_le_bytes([at(i)[0], at(i)[1]]).to_f32())
                    .collect(),
            ),
            "BFloat16Storage" => HostData::F32(
                indices
                    .iter()
                    .map(|&i| half::bf16::from_le_bytes([at(i)[0], at(i)[1]]).to_f32())
                    .collect(),
            ),
            "LongStorage" => HostData::I64(
                indices
                    .iter()
                    .map(|&i| i64::from_le_bytes(at(i).try_into().unwrap_or([0; 8])))
                    .collect(),
            ),
            "IntStorage" => HostData::I64(
                indices
                    .iter()
                    .map(|&i| i64::from(i32::from_le_bytes(at(i).try_into().unwrap_or([0; 4]))))
                    .collect(),
            ),
            "ShortStorage" => HostData::I64(
                indices
                    .iter()
                    .map(|&i| i64::from(i16::from_le_bytes([at(i)[0], at(i)[1]])))
                    .collect(),
            ),
            "ByteStorage" => HostData::I64(indices.iter().map(|&i| i64::from(at(i)[0])).collect()),
            "CharStorage" => {
                HostData::I64(indices.iter().map(|&i| i64::from(at(i)[0] as i8)).collect())
            }
            "BoolStorage" => HostData::Bool(indices.iter().map(|&i| at(i)[0] != 0).collect()),
            other => return Err(corrupt(format!("unsupported storage type {other}"))),
        };
        Ok(Value::Tensor(HostTensor { shape, data }))
    }
}

impl Resolver for TorchResolver<'_> {
    fn persistent_load(&mut self, pid: Value) -> Result<Value> {
        // ('storage', <global torch.XStorage>, key, location, numel)
        let Value::Tuple(items) = pid else {
            return Err(corrupt("persistent id is not a tuple"));
        };
        match (items.first(), items.get(1), items.get(2)) {
            (Some(Value::Str(kind)), Some(Value::Global(ty)), Some(Value::Str(key)))
                if kind == "storage" =>
            {
                let dtype = ty.rsplit('.').next().unwrap_or_default().to_string();
                Ok(Value::Storage {
                    key: key.clone(),
                    dtype,
                })
            }
            _ => Err(corrupt("unrecognised persistent id")),
        }
    }

    fn reduce(&mut self, global: &str, args: Value) -> Result<Value> {
        match global {
            "collections.OrderedDict" => Ok(Value::Dict(Vec::new())),
            "torch._utils._rebuild_tensor_v2" => self.rebuild_tensor(args),
            "torch._utils._rebuild_parameter" => match args {
                Value::Tuple(mut a) if !a.is_empty() => Ok(a.swap_remove(0)),
                _ => Err(corrupt("_rebuild_parameter arguments have the wrong form")),
            },
            _ => Ok(Value::Object {
                class: global.to_string(),
                args: Box::new(args),
            }),
        }
    }
}

/// Collects the tensors of a state-dict value (e.g. `checkpoint["model_state_dict"]`).
pub fn state_dict(value: &Value, what: &str) -> Result<StateDict> {
    let Value::Dict(items) = value else {
        return Err(corrupt(format!("'{what}' is not a dictionary")));
    };
    let mut out = StateDict::new();
    for (k, v) in items {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        out.insert(name.clone(), t.clone());
    }
    Ok(out)
}
