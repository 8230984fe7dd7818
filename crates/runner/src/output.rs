//! Run directories, written atomically: everything goes into `<dir>.partial`, which is renamed
//! to `<dir>` once complete, so a killed or failed run never leaves a directory that looks
//! finished; running the same command again (same `--out`) resumes it.
//!
//! One run at a time per directory: `<dir>.lock`, created with `create_new` (`O_CREAT|O_EXCL`,
//! atomic on local file systems and on NFS from v3 on, where `flock` may not hold), names its
//! holder's host and pid, and goes when the run ends. A lock whose holder is on this host and no
//! longer alive (a killed run) is taken over; one from another host is refused, named.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// A run directory being written.
#[derive(Debug)]
pub struct RunDir {
    target: PathBuf,
    partial: PathBuf,
    _lock: Lock,
}

/// Another run holds the directory.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path} is being written by another run ({holder}); wait for it, or pass another --out \
     (if that run is gone, remove {lock})"
)]
pub struct Locked {
    /// The run directory.
    pub path: PathBuf,
    /// Who holds it: `pid P on host H since T`.
    pub holder: String,
    /// The lock file.
    pub lock: PathBuf,
}

/// `--out` cannot be made (a file in its path, no permission).
#[derive(Debug, thiserror::Error)]
#[error("--out {path}: its folder cannot be made: {source}")]
pub struct BadOut {
    /// The run directory asked for.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// `<dir>.lock`, removed on drop.
#[derive(Debug)]
struct Lock(PathBuf);

impl Lock {
    fn take(target: &Path) -> anyhow::Result<Self> {
        let path = with_suffix(target, ".lock");
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| BadOut {
                path: target.to_owned(),
                source,
            })?;
        }
        let host = hostname();
        let me = format!(
            "pid {} on host {host} since {}",
            std::process::id(),
            crate::record::timestamp()
        );
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(me.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let dead = holder
                        .strip_prefix("pid ")
                        .and_then(|r| r.split_once(" on host "))
                        .and_then(|(pid, rest)| {
                            let (h, _) = rest.split_once(" since ")?;
                            (h == host).then(|| !Path::new("/proc").join(pid).exists())
                        })
                        .unwrap_or(false);
                    if !dead || !Path::new("/proc/self").exists() {
                        return Err(Locked {
                            path: target.to_owned(),
                            holder,
                            lock: path,
                        }
                        .into());
                    }
                    eprintln!(
                        "taking over {} from a run that is gone ({holder})",
                        path.display()
                    );
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        anyhow::bail!(
            "{}: another run took the lock as this one took it over",
            path.display()
        )
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// This machine's name (Linux's `/proc/sys/kernel/hostname`, else `$HOSTNAME`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// `path` with `suffix` appended to its last component.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
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
        let lock = Lock::take(target)?;
        if target.exists() {
            return Err(AlreadyExists(target.to_owned()).into());
        }
        let partial = with_suffix(target, ".partial");
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
