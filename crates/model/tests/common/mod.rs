//! Helpers shared by the model crate's tests.
#![allow(dead_code)]

pub mod tiny;

use std::path::PathBuf;

/// The golden fixtures: `FPO_FIXTURES_DIR`, else this crate's `tests/fixtures`, found through
/// the `CARGO_MANIFEST_DIR` cargo sets when it runs the test (not the one the binary was compiled
/// with: clones that share a target directory may run each other's test binaries).
pub fn fixtures() -> PathBuf {
    let dir = match std::env::var_os("FPO_FIXTURES_DIR") {
        Some(d) => PathBuf::from(d),
        None => package_dir().join("tests/fixtures"),
    };
    assert!(
        dir.is_dir(),
        "fixtures not found at {}: set FPO_FIXTURES_DIR",
        dir.display()
    );
    dir
}

/// The package being tested: `CARGO_MANIFEST_DIR` at run time, else the working directory
/// (cargo runs tests in the package's folder).
pub fn package_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("working directory"))
}

/// A JSON fixture.
pub fn fixture_json(name: &str) -> serde_json::Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A GGUF v3 writer for tests.
pub struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
    n_tensors: u64,
}

impl Writer {
    pub fn new() -> Self {
        Self {
            kv: Vec::new(),
            n_kv: 0,
            infos: Vec::new(),
            data: Vec::new(),
            n_tensors: 0,
        }
    }
    pub fn string(buf: &mut Vec<u8>, s: &str) {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s.as_bytes());
    }
    pub fn kv_u32(&mut self, k: &str, v: u32) {
        Self::string(&mut self.kv, k);
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
    }
    pub fn kv_f32(&mut self, k: &str, v: f32) {
        Self::string(&mut self.kv, k);
        self.kv.extend(6u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
    }
    pub fn kv_str(&mut self, k: &str, v: &str) {
        Self::string(&mut self.kv, k);
        self.kv.extend(8u32.to_le_bytes());
        Self::string(&mut self.kv, v);
        self.n_kv += 1;
    }
    pub fn kv_strs(&mut self, k: &str, v: &[&str]) {
        Self::string(&mut self.kv, k);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for s in v {
            Self::string(&mut self.kv, s);
        }
        self.n_kv += 1;
    }
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, bytes: &[u8]) {
        while !self.data.len().is_multiple_of(32) {
            self.data.push(0);
        }
        Self::string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.n_tensors += 1;
    }
    pub fn finish(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(self.kv);
        out.extend(self.infos);
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend(self.data);
        out
    }
}
