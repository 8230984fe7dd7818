//! The backend choice, in one place. burn 0.22 tensors carry no backend type parameter: a runtime
//! [`Device`] chooses, and this module is the only code that builds one.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A tensor backend, as named in configs and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend (the default; `ndarray`'s successor).
    Flex,
    /// burn's `ndarray` CPU backend (deprecated in burn 0.22, removed in 0.23).
    Ndarray,
    /// wgpu (Vulkan, Metal, DX12; lavapipe in CI). Needs the `wgpu` feature.
    Wgpu,
    /// CUDA. Needs the `cuda` feature, whose build downloads LLVM.
    Cuda,
}

impl BackendKind {
    /// Every backend, compiled in or not.
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Flex,
        BackendKind::Ndarray,
        BackendKind::Wgpu,
        BackendKind::Cuda,
    ];

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this build can use the backend.
    pub fn compiled_in(self) -> bool {
        match self {
            BackendKind::Flex | BackendKind::Ndarray => true,
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }
}

/// A backend this build does not have.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Not compiled in.
    #[error(
        "backend `{}` is not compiled in: rebuild with `--features {}` \
         (the cuda feature downloads LLVM at build time, so it needs network)",
        .0.name(), .0.name()
    )]
    NotCompiled(BackendKind),
}

/// The device of a backend, with autodiff enabled when `autodiff` is set.
pub fn device(kind: BackendKind, autodiff: bool) -> Result<Device, BackendError> {
    #[allow(deprecated)] // ndarray stays selectable until burn 0.23 removes it
    let device = match kind {
        BackendKind::Flex => Device::flex(),
        BackendKind::Ndarray => Device::ndarray(),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Device::wgpu(Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Device::cuda(0usize),
        #[allow(unreachable_patterns)]
        other => return Err(BackendError::NotCompiled(other)),
    };
    Ok(if autodiff { device.autodiff() } else { device })
}
