//! safetensors containers with string metadata.
//!
//! Reading goes through the `safetensors` crate, which validates the header and offsets.
//! Writing is our own because the crate serialises its metadata from a `HashMap`, whose
//! order changes from run to run; model files must be byte-identical for the same weights.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};

use crate::{HostData, HostTensor, Result, StateDict, WeightsError};

/// True when the bytes start like a safetensors file: an 8-byte header length, then `{`.
pub fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[8] == b'{'
}

fn corrupt(msg: impl Into<String>) -> WeightsError {
    WeightsError::Safetensors(msg.into())
}

/// Serialises tensors and metadata deterministically (sorted names, 8-byte aligned header).
pub fn to_bytes(tensors: &StateDict, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0usize;
    let mut payload: Vec<u8> = Vec::new();
    for (name, t) in tensors {
        if t.numel() != data_len(&t.data) {
            return Err(WeightsError::Tensor {
                name: name.clone(),
                message: format!(
                    "shape {:?} does not match {} values",
                    t.shape,
                    data_len(&t.data)
                ),
            });
        }
        let (dtype, bytes): (&str, Vec<u8>) = match &t.data {
            HostData::F32(v) => ("F32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            HostData::I64(v) => ("I64", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            HostData::Bool(v) => ("BOOL", v.iter().map(|&x| u8::from(x)).collect()),
        };
        let end = offset + bytes.len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.shape, "data_offsets": [offset, end]}),
        );
        payload.extend_from_slice(&bytes);
        offset = end;
    }
    let mut header_bytes =
        serde_json::to_vec(&header).map_err(|e| corrupt(format!("header: {e}")))?;
    while !header_bytes.len().is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header_bytes.len() + payload.len());
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&payload);
    Ok(out)
}

fn data_len(d: &HostData) -> usize {
    match d {
        HostData::F32(v) => v.len(),
        HostData::I64(v) => v.len(),
        HostData::Bool(v) => v.len(),
    }
}

/// Parses a safetensors buffer into tensors and metadata.
pub fn from_bytes(bytes: &[u8]) -> Result<(StateDict, BTreeMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
    let metadata: BTreeMap<String, String> = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut tensors = StateDict::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => HostData::F32(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::F64 => HostData::F32(
                raw.chunks_exact(8)
                    .map(|c| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(c);
                        f64::from_le_bytes(a) as f32
                    })
                    .collect(),
            ),
            Dtype::I64 => HostData::I64(
                raw.chunks_exact(8)
                    .map(|c| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(c);
                        i64::from_le_bytes(a)
                    })
                    .collect(),
            ),
            Dtype::I32 => HostData::I64(
                raw.chunks_exact(4)
                    .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
            ),
            Dtype::BOOL => HostData::Bool(raw.iter().map(|&b| b != 0).collect()),
            other => {
                return Err(WeightsError::Tensor {
                    name,
                    message: format!("unsupported dtype {other:?}"),
                });
            }
        };
        let t = HostTensor {
            shape: view.shape().to_vec(),
            data,
        };
        if t.numel() != data_len(&t.data) {
            return Err(WeightsError::Tensor {
                name,
                message: "data length does not match its shape".into(),
            });
        }
        tensors.insert(name, t);
    }
    Ok((tensors, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (StateDict, BTreeMap<String, String>) {
        let mut t = StateDict::new();
        t.insert(
            "b.weight".into(),
            HostTensor::f32(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]),
        );
        t.insert("a.count".into(), HostTensor::i64(vec![], vec![7]));
        t.insert(
            "c.mask".into(),
            HostTensor {
                shape: vec![3],
                data: HostData::Bool(vec![true, false, true]),
            },
        );
        let mut m = BTreeMap::new();
        m.insert("format".into(), "distill".into());
        m.insert("config".into(), "{\"x\": 1}".into());
        (t, m)
    }

    #[test]
    fn round_trip_is_exact_and_deterministic() {
        let (t, m) = sample();
        let a = to_bytes(&t, &m).expect("writes");
        let b = to_bytes(&t, &m).expect("writes");
        assert_eq!(a, b, "same input gives the same bytes");
        assert!(looks_like_safetensors(&a));
        let (t2, m2) = from_bytes(&a).expect("reads");
        assert_eq!(t2, t);
        assert_eq!(m2, m);
    }

    #[test]
    fn corrupt_buffers_are_errors_not_panics() {
        let (t, m) = sample();
        let good = to_bytes(&t, &m).expect("writes");
        for n in 0..good.len() {
            let _ = from_bytes(&good[..n]);
        }
        let err = from_bytes(&good[..good.len() - 1]).expect_err("one byte short");
        assert!(
            err.to_string().contains("corrupt safetensors data"),
            "{err}"
        );
        let mut seed = 1u64;
        for _ in 0..3000 {
            let mut bad = good.clone();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % bad.len();
            bad[i] ^= 1 << ((seed >> 20) % 8);
            let _ = from_bytes(&bad);
        }
    }
}
