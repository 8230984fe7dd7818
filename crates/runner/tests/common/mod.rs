//! What the `fpo` binary's tests share.
#![allow(dead_code)]

use std::path::PathBuf;
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
