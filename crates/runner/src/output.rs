//! Run directories, written atomically: everything goes into `<dir>.partial`, which is renamed
//! to `<dir>` once complete, so a killed or failed run never leaves a directory that looks
//! finished; running the same command again (same `--out`) resumes it. One run at a time per
//! directory ([`fpo_rundir::lock`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use fpo_rundir::lock::RunLock;

/// A run directory being written.
#[derive(Debug)]
pub struct RunDir {
    target: PathBuf,
    partial: PathBuf,
    _lock: RunLock,
}

/// The target directory exists already.
#[derive(Debug, thiserror::Error)]
#[error("{0} already exists: pass another --out, or remove it")]
pub struct AlreadyExists(pub PathBuf);

impl RunDir {
    /// Starts writing `target` (which must not exist). A `<target>.partial` left by a killed
    /// run is resumed: toy suites are rerun into it (they are deterministic and quick), LLM
    /// training continues from its checkpoints.
    pub fn create(target: &Path) -> anyhow::Result<Self> {
        if target.exists() {
            return Err(AlreadyExists(target.to_owned()).into());
        }
        let lock = RunLock::take(target, &crate::record::timestamp())?;
        if target.exists() {
            return Err(AlreadyExists(target.to_owned()).into());
        }
        let partial = fpo_rundir::lock::with_suffix(target, ".partial");
        if partial.exists() {
            eprintln!("resuming {}", partial.display());
        }
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        Ok(Self {
            target: target.to_owned(),
            partial,
            _lock: lock,
        })
    }

    /// Where files go while the run is written.
    pub fn path(&self) -> &Path {
        &self.partial
    }

    /// Renames the partial directory to its target.
    pub fn commit(self) -> anyhow::Result<PathBuf> {
        std::fs::rename(&self.partial, &self.target).with_context(|| {
            format!(
                "renaming {} to {}",
                self.partial.display(),
                self.target.display()
            )
        })?;
        Ok(self.target.clone())
    }
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = dir.join(format!(".{}.tmp", name.replace('/', "_")));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The progress bar of every long step: `label [=====>    ] pos/len unit, elapsed (eta) msg`.
pub fn progress(len: u64, unit: &str, label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{prefix:>10}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{elapsed}} (eta {{eta}}) {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// The progress bars of the library's long steps (`fpo::llm::evaluate::Progress`).
#[derive(Debug, Default)]
pub struct Bars(Option<indicatif::ProgressBar>);

impl fpo::llm::evaluate::Progress for Bars {
    fn start(&mut self, label: &str, len: usize) {
        self.0 = Some(progress(len as u64, "items", label));
    }

    fn tick(&mut self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}

/// Pretty JSON with a trailing newline.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<Vec<u8>> {
    Ok(fpo_rundir::to_json(value)?)
}
