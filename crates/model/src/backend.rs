//! The backend choice, in one place. burn 0.22 tensors carry no backend type parameter: a runtime
//! [`Device`] chooses, and this module is the only code that builds one.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A tensor backend, as named in configs and on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// burn's pure-Rust CPU backend (the default; `ndarray`'s successor).
    #[default]
    Flex,
    /// burn's `ndarray` CPU backend (deprecated in burn 0.22, removed in 0.23).
    Ndarray,
    /// wgpu (Vulkan, Metal, DX12; lavapipe in CI). Needs the `wgpu` feature.
    Wgpu,
    /// CUDA. Needs the `cuda` feature, whose build downloads LLVM.
    Cuda,
}

/// A name that is no backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{0}` (flex, ndarray, wgpu, cuda)")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for BackendKind {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| UnknownBackend(s.to_owned()))
    }
}

impl BackendKind {
    /// Every backend, compiled in or not.
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Flex,
        BackendKind::Ndarray,
        BackendKind::Wgpu,
        BackendKind::Cuda,
    ];

    /// The backend of a config name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether it runs on the host CPU (where the quantised GGUF kernels apply).
    pub fn is_cpu(self) -> bool {
        matches!(self, BackendKind::Flex | BackendKind::Ndarray)
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

/// A backend this build cannot use.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Not compiled in.
    #[error(
        "backend `{}` is not compiled in: rebuild with `cargo build --release --workspace \
         --features fpo-runner/{}`{}",
        .0.name(), .0.name(), build_note(*.0)
    )]
    NotCompiled(BackendKind),
    /// Compiled in, but this machine offers no device for it.
    #[error(
        "backend `{name}`: no device found ({why}); `fpo doctor` lists what this machine offers",
        name = .0.name(), why = .1
    )]
    NoDevice(BackendKind, String),
}

fn build_note(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Cuda => {
            " (burn 0.22's cuda feature downloads an LLVM bundle at build time, so it builds \
             only with network access; see README, \"GPU backends\")"
        }
        BackendKind::Wgpu => " (about 30 more minutes of a cold build on 2 cores)",
        _ => "",
    }
}

/// A tensor's values as `f32` on the host, row-major.
pub(crate) fn host_f32<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec()
        .expect("f32 data after convert")
}

/// Every backend compiled in besides flex, the one the others are checked against (parity
/// tests). Each must find a device: an error names the first that does not, so that a parity
/// check cannot skip a GPU it was built for.
pub fn others_than_flex() -> Result<Vec<BackendKind>, BackendError> {
    BackendKind::ALL
        .into_iter()
        .filter(|&k| k != BackendKind::Flex && k.compiled_in())
        .map(|k| device(k, false).map(|_| k))
        .collect()
}

/// The device of a backend, with autodiff enabled when `autodiff` is set. A GPU backend is
/// refused when the machine has no adapter for it (rather than failing at the first tensor).
pub fn device(kind: BackendKind, autodiff: bool) -> Result<Device, BackendError> {
    #[allow(deprecated)] // ndarray stays selectable until burn 0.23 removes it
    let device = match kind {
        BackendKind::Flex => Device::flex(),
        BackendKind::Ndarray => Device::ndarray(),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            if gpu_devices(kind).is_empty() {
                return Err(BackendError::NoDevice(
                    kind,
                    "no Vulkan, Metal or DX12 adapter; on Linux without a GPU, install a \
                     software driver such as Mesa's lavapipe (Debian: mesa-vulkan-drivers)"
                        .into(),
                ));
            }
            Device::wgpu(Default::default())
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            if gpu_devices(kind).is_empty() {
                return Err(BackendError::NoDevice(kind, "no CUDA device".into()));
            }
            Device::cuda(0usize)
        }
        #[allow(unreachable_patterns)]
        other => return Err(BackendError::NotCompiled(other)),
    };
    Ok(if autodiff { device.autodiff() } else { device })
}

/// Whether `device` (with or without autodiff) computes on the host CPU.
pub fn on_host(device: &Device) -> bool {
    let plain = device.clone().inner();
    #[allow(deprecated)]
    let ndarray = Device::ndarray();
    plain == Device::flex() || plain == ndarray
}

/// Whether `device` (with or without autodiff) is burn's flex CPU backend.
pub fn on_flex(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
}

/// The devices burn finds for a GPU backend on this machine (none for the CPU backends).
pub fn gpu_devices(kind: BackendKind) -> Vec<Device> {
    #[allow(unused_imports)]
    use burn::tensor::DeviceType;
    match kind {
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Device::enumerate(DeviceType::Wgpu).to_vec(),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Device::enumerate(DeviceType::Cuda).to_vec(),
        _ => Vec::new(),
    }
}

/// A device's name and what its kernels compile for (opens the device).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn describe(device: &Device) -> String {
    match device.identity() {
        Some(id) => format!("{} ({})", id.name, id.fingerprint),
        None => format!("{device:?}"),
    }
}

/// What `fpo doctor` says about one backend.
#[derive(Debug, Clone, Serialize)]
pub struct BackendProbe {
    /// The backend.
    pub backend: BackendKind,
    /// Whether this build has it.
    pub compiled_in: bool,
    /// The devices or adapters found (CPU: the thread count).
    pub devices: Vec<String>,
    /// A 64x64 matrix product and a softmax on the device against the same on the host in `f64`:
    /// the largest absolute difference, when the device ran it.
    pub check_max_abs_diff: Option<f64>,
    /// Why the check did not run or failed.
    pub error: Option<String>,
}

/// Probes a backend: is it compiled in, which devices does the machine offer, and does a small
/// computation on it agree with the host.
pub fn probe(kind: BackendKind) -> BackendProbe {
    let mut out = BackendProbe {
        backend: kind,
        compiled_in: kind.compiled_in(),
        devices: Vec::new(),
        check_max_abs_diff: None,
        error: None,
    };
    if !out.compiled_in {
        out.error = Some(BackendError::NotCompiled(kind).to_string());
        return out;
    }
    out.devices = match kind {
        BackendKind::Flex | BackendKind::Ndarray => vec![format!(
            "host CPU, {} threads",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        )],
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        _ => gpu_devices(kind).iter().map(describe).collect(),
        #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
        _ => Vec::new(),
    };
    let checked = std::panic::catch_unwind(|| -> Result<f64, BackendError> {
        let dev = device(kind, false)?;
        Ok(check(&dev))
    });
    match checked {
        Ok(Ok(diff)) => out.check_max_abs_diff = Some(diff),
        Ok(Err(e)) => out.error = Some(e.to_string()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            out.error = Some(format!("the device failed: {msg}"));
        }
    }
    out
}

/// `softmax(A B)` rows on `device` against the host in `f64`: largest absolute difference.
fn check(device: &Device) -> f64 {
    use burn::tensor::{DType, Tensor, TensorData, activation::softmax};
    const N: usize = 64;
    let a: Vec<f32> = (0..N * N)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 13.0)
        .collect();
    let b: Vec<f32> = (0..N * N)
        .map(|i| ((i * 5 % 11) as f32 - 5.0) / 11.0)
        .collect();
    let t = |v: &[f32]| {
        Tensor::<2>::from_data(TensorData::new(v.to_vec(), [N, N]), (device, DType::F32))
    };
    let got = host_f32(softmax(t(&a).matmul(t(&b)), 1));
    let mut worst = 0.0f64;
    for r in 0..N {
        let row: Vec<f64> = (0..N)
            .map(|c| {
                (0..N)
                    .map(|k| f64::from(a[r * N + k]) * f64::from(b[k * N + c]))
                    .sum()
            })
            .collect();
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|x| (x - max).exp()).sum();
        for c in 0..N {
            let want = (row[c] - max).exp() / sum;
            worst = worst.max((f64::from(got[r * N + c]) - want).abs());
        }
    }
    worst
}
