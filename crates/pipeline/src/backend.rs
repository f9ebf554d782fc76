//! Run-time choice of the Burn backend: one code path, a `Device` value picks the hardware.

use burn::prelude::{Device, DeviceKind};

/// The backends Distill runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (fastest on CPU, works everywhere).
    Flex,
    /// The older ndarray CPU backend (deprecated upstream, kept for comparison).
    Ndarray,
    /// GPU through wgpu (Vulkan, Metal, DX12 or OpenGL).
    Wgpu,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "the wgpu backend found no usable GPU adapter ({0}); use --backend flex to run on the CPU"
    )]
    NoAdapter(String),
}

/// Where single-token generation steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    /// Plain loops over a host copy of the prior's weights: on a CPU every dispatched tensor
    /// operation costs more than its arithmetic, so this is several times faster there.
    Host,
    /// The backend's own tensor operations with a key/value cache (a GPU).
    Device,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Flex, Backend::Ndarray, Backend::Wgpu];

    /// A device of this backend, without autodiff.
    pub fn device(self) -> Result<Device, BackendError> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            #[allow(deprecated)] // deprecated in Burn 0.22, still supported
            Backend::Ndarray => Ok(Device::ndarray()),
            Backend::Wgpu => Device::wgpu_options()
                .device_kind(DeviceKind::DefaultDevice)
                .init()
                .map_err(|e| BackendError::NoAdapter(e.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Ndarray => "ndarray",
            Backend::Wgpu => "wgpu",
        }
    }

    /// Whether the backend computes on the CPU.
    pub fn is_cpu(self) -> bool {
        matches!(self, Backend::Flex | Backend::Ndarray)
    }

    /// How generation steps the prior on this backend.
    pub fn decoding(self) -> Decoding {
        if self.is_cpu() {
            Decoding::Host
        } else {
            Decoding::Device
        }
    }
}

/// Whether `device` (with or without autodiff) computes on the CPU.
pub fn computes_on_host(device: &Device) -> bool {
    let plain = device.clone().without_autodiff();
    #[allow(deprecated)] // deprecated in Burn 0.22, still supported
    let ndarray = Device::ndarray();
    plain == Device::flex() || plain == ndarray
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_adapter_is_a_clear_error_pointing_to_the_cpu() {
        let message = BackendError::NoAdapter("no Vulkan driver".into()).to_string();
        assert!(
            message.contains("no usable GPU adapter (no Vulkan driver)"),
            "{message}"
        );
        assert!(message.contains("--backend flex"), "{message}");
        assert_eq!(Backend::Wgpu.decoding(), Decoding::Device);
        assert_eq!(Backend::Flex.decoding(), Decoding::Host);
        assert_eq!(Backend::Ndarray.decoding(), Decoding::Host);
    }
}
