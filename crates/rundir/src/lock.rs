//! `<dir>.lock`: one run at a time per run directory. Created with `create_new`
//! (`O_CREAT|O_EXCL`, atomic on local file systems and on NFS from v3 on, where `flock` may not
//! hold), it names its holder (`pid P on host H since T`) and goes when the run ends. A lock
//! whose holder is on this host and no longer alive (a killed run) is taken over; one from
//! another host is refused, named, since its pid cannot be checked from here.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a run directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds it.
    #[error(
        "{path} is being written by another run ({holder}); wait for it, or pass another --out \
         (if that run is gone, remove {lock})"
    )]
    Held {
        /// The run directory.
        path: PathBuf,
        /// Who holds it, as its lock file says.
        holder: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// The folder that would hold it cannot be made (a file in its path, no permission).
    #[error("--out {path}: its folder cannot be made: {source}")]
    Folder {
        /// The run directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lock file could not be written or removed.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A held `<dir>.lock`, removed on drop.
#[derive(Debug)]
pub struct RunLock(PathBuf);

impl RunLock {
    /// Takes the lock of the run directory `target`, writing `pid P on host H since {since}`.
    pub fn take(target: &Path, since: &str) -> Result<Self, LockError> {
        let path = with_suffix(target, ".lock");
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| LockError::Folder {
                path: target.to_owned(),
                source,
            })?;
        }
        let host = hostname();
        let me = format!("pid {} on host {host} since {since}", std::process::id());
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(me.as_bytes()).map_err(io)?;
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    if !holder_is_gone(&holder, &host) {
                        return Err(LockError::Held {
                            path: target.to_owned(),
                            holder,
                            lock: path,
                        });
                    }
                    eprintln!(
                        "taking over {} from a run that is gone ({holder})",
                        path.display()
                    );
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(LockError::Held {
            path: target.to_owned(),
            holder: "another run took it as this one took it over".into(),
            lock: path,
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether a lock's holder is a process of this host that is no longer alive (Linux's
/// `/proc/<pid>`; elsewhere no holder is known to be gone).
fn holder_is_gone(holder: &str, host: &str) -> bool {
    Path::new("/proc/self").exists()
        && holder
            .strip_prefix("pid ")
            .and_then(|r| r.split_once(" on host "))
            .and_then(|(pid, rest)| {
                let (h, _) = rest.split_once(" since ")?;
                (h == host && pid.parse::<u32>().is_ok())
                    .then(|| !Path::new("/proc").join(pid).exists())
            })
            .unwrap_or(false)
}

/// This machine's name (Linux's `/proc/sys/kernel/hostname`, else `$HOSTNAME`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// `path` with `suffix` appended to its last component (`run` -> `run.lock`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
