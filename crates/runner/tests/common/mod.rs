//! What the `fpo` binary's tests share.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository (the working directory of every `fpo` the tests run).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
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
