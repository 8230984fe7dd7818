//! Where an experiment's relative paths resolve: the data folder and the judge's cache.

use std::path::{Path, PathBuf};

/// The data folder: `FPO_DATA_DIR`, else the `datasets/` folder of the checkout that holds
/// `near` (an experiment file) or the working directory: the first ancestor with
/// `datasets/SHA256SUMS`. Found at run time, so a binary built in another clone that shares the
/// target directory still reads this clone's data.
pub fn data_dir(near: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("FPO_DATA_DIR") {
        return Ok(PathBuf::from(d));
    }
    let cwd = std::env::current_dir().ok();
    let starts = near
        .and_then(|p| std::path::absolute(p).ok())
        .into_iter()
        .chain(cwd);
    for start in starts {
        if let Some(dir) = start
            .ancestors()
            .map(|a| a.join("datasets"))
            .find(|d| d.join("SHA256SUMS").is_file())
        {
            return Ok(dir);
        }
    }
    Err(
        "no data folder: run from a checkout of the project (it carries `datasets/`) or set \
         FPO_DATA_DIR to a copy of it"
            .into(),
    )
}

/// The judge's reply cache: `$FPO_CACHE_DIR/judge`, else `~/.cache/fpo/judge`.
pub(super) fn judge_cache_dir() -> PathBuf {
    std::env::var_os("FPO_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/fpo")))
        .unwrap_or_else(|| PathBuf::from(".cache/fpo"))
        .join("judge")
}
