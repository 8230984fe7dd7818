//! The variants of the loop, by name: the key of every per-variant record.

use serde::{Deserialize, Serialize};

/// Which policy objective the loop optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Standard (myopic) RLHF: no penalty, `gamma = 0`.
    Standard,
    /// Relaxed FPO: the first-order steering term with the oracle error factor (not deployable).
    Relaxed,
    /// Practical FPO: the squared gradient norm alone (deployable).
    Practical,
    /// Exact influence-function FPO (toys only): relaxed with `||g||²` replaced by
    /// `gᵀ (η H_λ)⁻¹ g`, `H_λ` the RM loss's Hessian damped by `λ I`.
    Influence,
}

impl Variant {
    /// The paper's three variants, in the order reports list them.
    pub const ALL: [Variant; 3] = [Variant::Standard, Variant::Relaxed, Variant::Practical];

    /// The name used in configs, metrics and reports.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Standard => "standard",
            Variant::Relaxed => "relaxed",
            Variant::Practical => "practical",
            Variant::Influence => "influence",
        }
    }

    /// Parses the config name of a variant.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Variant::Influence])
            .find(|v| v.name() == name)
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variant `{0}`, expected one of: standard, relaxed, practical")]
pub struct UnknownVariant(pub String);

impl std::str::FromStr for Variant {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| UnknownVariant(s.to_owned()))
    }
}
