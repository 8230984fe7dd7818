//! What the `fpo` binary's tests share.
#![allow(dead_code)]

pub mod judge;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository (the working directory of every `fpo` the tests run): found through the
/// `CARGO_MANIFEST_DIR` cargo sets when it runs the test, not the one the binary was compiled
/// with (clones that share a target directory may run each other's test binaries).
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("working directory"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A golden fixture's folder: `FPO_FIXTURES_DIR`, else `tests/fixtures` of the crate `krate`
/// (`runner`, `model`) of this checkout.
pub fn fixtures(krate: &str) -> PathBuf {
    let dir = std::env::var_os("FPO_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("crates").join(krate).join("tests/fixtures"));
    assert!(
        dir.is_dir(),
        "fixtures not found at {}: set FPO_FIXTURES_DIR",
        dir.display()
    );
    dir
}

/// Every file under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// `fpo ARGS` in the repository.
pub fn fpo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fpo"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

/// `fpo ARGS`, which must succeed.
pub fn ok(args: &[&str]) -> Output {
    let out = fpo(args);
    assert!(
        out.status.success(),
        "fpo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `text` as an experiment file (beside a copy of the shipped task files it may name),
/// runs it, and checks the failure: exit code 2, an error naming the file and `needle`, no
/// panic, and no run directory (not even a `.partial`).
pub fn assert_rejected(text: Option<&str>, extra: &[&str], needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.toml");
    if let Some(text) = text {
        std::fs::write(&file, text).unwrap();
        let tasks = tmp.path().join("tasks");
        std::fs::create_dir_all(&tasks).unwrap();
        for e in std::fs::read_dir(root().join("experiments/tasks")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, tasks.join(p.file_name().unwrap())).unwrap();
        }
    }
    let out_dir = tmp.path().join("run");
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = fpo(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    // A flag's error names the flag; a file's names the file.
    if !(needle.starts_with("--") || extra.contains(&"--variant")) {
        assert!(
            stderr.contains("bad.toml"),
            "error names the file: {stderr}"
        );
    }
    assert!(stderr.contains(needle), "error names `{needle}`: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a panic, not an error: {stderr}"
    );
    assert!(!out_dir.exists(), "a run directory was left behind");
    let partial = tmp.path().join("run.partial");
    assert!(!partial.exists(), "a partial run directory was left behind");
}

/// A shipped experiment file's text (`experiments/NAME`).
pub fn shipped(name: &str) -> String {
    std::fs::read_to_string(root().join("experiments").join(name)).unwrap()
}
