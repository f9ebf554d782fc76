//! Run-time choice of the Burn backend: one code path, a `Device` value picks the hardware.

use burn::prelude::{Device, DeviceKind};

/// Backends the CLI offers with `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
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

impl Backend {
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
}
