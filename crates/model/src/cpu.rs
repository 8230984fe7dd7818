//! Which CPU kernel path the host kernels take: AVX-512, AVX2+FMA or the portable loops.
//!
//! By default the best the CPU has. `FPO_CPU=avx512|avx2|portable` forces one (so that any
//! machine can test and benchmark the lower paths); a path the CPU lacks is refused, by
//! [`CpuPath::from_env`] and by every model load. The override steers this crate's quantised
//! products ([`crate::llm::quant`]) and the host decoder's attention; it does not steer burn's
//! f32 gemm (the `gemm` crate picks its own micro-kernels by CPU feature), nor the toys' kernels.

use std::sync::OnceLock;

/// The environment variable that forces a path.
pub const ENV: &str = "FPO_CPU";

/// A kernel path of the host kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuPath {
    /// AVX-512 (F and BW) intrinsics: 32 vector registers of 16 lanes.
    Avx512,
    /// AVX2 and FMA intrinsics: 16 vector registers of 8 lanes.
    Avx2,
    /// Plain loops, compiled for the baseline target (SSE2 on x86_64, NEON on aarch64).
    Portable,
}

/// `FPO_CPU` names a path this CPU lacks, or no path at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuPathError {
    /// Not one of the names.
    #[error("{ENV}={value}: unknown kernel path (expected avx512, avx2 or portable)")]
    Unknown {
        /// What the variable held.
        value: String,
    },
    /// The CPU lacks the path's features.
    #[error("{ENV}={value}: this CPU lacks {missing} (it supports: {supported})")]
    Unsupported {
        /// What the variable held.
        value: String,
        /// The features missing.
        missing: &'static str,
        /// The paths this CPU can take, best first.
        supported: String,
    },
}

impl CpuPath {
    /// Every path, best first.
    pub const ALL: [CpuPath; 3] = [CpuPath::Avx512, CpuPath::Avx2, CpuPath::Portable];

    /// The name `FPO_CPU` takes and run records carry.
    pub fn name(self) -> &'static str {
        match self {
            CpuPath::Avx512 => "avx512",
            CpuPath::Avx2 => "avx2",
            CpuPath::Portable => "portable",
        }
    }

    /// The path named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The CPU features the path needs, as the error names them.
    fn needs(self) -> &'static str {
        match self {
            CpuPath::Avx512 => "avx512f, avx512bw, avx512vl, avx2 and fma",
            CpuPath::Avx2 => "avx2 and fma",
            CpuPath::Portable => "nothing",
        }
    }

    /// Whether this CPU has what the path needs (checked at run time).
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 =
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            match self {
                CpuPath::Avx512 => {
                    avx2 && std::is_x86_feature_detected!("avx512f")
                        && std::is_x86_feature_detected!("avx512bw")
                        && std::is_x86_feature_detected!("avx512vl")
                }
                CpuPath::Avx2 => avx2,
                CpuPath::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == CpuPath::Portable
        }
    }

    /// The paths this CPU can take, best first.
    pub fn supported() -> Vec<CpuPath> {
        Self::ALL.into_iter().filter(|p| p.is_supported()).collect()
    }

    /// The best path this CPU has.
    pub fn detected() -> CpuPath {
        Self::ALL
            .into_iter()
            .find(|p| p.is_supported())
            .unwrap_or(CpuPath::Portable)
    }

    /// The path `FPO_CPU` asks for (the detected one when it is unset or empty), refused when it
    /// names no path or one this CPU lacks.
    pub fn from_env() -> Result<CpuPath, CpuPathError> {
        match std::env::var(ENV) {
            Ok(value) if !value.trim().is_empty() => Self::parse(value.trim()),
            _ => Ok(Self::detected()),
        }
    }

    /// `value` as [`CpuPath::from_env`] reads it.
    pub fn parse(value: &str) -> Result<CpuPath, CpuPathError> {
        let path = Self::from_name(value).ok_or_else(|| CpuPathError::Unknown {
            value: value.into(),
        })?;
        if !path.is_supported() {
            return Err(CpuPathError::Unsupported {
                value: value.into(),
                missing: path.needs(),
                supported: Self::supported()
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(path)
    }

    /// The path the kernels take in this process: [`CpuPath::from_env`], read once. Where that
    /// is refused the detected path runs; model loads return the refusal before any kernel runs,
    /// so a run never gets this far with a bad `FPO_CPU`.
    pub fn active() -> CpuPath {
        static ACTIVE: OnceLock<CpuPath> = OnceLock::new();
        *ACTIVE.get_or_init(|| Self::from_env().unwrap_or_else(|_| Self::detected()))
    }
}

impl std::fmt::Display for CpuPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_or_missing_paths_are_refused() {
        for p in CpuPath::ALL {
            assert_eq!(CpuPath::from_name(p.name()), Some(p));
        }
        assert!(matches!(
            CpuPath::parse("avx3"),
            Err(CpuPathError::Unknown { .. })
        ));
        assert_eq!(CpuPath::parse("portable"), Ok(CpuPath::Portable));
        for p in CpuPath::ALL {
            match CpuPath::parse(p.name()) {
                Ok(got) => assert!(got == p && p.is_supported()),
                Err(e) => {
                    assert!(!p.is_supported());
                    assert!(e.to_string().contains("lacks"), "{e}");
                }
            }
        }
        assert_eq!(CpuPath::detected(), CpuPath::supported()[0]);
    }
}

/// `f(index, chunk)` for each `size`-long chunk of `data` (the last one shorter), on rayon's
/// threads when `parallel`: the same values either way when `f` writes only its own chunk.
pub(crate) fn for_chunks<T: Send>(
    data: &mut [T],
    size: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    use rayon::prelude::*;
    if parallel {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// `f()` on a rayon worker. Called from outside the pool, each parallel product would hand its
/// work to the pool and block on it (two thread switches per product, ~120 per token of a
/// pass), and a third thread would share the two cores with the workers; on a worker, the
/// caller takes part in every split instead. Results do not change: every parallel loop here
/// computes the same values in any split.
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() > 1 && rayon::current_thread_index().is_none() {
        rayon::scope(|_| f())
    } else {
        f()
    }
}
