//! A variant's checkpoints: the adapters, the policy optimiser's record and the RM head with its
//! optimiser, written atomically into `<variant dir>/checkpoint/` (a new folder, then two
//! renames), and the log read back up to a checkpoint when a killed run resumes.

use std::path::Path;

use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::tensor::Device;
use fpo_model::llm::{Adapters, LlamaConfig, LoraConfig};
use serde::{Deserialize, Serialize};

use super::IterationLog;
use crate::penalty::Variant;
use crate::reward::{AdamW, Head};
use crate::{Error, Result};

/// The state a checkpoint carries besides the adapters and the optimiser record.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct CheckpointState {
    /// Iterations done.
    pub(super) iteration: usize,
    pub(super) variant: Variant,
    pub(super) seed: u64,
    /// The experiment's settings, so a checkpoint is never resumed under others.
    pub(super) fingerprint: String,
    pub(super) head: Head,
    pub(super) head_optimizer: AdamW,
}

/// Writes `dir/checkpoint/` atomically: a new folder, then two renames.
pub(super) fn save(
    dir: &Path,
    state: &CheckpointState,
    lora: &LoraConfig,
    adapters: &Adapters,
    optimizer: &ModuleOptimizer,
) -> Result<()> {
    let new = dir.join("checkpoint.new");
    if new.exists() {
        std::fs::remove_dir_all(&new).map_err(io(&new))?;
    }
    std::fs::create_dir_all(&new).map_err(io(&new))?;
    adapters.save(lora, &new.join("adapters.safetensors"))?;
    let opt_path = new.join("optimizer.bpk");
    optimizer
        .to_record()
        .save(&opt_path)
        .map_err(|e| ckpt_err(&opt_path, e))?;
    write_atomic(&new.join("state.json"), &fpo_rundir::to_json(state)?)?;
    let cur = dir.join("checkpoint");
    let old = dir.join("checkpoint.old");
    if cur.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        std::fs::rename(&cur, &old).map_err(io(&cur))?;
    }
    std::fs::rename(&new, &cur).map_err(io(&new))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// The checkpoint in `dir`, if any (`checkpoint/`, or `checkpoint.old/` when a save was
/// interrupted between its renames): its state, adapters and the policy optimiser's record. A
/// checkpoint of another variant or seed, or written under other settings (`fingerprint`), is
/// refused.
pub(super) fn load(
    dir: &Path,
    variant: Variant,
    seed: u64,
    fingerprint: &str,
    config: &LlamaConfig,
    device: &Device,
) -> Result<Option<(CheckpointState, Adapters, OptimizerRecord)>> {
    let Some(ck) = ["checkpoint", "checkpoint.old"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.join("state.json").exists())
    else {
        return Ok(None);
    };
    let state_path = ck.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let saved: CheckpointState =
        serde_json::from_str(&text).map_err(|e| ckpt_err(&state_path, e))?;
    if saved.variant != variant || saved.seed != seed {
        return Err(ckpt_err(
            &state_path,
            format!(
                "belongs to variant {} seed {}, not {variant} seed {seed}",
                saved.variant, saved.seed
            ),
        ));
    }
    if saved.fingerprint != fingerprint {
        return Err(ckpt_err(
            &state_path,
            "was written under other settings; remove the run directory or use another --out",
        ));
    }
    let (adapters, _) = Adapters::load(&ck.join("adapters.safetensors"), config, device)?;
    let opt_path = ck.join("optimizer.bpk");
    let record = OptimizerRecord::load(&opt_path).map_err(|e| ckpt_err(&opt_path, e))?;
    Ok(Some((saved, adapters, record)))
}

/// The first `keep` lines of a log (all of them when it is shorter); a torn last line is dropped.
pub(super) fn read_log(path: &Path, keep: usize) -> Result<Vec<IterationLog>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().take(keep) {
        match serde_json::from_str::<IterationLog>(line) {
            Ok(l) => out.push(l),
            Err(_) if i + 1 == text.lines().count() => break,
            Err(e) => {
                return Err(Error::Data {
                    path: path.to_owned(),
                    line: i + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    if out.len() < keep {
        return Err(ckpt_err(
            path,
            format!(
                "the checkpoint is at iteration {keep} but the log has {} lines",
                out.len()
            ),
        ));
    }
    Ok(out)
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

pub(super) fn ckpt_err(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::Checkpoint {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
