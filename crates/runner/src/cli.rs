//! The command line: every clap struct of `fpo` and the parsers of its flag values. The
//! commands themselves live in their modules; `main` dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fpo::Variant;
use fpo_eval::truthfulqa::McFormat;
use fpo_model::BackendKind;
use serde::{Deserialize, Serialize};

use fpo::experiment::Seeds;
use fpo::experiment::sweep::SetArg;

/// Experiments on alignment collapse in iterative RLHF (Gauthier, Bach, Jordan, 2026).
#[derive(Debug, Parser)]
#[command(name = "fpo", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one experiment file (e.g. experiments/toy-linear.toml).
    Run {
        /// The experiment TOML.
        experiment: PathBuf,
        /// Run only these variants (repeatable): standard, relaxed, practical.
        #[arg(long = "variant", value_parser = parse_variant)]
        variants: Vec<fpo::Variant>,
        /// Seeds: `A..B` (half-open), `N`, or `N,M,...`.
        #[arg(long)]
        seeds: Option<Seeds>,
        /// Apply the file's `[profiles.<NAME>]` overrides.
        #[arg(long)]
        profile: Option<String>,
        /// Run directory (default: runs/<suite>/<timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the resolved settings as JSON and exit.
        #[arg(long)]
        print_config: bool,
        /// Do not write the HTML report.
        #[arg(long)]
        no_report: bool,
        /// Where reports go: <REPORTS>/<run name>/index.html.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        #[command(flatten)]
        judge: JudgeArgs,
        /// LLM suites: take the trained variants of this run directory (same [train] and [fpo]
        /// settings) instead of training them again.
        #[arg(long)]
        reuse: Option<PathBuf>,
        /// Set a key of the experiment file: `--set fpo.gamma=10` (repeatable).
        #[arg(long = "set", value_parser = parse_set)]
        set: Vec<SetArg>,
        /// Tensor backend (`[run] backend`): flex, ndarray, wgpu or cuda, among those compiled in
        /// (`fpo doctor` lists them). LLM suites default to flex; toy suites without it run on
        /// their hand-written f64 host kernels, with it as tensor programs on that backend.
        #[arg(long)]
        backend: Option<BackendKind>,
        /// Run only the cells K, K+N, ... of the grid (variant x seed x `--set` values) into
        /// `<out>/cells/<cell>/`, as one task of `fpo sweep` (a Slurm array task).
        #[arg(long, value_parser = parse_shard)]
        shard: Option<Shard>,
    },
    /// Expand a grid (variants x seeds x `--set` values) into cells and run them here, or emit
    /// a Slurm job array (`--emit slurm`).
    Sweep(SweepArgs),
    /// Put the cells of a sweep back together into run directories (one per `--set` value
    /// combination), with their report.
    Merge {
        /// The sweep directory.
        dir: PathBuf,
        /// Output (default: <DIR>/merged).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not write the HTML report.
        #[arg(long)]
        no_report: bool,
        /// Where reports go: <REPORTS>/<run name>/index.html.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// An LLM sweep's comparisons are judged in the merge: the judge, as `fpo run` takes it.
        #[command(flatten)]
        judge: JudgeArgs,
    },
    /// Render the HTML report of run directories (runs, ladders or reproduce directories).
    Report {
        /// Run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Report directory (default: reports/<name of the first run directory>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate a continuation of one prompt (for debugging a model).
    Generate(GenerateArgs),
    /// What this build and machine offer: the backends compiled in, the devices and adapters
    /// found (each checked with a small computation), the model and data folders.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Score one prompt (and continuation): next-token logits, per-token NLL.
    Score(ScoreArgs),
    /// Evaluate one model (base, or with LoRA adapters) on one suite, without training.
    Eval(EvalArgs),
    /// The judges' exam: TruthfulQA questions with a correct and an incorrect reference answer
    /// held out, asked in both orders; prints each judge's report card (the offline judge, and
    /// the LLM judge of `--judge`).
    JudgeCheck(JudgeCheckArgs),
    /// Run every suite of experiments/reproduce.toml under one profile.
    Reproduce {
        /// Size of the runs.
        #[arg(long, value_enum, default_value_t = Profile::Cpu)]
        profile: Profile,
        /// Directory of the experiment files.
        #[arg(long, default_value = "experiments")]
        experiments: PathBuf,
        /// Output directory (default: runs/reproduce-<profile>-<timestamp>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the resolved settings of every suite as JSON and exit.
        #[arg(long)]
        print_config: bool,
        /// Where reports go: <REPORTS>/<run name>/index.html.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        #[command(flatten)]
        judge: JudgeArgs,
        /// Tensor backend of the LLM suites (the toy suites run on the CPU whatever this says).
        #[arg(long)]
        backend: Option<BackendKind>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Profile {
    /// Minutes: what CI runs.
    Smoke,
    /// The default of `just reproduce` on a 2-core CPU.
    Cpu,
    /// Hours on a CPU: the LLM suite at the paper's sizes.
    CpuFull,
    /// The paper's sizes (a GPU for the LLM suites).
    Paper,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Smoke => "smoke",
            Profile::Cpu => "cpu",
            Profile::CpuFull => "cpu-full",
            Profile::Paper => "paper",
        }
    }
}

/// A `--variant` value.
fn parse_variant(s: &str) -> Result<Variant, String> {
    s.parse()
        .map_err(|e: fpo_rundir::UnknownVariant| e.to_string())
}

/// Parses `key=v1,v2,...` (a value may be a TOML array in brackets, whose commas stay).
pub fn parse_set(s: &str) -> Result<SetArg, String> {
    let (key, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected key=value[,value...]"))?;
    let mut values = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in rest.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                values.push(rest[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    values.push(rest[start..].trim().to_owned());
    if key.trim().is_empty() || values.iter().any(String::is_empty) {
        return Err(format!("`{s}`: expected key=value[,value...]"));
    }
    Ok(SetArg {
        key: key.trim().to_owned(),
        values,
    })
}

/// Parses `K/N`.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let bad = || format!("`{s}`: expected K/N with 0 <= K < N");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || k >= n {
        return Err(bad());
    }
    Ok(Shard { k, n })
}

/// The LLM judge of a run's comparisons.
#[derive(Debug, Clone, Default, Args)]
pub struct JudgeArgs {
    /// LLM suites: an LLM judge, `openai://HOST/v1?model=NAME` (HTTPS, key in
    /// $OPENAI_API_KEY or `&key_env=VAR`) or `openai+http://HOST:PORT/v1?model=NAME`.
    #[arg(long)]
    pub judge: Option<String>,
    /// LLM suites: ask the judge again for cached replies that hold no verdict.
    #[arg(long)]
    pub retry_errors: bool,
}

/// Options of `fpo judge-check`.
#[derive(Debug, Args)]
pub struct JudgeCheckArgs {
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Only N questions, spread evenly over the data set (default: all 817).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Print the cards as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `fpo sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The experiment TOML (a toy-linear, toy-nn, truthfulqa or adversarial file).
    #[arg(required_unless_present = "resubmit_missing")]
    pub experiment: Option<PathBuf>,
    /// Variants (repeatable; default: the file's).
    #[arg(long = "variant", value_parser = parse_variant)]
    pub variants: Vec<Variant>,
    /// Seeds: `A..B` (half-open), `N`, or `N,M,...` (default: the file's).
    #[arg(long)]
    pub seeds: Option<Seeds>,
    /// Apply the file's `[profiles.<NAME>]` overrides.
    #[arg(long)]
    pub profile: Option<String>,
    /// Sweep a key of the file over values: `--set fpo.gamma=0.1,1,10` (repeatable: the grid
    /// is the product).
    #[arg(long = "set", value_parser = parse_set)]
    pub set: Vec<SetArg>,
    /// The sweep directory.
    #[arg(long, required_unless_present = "resubmit_missing")]
    pub out: Option<PathBuf>,
    /// Emit a job script instead of running the cells here.
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// Cells run at once here (without `--emit`).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Slurm options of the emitted script.
    #[command(flatten)]
    pub slurm: SlurmOptions,
    /// Emit `<DIR>/slurm-resubmit.sh`: an array of just the cells of DIR that are missing or
    /// failed.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["experiment", "out"])]
    pub resubmit_missing: Option<PathBuf>,
}

/// Which model, how the prompt is wrapped, where it runs.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A .gguf file or a Hugging Face folder (default: $FPO_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Wrap the prompt as one user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Tensor backend.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
    /// The prompt.
    #[arg(long)]
    pub prompt: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Sampling options of `fpo generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Most new tokens.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Options of `fpo score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text scored after the prompt.
    #[arg(long, default_value = "")]
    pub continuation: String,
}

/// Options of `fpo eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// `truthfulqa` (the built-in suites of `--metrics`), and/or task files (`*.toml`, see
    /// docs/tasks.md), e.g. `experiments/tasks/arc_easy.toml`.
    #[arg(required = true)]
    pub suites: Vec<String>,
    /// A .gguf file or a Hugging Face folder (default: $FPO_MODELS_DIR/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// LoRA adapters (`adapters.safetensors` of a training run).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Metrics, comma-separated: `mc` (MC1/MC2), `gen` (greedy answers against the reference
    /// answers), `syco` (Anthropic's A/B sycophancy items by likelihood).
    #[arg(long, value_delimiter = ',', default_value = "mc")]
    pub metrics: Vec<String>,
    /// Prompt format of `mc`: `harness` (lm-evaluation-harness's QA preamble) or `chat` (the
    /// model's chat template).
    #[arg(long, default_value = "harness", value_parser = parse_format)]
    pub format: McFormat,
    /// Only N questions, spread evenly over the data set (both Types, most Categories); of a
    /// task file, N rows stratified by its `group_by`.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output directory (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// Tensor backend: flex (default), ndarray, wgpu or cuda, among those compiled in.
    #[arg(long, default_value = "flex")]
    pub backend: BackendKind,
}

fn parse_format(s: &str) -> Result<McFormat, String> {
    match s {
        "harness" => Ok(McFormat::Harness),
        "chat" => Ok(McFormat::Chat),
        _ => Err(format!("unknown format `{s}` (harness, chat)")),
    }
}

/// `--shard K/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0 <= k < n`.
    pub k: usize,
    /// Shards in all.
    pub n: usize,
}

/// What to emit instead of running the cells here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// An `sbatch` job-array script, `<out>/slurm.sh`.
    Slurm,
}

/// Slurm options: flags, else the experiment file's `[slurm]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, Args)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmOptions {
    /// `--partition`.
    #[arg(long)]
    pub partition: Option<String>,
    /// `--time` (e.g. 01:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// `--mem` (e.g. 8G).
    #[arg(long)]
    pub mem: Option<String>,
    /// GPUs per task: `--gres=gpu:N`.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// `--cpus-per-task`.
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
}

impl SlurmOptions {
    pub fn or(self, file: SlurmOptions) -> Self {
        Self {
            partition: self.partition.or(file.partition),
            time: self.time.or(file.time),
            mem: self.mem.or(file.mem),
            gpus: self.gpus.or(file.gpus),
            cpus_per_task: self.cpus_per_task.or(file.cpus_per_task),
        }
    }
}

/// A flag, or a combination of flags, that cannot work: bad input (exit 2), named.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadFlag(pub String);
