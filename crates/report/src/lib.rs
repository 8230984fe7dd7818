//! Self-contained HTML reports of run directories: one file, inline SVG plots (plotters), no
//! scripts, fonts or external resources; every string from a config or a model is escaped by
//! minijinja's HTML auto-escaping.
//!
//! Reports are built from the files of a run directory alone (`config.json`, `metrics.csv`,
//! `summary.json`, `ladder.json`, `run.json`), so `fpo report DIR` and the report written at the
//! end of `fpo run` are the same thing. This crate takes plain numbers: it never touches tensors.

mod data;
mod plots;
mod provenance;

use std::path::{Path, PathBuf};

use minijinja::{Environment, context};
use serde::Serialize;

pub use data::{Section, ToySection, name_of};

/// An error while reading a run directory or rendering its report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the run directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file of the run directory is not what its name promises.
    #[error(transparent)]
    RunDir(#[from] fpo_rundir::Error),
    /// The directory is not a run directory.
    #[error("{0} holds no run (no metrics.csv, ladder.json or reproduce.json)")]
    NotARun(PathBuf),
    /// A plot could not be drawn.
    #[error("plot {0}: {1}")]
    Plot(String, String),
    /// The template failed.
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

const TEMPLATE: &str = include_str!("../templates/report.html");

/// Renders the report of the given run directories (each a run, a ladder or a reproduce
/// directory) as one HTML page.
pub fn render(title: &str, dirs: &[PathBuf]) -> Result<String> {
    let mut sections = Vec::new();
    let mut reproduces = Vec::new();
    for dir in dirs {
        sections.extend(data::sections(dir)?);
        reproduces.extend(data::reproduce_index(dir)?);
    }
    render_sections(title, &sections, &reproduces)
}

/// Renders already-loaded sections, under an index of the reproduce runs they came from
/// (`reproduce.json` contents).
pub fn render_sections(
    title: &str,
    sections: &[Section],
    reproduces: &[data::ReproduceEntry],
) -> Result<String> {
    #[derive(Serialize)]
    struct Rendered<'a> {
        section: &'a Section,
        plots: Vec<plots::Plot>,
    }
    let rendered = sections
        .iter()
        .map(|s| {
            Ok(Rendered {
                section: s,
                plots: plots::for_section(s)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut env = Environment::new();
    // A figure that is not there (none: a share of no observation) or not finite prints as –.
    env.add_filter("f3", |v: Option<f64>| match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "–".to_owned(),
    });
    // Three significant digits, for figures that may be far from 1 (the RM step's response).
    env.add_filter("g3", |v: Option<f64>| match v {
        Some(v) if v.is_finite() && v != 0.0 && v.abs() < 1e-2 => format!("{v:.2e}"),
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "–".to_owned(),
    });
    env.add_template("report.html", TEMPLATE)?;
    let html = env.get_template("report.html")?.render(context! {
        title => title,
        sections => rendered,
        reproduces => reproduces,
        version => env!("CARGO_PKG_VERSION"),
    })?;
    Ok(html)
}

/// Renders the report of `dirs` into `out/index.html`, atomically.
pub fn write(title: &str, dirs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    let html = render(title, dirs)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Read { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let tmp = out.join(".index.html.tmp");
    std::fs::write(&tmp, html).map_err(io(&tmp))?;
    let target = out.join("index.html");
    std::fs::rename(&tmp, &target).map_err(io(&target))?;
    Ok(target)
}
