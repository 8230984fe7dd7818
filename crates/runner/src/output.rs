//! Run directories, written atomically: everything goes into `<dir>.partial`, which is renamed
//! to `<dir>` once complete, so a killed run never leaves a directory that looks finished.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// A run directory being written.
#[derive(Debug)]
pub struct RunDir {
    target: PathBuf,
    partial: PathBuf,
    committed: bool,
}

/// The target directory exists already.
#[derive(Debug, thiserror::Error)]
#[error("{0} already exists: pass another --out, or remove it")]
pub struct AlreadyExists(pub PathBuf);

impl RunDir {
    /// Starts writing `target` (which must not exist). A stale `<target>.partial` from a killed
    /// run is removed first.
    pub fn create(target: &Path) -> anyhow::Result<Self> {
        if target.exists() {
            return Err(AlreadyExists(target.to_owned()).into());
        }
        let mut partial = target.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing stale {}", partial.display()))?;
        }
        std::fs::create_dir_all(&partial)
            .with_context(|| format!("creating {}", partial.display()))?;
        Ok(Self {
            target: target.to_owned(),
            partial,
            committed: false,
        })
    }

    /// Where files go while the run is written.
    pub fn path(&self) -> &Path {
        &self.partial
    }

    /// Renames the partial directory to its target.
    pub fn commit(mut self) -> anyhow::Result<PathBuf> {
        std::fs::rename(&self.partial, &self.target).with_context(|| {
            format!(
                "renaming {} to {}",
                self.partial.display(),
                self.target.display()
            )
        })?;
        self.committed = true;
        Ok(self.target.clone())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.partial);
        }
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

/// Pretty JSON with a trailing newline.
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(value)?;
    v.push(b'\n');
    Ok(v)
}
