//! Sweeps: `fpo sweep` expands a grid (variant x seed x `--set` values) into cells, runs them
//! locally or emits a Slurm job array; `fpo run --shard K/N` runs every cell whose index is K
//! modulo N (a Slurm array task: `--shard $SLURM_ARRAY_TASK_ID/<cells>` runs exactly one);
//! `fpo merge` puts the cells of each `--set` combination back together into the run
//! directory a single `fpo run` of that grid writes, byte for byte but for `run.json`. The grid
//! itself, and which cells an LLM suite's base model needs, is `fpo::experiment::sweep`'s.
//!
//! Layout of a sweep directory: `sweep.json` (the grid and its cells), `cells/<cell>/` (one
//! run directory per cell, written atomically like any run), `slurm.sh` and `logs/` with
//! `--emit slurm`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use fpo::Variant;
use fpo::experiment::sweep::{Cell, Combination, Grid, Job, SetArg, base_key, single};
use fpo::experiment::{Resolved, Seeds};
use fpo::llm::reuse;
use fpo_rundir::{ActionRow, RunInfo, files, metrics, read_json, read_jsonl};
use serde::{Deserialize, Serialize};

use crate::cli::{BadFlag, Emit, JudgeArgs, Shard, SlurmOptions, SweepArgs};
use crate::llm_run::{self, Part};
use crate::output::{RunDir, json, write_atomic};
use crate::record;

/// `sweep.json`: the grid and its cells, and the Slurm options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepFile {
    /// The grid.
    #[serde(flatten)]
    pub grid: Grid,
    /// Slurm options (with `--emit slurm`).
    pub slurm: SlurmOptions,
}

/// The run directory of `cell` in the sweep directory `dir`.
fn cell_dir(dir: &Path, cell: &Cell) -> PathBuf {
    dir.join("cells").join(&cell.name)
}

impl SweepFile {
    /// The cells of `dir` without a finished run directory.
    fn missing(&self, dir: &Path) -> Vec<&Cell> {
        self.grid
            .cells
            .iter()
            .filter(|c| !cell_dir(dir, c).join(files::SUMMARY).is_file())
            .collect()
    }

    /// The `fpo run` arguments that expand this grid (before `--shard` and `--out`).
    fn run_args(&self) -> Vec<String> {
        let g = &self.grid;
        let mut a = vec!["run".to_owned(), g.experiment.display().to_string()];
        if let Some(p) = &g.profile {
            a.extend(["--profile".into(), p.clone()]);
        }
        for v in &g.variants {
            a.extend(["--variant".into(), v.to_string()]);
        }
        let seeds: Vec<String> = g.seeds.iter().map(u64::to_string).collect();
        a.extend(["--seeds".into(), seeds.join(",")]);
        for s in &g.set {
            a.extend(["--set".into(), format!("{}={}", s.key, s.values.join(","))]);
        }
        a
    }
}

fn read_sweep(dir: &Path) -> anyhow::Result<SweepFile> {
    let path = dir.join("sweep.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        BadFlag(format!(
            "{} is not a sweep directory (no {}: {e})",
            dir.display(),
            path.display()
        ))
    })?;
    Ok(serde_json::from_str(&text).map_err(|e| BadFlag(format!("{}: {e}", path.display())))?)
}

/// A shell word.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The `sbatch` script of the given cells of the sweep in `dir`.
fn slurm_script(file: &SweepFile, dir: &Path, cells: &[&Cell]) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("locating the fpo binary")?;
    let dir = std::path::absolute(dir)?;
    let indices: Vec<String> = cells.iter().map(|c| c.index.to_string()).collect();
    let o = &file.slurm;
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!(
        "#SBATCH --job-name=fpo-sweep\n#SBATCH --array={}\n#SBATCH --output={}/logs/cell-%a.out\n",
        indices.join(","),
        dir.display()
    ));
    if let Some(p) = &o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    if let Some(t) = &o.time {
        s.push_str(&format!("#SBATCH --time={t}\n"));
    }
    if let Some(m) = &o.mem {
        s.push_str(&format!("#SBATCH --mem={m}\n"));
    }
    if let Some(g) = o.gpus.filter(|g| *g > 0) {
        s.push_str(&format!("#SBATCH --gres=gpu:{g}\n"));
    }
    if let Some(c) = o.cpus_per_task {
        s.push_str(&format!("#SBATCH --cpus-per-task={c}\n"));
    }
    s.push_str(&format!(
        "# {} cells of {}; task K runs cell K into {}/cells/<cell>.\nset -euo pipefail\ncd {}\n",
        cells.len(),
        file.grid.cells.len(),
        dir.display(),
        quote(&file.grid.workdir.display().to_string())
    ));
    let args: Vec<String> = file.run_args().iter().map(|a| quote(a)).collect();
    s.push_str(&format!(
        "exec {} {} --shard \"$SLURM_ARRAY_TASK_ID/{}\" --no-report --out {}\n",
        quote(&exe.display().to_string()),
        args.join(" "),
        file.grid.cells.len(),
        quote(&dir.display().to_string())
    ));
    Ok(s)
}

fn write_script(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("logs"))?;
    write_atomic(dir, name, text.as_bytes())?;
    let path = dir.join(name);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(path)
}

/// Runs `fpo sweep`; returns what to print.
pub fn sweep(args: SweepArgs) -> anyhow::Result<String> {
    if let Some(dir) = &args.resubmit_missing {
        let file = read_sweep(dir)?;
        let missing = file.missing(dir);
        if missing.is_empty() {
            return Ok(format!("every cell of {} is complete", dir.display()));
        }
        let script = slurm_script(&file, dir, &missing)?;
        let path = write_script(dir, "slurm-resubmit.sh", &script)?;
        return Ok(format!(
            "{} ({} missing cells: {})",
            path.display(),
            missing.len(),
            missing
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let (Some(experiment), Some(out)) = (&args.experiment, &args.out) else {
        bail!("an experiment file and --out are required");
    };
    let file_slurm = slurm_table(experiment)?;
    let file = SweepFile {
        grid: Grid::new(
            experiment,
            args.profile.clone(),
            &args.variants,
            args.seeds.clone(),
            args.set.clone(),
        )?,
        slurm: args.slurm.clone().or(file_slurm),
    };
    std::fs::create_dir_all(out.join("cells"))
        .with_context(|| format!("creating {}", out.display()))?;
    match read_sweep(out) {
        Ok(existing) if existing.grid.cells != file.grid.cells => bail!(
            "{} holds another sweep: pass another --out, or remove it",
            out.display()
        ),
        _ => write_atomic(out, "sweep.json", &json(&file)?)?,
    }
    if args.emit == Some(Emit::Slurm) {
        let cells: Vec<&Cell> = file.grid.cells.iter().collect();
        let path = write_script(out, "slurm.sh", &slurm_script(&file, out, &cells)?)?;
        return Ok(format!(
            "{} ({} cells): submit with `sbatch {}`, then `fpo merge {}`",
            path.display(),
            cells.len(),
            path.display(),
            out.display()
        ));
    }
    run_locally(&file, out, args.jobs.max(1))?;
    Ok(format!(
        "{} cells in {}: `fpo merge {}` puts them together",
        file.grid.cells.len(),
        out.display(),
        out.display()
    ))
}

/// The `[slurm]` table of an experiment file (empty when absent).
fn slurm_table(path: &Path) -> anyhow::Result<SlurmOptions> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    match doc.get("slurm") {
        None => Ok(SlurmOptions::default()),
        Some(v) => v
            .clone()
            .try_into()
            .with_context(|| format!("{}: key `slurm`", path.display())),
    }
}

/// Runs the cells here, `jobs` processes at a time (each `fpo run --shard K/N`, as a Slurm
/// array task would).
fn run_locally(file: &SweepFile, dir: &Path, jobs: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let n = file.grid.cells.len();
    let bar = crate::output::progress(n as u64, "cells", "sweep");
    let mut todo: Vec<&Cell> = file.missing(dir);
    bar.inc((n - todo.len()) as u64);
    todo.reverse();
    let mut running: Vec<(&Cell, std::process::Child)> = Vec::new();
    let mut failed = Vec::new();
    std::fs::create_dir_all(dir.join("logs"))?;
    while !todo.is_empty() || !running.is_empty() {
        while running.len() < jobs
            && let Some(cell) = todo.pop()
        {
            let log =
                std::fs::File::create(dir.join("logs").join(format!("cell-{}.out", cell.index)))?;
            let child = std::process::Command::new(&exe)
                .current_dir(&file.grid.workdir)
                .args(file.run_args())
                .args([
                    "--shard",
                    &format!("{}/{n}", cell.index),
                    "--no-report",
                    "--out",
                ])
                .arg(std::path::absolute(dir)?)
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting a cell")?;
            running.push((cell, child));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut i = 0;
        while i < running.len() {
            if let Some(status) = running[i].1.try_wait()? {
                let (cell, _) = running.swap_remove(i);
                if !status.success() {
                    failed.push(cell.name.clone());
                }
                bar.inc(1);
            } else {
                i += 1;
            }
        }
    }
    bar.finish_and_clear();
    if !failed.is_empty() {
        bail!(
            "{} cells failed ({}); their logs are in {}/logs",
            failed.len(),
            failed.join(", "),
            dir.display()
        );
    }
    Ok(())
}

/// `fpo run --shard K/N`: the cells of the grid whose index is K modulo N, each into
/// `<out>/cells/<cell>/` (a finished one is skipped).
pub fn run_shard(
    experiment: &Path,
    profile: Option<String>,
    variants: Vec<Variant>,
    seeds: Option<Seeds>,
    set: Vec<SetArg>,
    shard: Shard,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let file = SweepFile {
        grid: Grid::new(experiment, profile, &variants, seeds, set)?,
        slurm: SlurmOptions::default(),
    };
    match read_sweep(out) {
        Ok(existing) if existing.grid.cells != file.grid.cells => {
            bail!("{} was made by another sweep than this grid", out.display())
        }
        Ok(_) => {}
        Err(_) => {
            std::fs::create_dir_all(out)?;
            write_atomic(out, "sweep.json", &json(&file)?)?;
        }
    }
    let mut done = Vec::new();
    let grid = &file.grid;
    for cell in grid.cells.iter().filter(|c| c.index % shard.n == shard.k) {
        let target = cell_dir(out, cell);
        if target.join("summary.json").is_file() {
            continue;
        }
        let (exp, part) = match cell.job {
            Job::Train { variant, seed } => {
                let exp = grid.load(&[variant], Some(Seeds(vec![seed])), &cell.set, None)?;
                (exp, Part::Trained)
            }
            Job::Base => {
                let seeds = Some(Seeds(grid.seeds.clone()));
                (
                    grid.load(&grid.variants, seeds, &cell.set, None)?,
                    Part::Base,
                )
            }
        };
        let dir = RunDir::create(&target)?;
        record::run_experiment(&exp, dir.path(), None, part)
            .with_context(|| format!("cell {} ({})", cell.index, cell.name))?;
        done.push(dir.commit()?);
    }
    Ok(done)
}

/// `fpo merge DIR`: the cells of each `--set` combination into one run directory, as a single
/// `fpo run` of that grid writes it; `out` (default `DIR/merged`) is written only when every
/// cell is there. An LLM suite's comparisons are judged here, by `judge` (or the file's judge).
/// Returns the run directories written.
pub fn merge(dir: &Path, out: Option<&Path>, judge: &JudgeArgs) -> anyhow::Result<Vec<PathBuf>> {
    let file = read_sweep(dir)?;
    let missing = file.missing(dir);
    if !missing.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|c| {
                let partial = dir.join("cells").join(format!("{}.partial", c.name));
                format!(
                    "{} (cell {}{})",
                    c.name,
                    c.index,
                    if partial.exists() {
                        ", failed or interrupted"
                    } else {
                        ", missing"
                    }
                )
            })
            .collect();
        bail!(
            "{} of {} cells are not complete: {}; rerun them (`fpo sweep --resubmit-missing {}` emits a Slurm array of just those)",
            missing.len(),
            file.grid.cells.len(),
            names.join(", "),
            dir.display()
        );
    }
    let target = out.map_or_else(|| dir.join("merged"), Path::to_owned);
    let grid = &file.grid;
    let combos = grid.combinations();
    let seeds = Some(Seeds(grid.seeds.clone()));
    let judge_flags = judge.judge.clone().map(|j| (j, judge.retry_errors));
    let exps = combos
        .iter()
        .map(|combo| grid.load(&grid.variants, seeds.clone(), combo, judge_flags.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let resolved = exps
        .iter()
        .map(|e| single(e, &grid.experiment))
        .collect::<Result<Vec<_>, _>>()?;
    if judge.judge.is_some() && !resolved[0].suite.is_llm() {
        bail!(BadFlag("--judge applies to the LLM suites".into()));
    }
    let bases = grid.base_cells(&resolved);
    let run_dir = RunDir::create(&target)?;
    let mut written = Vec::new();
    for ((combo, resolved), base) in combos.iter().zip(resolved).zip(bases) {
        let name: String = combo
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("-");
        let (merged, path) = if combos.len() == 1 {
            (run_dir.path().to_owned(), target.clone())
        } else {
            (run_dir.path().join(&name), target.join(&name))
        };
        std::fs::create_dir_all(&merged)?;
        let started = std::time::Instant::now();
        let (runs, infos) = if resolved.suite.is_llm() {
            merge_llm(grid, dir, resolved, combo, base, &merged)?
        } else {
            merge_toy(grid, dir, resolved, combo, &merged)?
        };
        let merge_s = started.elapsed().as_secs_f64();
        let info = record::merged_run_info(resolved, dir, runs, &infos, merge_s);
        write_atomic(&merged, files::RUN_INFO, &json(&info)?)?;
        written.push(path);
    }
    run_dir.commit()?;
    Ok(written)
}

/// A toy combination: the cells' metrics and actions, summarised as one run. Returns the runs
/// taken and the cells' `run.json`s.
fn merge_toy(
    grid: &Grid,
    dir: &Path,
    resolved: &Resolved,
    combo: &Combination,
    merged: &Path,
) -> anyhow::Result<(usize, Vec<RunInfo>)> {
    let mut rows = Vec::new();
    let mut actions = Vec::new();
    let mut infos = Vec::new();
    for (penalty, seed) in crate::toys::grid(resolved)?.jobs() {
        let cell = grid.train_cell(combo, penalty.variant, seed);
        let cdir = cell_dir(dir, cell);
        let label = penalty.label();
        let cell_rows = metrics::read(&cdir.join(files::METRICS))?;
        if let Some(r) = cell_rows
            .iter()
            .find(|r| r.variant != label || r.seed != seed)
        {
            bail!(
                "{}: a row of `{}` seed {} in the cell of `{label}` seed {seed}",
                cdir.join(files::METRICS).display(),
                r.variant,
                r.seed
            );
        }
        rows.extend(cell_rows);
        if resolved.run.action_seeds().contains(&seed) {
            let path = cdir.join(files::ACTIONS);
            actions.extend(read_jsonl::<ActionRow>(&path)?);
        }
        infos.push(read_json::<RunInfo>(&cdir.join(files::RUN_INFO))?);
    }
    write_atomic(merged, files::CONFIG, &json(resolved)?)?;
    let summary = crate::toys::summarize(resolved, &rows);
    record::write_toy(merged, &rows, &actions, &summary)?;
    Ok((infos.len(), infos))
}

/// An LLM combination (`base`: the cell that scored its base model): the cells' trained
/// folders, reward-model fit and evaluation records gathered into `merged`, then the whole run
/// over them, which finds every variant trained and every model scored (it trains and scores
/// nothing) and adds what needs models of several cells: the comparisons (offline judge, and
/// the LLM judge's verdicts, cached), the claims and `summary.json`. Returns the runs taken and
/// the cells' `run.json`s.
fn merge_llm(
    grid: &Grid,
    dir: &Path,
    resolved: &Resolved,
    combo: &Combination,
    base: Option<&Cell>,
    merged: &Path,
) -> anyhow::Result<(usize, Vec<RunInfo>)> {
    let mut cells = Vec::new();
    for &seed in &resolved.run.seeds.0 {
        for &variant in &resolved.run.variants {
            cells.push(grid.train_cell(combo, variant, seed));
        }
    }
    let runs = cells.len();
    if base_key(resolved).is_some() {
        cells.push(base.context("no cell of the sweep evaluates the base model")?);
    }
    let cells: Vec<reuse::Cell> = cells
        .iter()
        .map(|c| reuse::Cell {
            dir: cell_dir(dir, c),
            trained: match c.job {
                Job::Train { variant, seed } => Some((variant, seed)),
                Job::Base => None,
            },
        })
        .collect();
    let infos = cells
        .iter()
        .map(|c| read_json::<RunInfo>(&c.dir.join(files::RUN_INFO)))
        .collect::<Result<Vec<_>, _>>()?;
    reuse::gather(&cells, merged)?;
    llm_run::run(resolved, merged, None, Part::Whole)?;
    Ok((runs, infos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_set, parse_shard};

    #[test]
    fn set_and_shard_parse() {
        assert_eq!(
            parse_set("fpo.gamma=0.1, 1,10").unwrap(),
            SetArg {
                key: "fpo.gamma".into(),
                values: vec!["0.1".into(), "1".into(), "10".into()]
            }
        );
        assert_eq!(
            parse_set("rm.hidden=[32,32],[64,64]").unwrap().values,
            ["[32,32]", "[64,64]"]
        );
        assert!(parse_set("gamma").is_err() && parse_set("a=1,").is_err());
        assert_eq!(parse_shard("3/8").unwrap(), Shard { k: 3, n: 8 });
        assert!(parse_shard("8/8").is_err() && parse_shard("x/2").is_err());
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("fpo.gamma=1,2"), "fpo.gamma=1,2");
    }
}
