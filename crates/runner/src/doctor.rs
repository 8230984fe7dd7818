//! `fpo doctor`: what this build and this machine offer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fpo_model::backend::{BackendProbe, probe};
use fpo_model::llm::{DEFAULT_ENCODER, DEFAULT_LLM, models_dir};
use fpo_model::{BackendKind, CpuPath};
use serde::Serialize;

/// A device's result may differ from the host's `f64` by rounding only; more is a broken device.
const CHECK_TOLERANCE: f64 = 1e-4;

#[derive(Debug, Serialize)]
struct Report {
    fpo_version: &'static str,
    burn_version: &'static str,
    backends: Vec<BackendProbe>,
    cpu_kernels: CpuKernels,
    models_dir: PathBuf,
    models: Vec<ModelFile>,
    data_dir: Result<PathBuf, String>,
}

/// The host kernels' path: the one that runs (or `FPO_CPU`'s refusal) and those this CPU has.
#[derive(Debug, Serialize)]
struct CpuKernels {
    active: Result<&'static str, String>,
    supported: Vec<&'static str>,
}

impl CpuKernels {
    fn here() -> Self {
        Self {
            active: CpuPath::from_env()
                .map(CpuPath::name)
                .map_err(|e| e.to_string()),
            supported: CpuPath::supported()
                .into_iter()
                .map(CpuPath::name)
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
struct ModelFile {
    name: &'static str,
    path: PathBuf,
    /// Bytes on disk (a folder: the sum of its files); absent when missing.
    bytes: Option<u64>,
}

fn size_of(path: &Path) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return Some(meta.len());
    }
    let entries = std::fs::read_dir(path).ok()?;
    Some(entries.flatten().filter_map(|e| size_of(&e.path())).sum())
}

/// Whether a compiled-in backend failed: no device, a panic, or a wrong result.
fn failed(p: &BackendProbe) -> bool {
    p.compiled_in && !p.check_max_abs_diff.is_some_and(|d| d <= CHECK_TOLERANCE)
}

/// Prints the report; exit 1 when a compiled-in backend fails its check or `FPO_CPU` names a
/// path this CPU lacks.
pub fn run(as_json: bool) -> anyhow::Result<ExitCode> {
    let dir = models_dir();
    let report = Report {
        fpo_version: env!("CARGO_PKG_VERSION"),
        burn_version: fpo_model::BURN_VERSION,
        backends: BackendKind::ALL.into_iter().map(probe).collect(),
        cpu_kernels: CpuKernels::here(),
        models: [("policy", DEFAULT_LLM), ("encoder", DEFAULT_ENCODER)]
            .into_iter()
            .map(|(name, file)| ModelFile {
                name,
                path: dir.join(file),
                bytes: size_of(&dir.join(file)),
            })
            .collect(),
        models_dir: dir,
        data_dir: fpo::experiment::data_dir(None),
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(
        if report.backends.iter().any(failed) || report.cpu_kernels.active.is_err() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn print_text(r: &Report) {
    println!("fpo {} (burn {})", r.fpo_version, r.burn_version);
    println!("\nbackends:");
    for p in &r.backends {
        let state = match (p.compiled_in, p.check_max_abs_diff, failed(p)) {
            (false, _, _) => "not compiled in".to_owned(),
            (true, Some(d), false) => format!("ok (matmul + softmax vs host f64: {d:.1e})"),
            (true, Some(d), true) => {
                format!("WRONG RESULT (matmul + softmax vs host f64: {d:.1e})")
            }
            (true, None, _) => "FAILED".to_owned(),
        };
        println!("  {:8} {state}", p.backend.name());
        for d in &p.devices {
            println!("           device: {d}");
        }
        if p.compiled_in
            && let Some(e) = &p.error
        {
            println!("           {e}");
        }
    }
    let k = &r.cpu_kernels;
    let has = k.supported.join(", ");
    match &k.active {
        Ok(p) => println!("\ncpu kernels: {p} (this CPU has: {has}; `FPO_CPU` forces one)"),
        Err(e) => println!("\ncpu kernels: REFUSED: {e}"),
    }
    println!(
        "\nmodels ({}, `just models` fills it):",
        r.models_dir.display()
    );
    for m in &r.models {
        match m.bytes {
            Some(b) => println!(
                "  {:8} {} ({:.1} MB)",
                m.name,
                m.path.display(),
                b as f64 / 1e6
            ),
            None => println!("  {:8} {} MISSING", m.name, m.path.display()),
        }
    }
    match &r.data_dir {
        Ok(d) => println!("\ndata: {}", d.display()),
        Err(e) => println!("\ndata: {e}"),
    }
}
