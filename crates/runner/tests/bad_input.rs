//! Bad input, class by class: each case exits 2 with a message naming the culprit (the file and
//! its key, or the flag), without a panic, and leaves no run directory, not even a `.partial`.
//! Every case here once ran, aborted or panicked instead.

mod common;

use common::{assert_rejected, root, shipped};

/// Values that are not numbers: TOML's `nan` and `inf`, in the file or through `--set`.
#[test]
fn non_finite_values_are_refused_wherever_they_come_from() {
    let linear = shipped("toy-linear.toml");
    for (text, extra, key) in [
        (
            linear.replace("target_value = 2.0", "target_value = nan"),
            &[][..],
            "env.target_value",
        ),
        (
            linear.replace("utility_scale = 10.0", "utility_scale = inf"),
            &[][..],
            "env.utility_scale",
        ),
        (linear.clone(), &["--set", "rm.lr=-inf"][..], "rm.lr"),
        (
            shipped("toy-nn.toml"),
            &["--set", "env.ideal_value=nan"][..],
            "env.ideal_value",
        ),
    ] {
        assert_rejected(Some(&text), extra, key);
    }
}

/// Sizes that cannot run: zero where at least one is needed, and sizes whose allocation would
/// abort the process (a run must refuse them before it allocates).
#[test]
fn sizes_out_of_range_are_refused_before_anything_allocates() {
    let nn = shipped("toy-nn.toml");
    for (extra, key) in [
        (
            &["--set", "rm.samples_per_iteration=0"][..],
            "rm.samples_per_iteration",
        ),
        (&["--set", "rm.hidden=100000000000"][..], "rm.hidden"),
        (&["--set", "env.dim=100000000000"][..], "env.dim"),
    ] {
        assert_rejected(Some(&nn), extra, key);
    }
    assert_rejected(
        Some(&shipped("toy-linear.toml")),
        &["--set", "env.dim=100000000000"],
        "env.dim",
    );
    for seeds in ["0..100000000000", "5..5"] {
        assert_rejected(Some(&nn), &["--seeds", seeds], "--seeds");
    }
    assert_rejected(
        Some(&nn.replace("seeds = \"0..20\"", "seeds = \"0..100000000000\"")),
        &[],
        "run.seeds",
    );
}

/// A profile the file does not define is an error that lists the ones it does (it used to be
/// ignored, running the base settings under the wrong name).
#[test]
fn an_unknown_profile_is_refused_and_the_known_ones_named() {
    assert_rejected(
        Some(&shipped("toy-nn.toml")),
        &["--profile", "nosuch"],
        "profiles.nosuch",
    );
    assert_rejected(
        Some(&shipped("toy-linear.toml")),
        &["--profile", "cpu"],
        "(this file defines: paper, smoke)",
    );
}

/// The reward model's scale settings out of range, named by key before any work.
#[test]
fn reward_model_scale_settings_out_of_range_are_refused() {
    for (set, key) in [
        ("train.rm.feature_scale=0", "train.rm.feature_scale"),
        ("train.rm.feature_scale=nan", "train.rm.feature_scale"),
        ("train.rm.head_steps=0", "train.rm.head_steps"),
        ("train.rm.head_hidden=5000", "train.rm.head_hidden"),
        ("train.rm.features=cubed", "train.rm.features"),
        ("train.rm.backbone=deberta", "train.rm.backbone"),
    ] {
        assert_rejected(
            Some(&shipped("truthfulqa.toml")),
            &["--profile", "smoke", "--set", set],
            key,
        );
    }
}

/// `--retry-errors` with no judge to ask.
#[test]
fn retry_errors_without_a_judge_is_refused() {
    assert_rejected(
        Some(&shipped("truthfulqa.toml")),
        &["--profile", "smoke", "--retry-errors"],
        "--retry-errors",
    );
}

/// A second run on the same `--out` while the first holds it is refused, naming the holder; a
/// lock left by a run that is gone (same host, pid not alive) is taken over.
#[test]
fn one_run_at_a_time_per_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let lock = tmp.path().join("run.lock");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let live = format!(
        "pid {} on host {} since now",
        std::process::id(),
        host.trim()
    );
    std::fs::write(&lock, &live).unwrap();
    let file = root().join("experiments/toy-linear.toml");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--profile",
        "smoke",
        "--no-report",
        "--out",
        out.to_str().unwrap(),
    ];
    let refused = common::fpo(&args);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&live) && stderr.contains("run.lock"),
        "{stderr}"
    );
    assert!(!out.exists() && !tmp.path().join("run.partial").exists());
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        live,
        "the holder's lock kept"
    );
    // pid_max is at most 2^22 on Linux: this pid is never alive.
    std::fs::write(
        &lock,
        format!("pid 99999999 on host {} since then", host.trim()),
    )
    .unwrap();
    common::ok(&args);
    assert!(out.join("summary.json").is_file());
    assert!(!lock.exists(), "the lock goes with the run");
}

/// Folders and paths that cannot be a run's: exit 2, named.
#[test]
fn a_folder_that_is_no_run_and_an_out_under_a_file_are_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under = file.join("run");
    let toy = root().join("experiments/toy-linear.toml");
    for (args, needle) in [
        (vec!["report", tmp.path().to_str().unwrap()], "holds no run"),
        (
            vec!["merge", tmp.path().to_str().unwrap()],
            "is not a sweep directory",
        ),
        (
            vec![
                "run",
                toy.to_str().unwrap(),
                "--profile",
                "smoke",
                "--out",
                under.to_str().unwrap(),
            ],
            "--out",
        ),
    ] {
        let out = common::fpo(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    // A run directory whose summary.json is broken.
    let run = tmp.path().join("broken");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("config.json"),
        r#"{"kind": "single", "suite": "toy-linear"}"#,
    )
    .unwrap();
    std::fs::write(
        run.join("metrics.csv"),
        "variant,seed,iteration,signal,noise,true_utility,proxy_reward,penalty\n",
    )
    .unwrap();
    std::fs::write(run.join("summary.json"), "{ not json").unwrap();
    let out = common::fpo(&[
        "report",
        run.to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("summary.json"), "{stderr}");
}

/// The LLM suite's files are read before any work: the model's header, metadata and tensor
/// directory, the encoder's header, every prompt and pair line, and the LoRA targets (each was
/// found only after the run directory existed, or after both models had loaded).
#[test]
fn llm_inputs_are_checked_before_the_run_directory_exists() {
    let models = fpo_model::llm::models_dir();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = std::fs::read(models.join(fpo_model::llm::DEFAULT_LLM)).unwrap();
    let truncated = tmp.path().join("truncated.gguf");
    std::fs::write(&truncated, &gguf[..gguf.len() / 2]).unwrap();
    let encoder = tmp.path().join("encoder");
    std::fs::create_dir_all(&encoder).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(models.join("all-MiniLM-L6-v2").join(f), encoder.join(f)).unwrap();
    }
    let mut header = 200u64.to_le_bytes().to_vec();
    header.extend(br#"{"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [30522, 384], "data_offsets": [0, 46881792]}}"#);
    header.resize(8 + 200 + 64, b' ');
    std::fs::write(encoder.join("model.safetensors"), &header).unwrap();
    let bad_line = tmp.path().join("bad-line.jsonl");
    std::fs::write(
        &bad_line,
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \n",
    )
    .unwrap();
    let few = tmp.path().join("few.jsonl");
    std::fs::write(&few, "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n").unwrap();
    let set = |k: &str, p: &std::path::Path| format!("{k}={}", p.display());
    let text = shipped("truthfulqa.toml");
    for (value, needles) in [
        (
            set("train.model", &truncated),
            vec!["train.model", "truncated"],
        ),
        (
            set("train.rm.encoder", &encoder),
            vec!["train.rm.encoder", "model.safetensors"],
        ),
        (
            set("train.prompts", &bad_line),
            vec!["train.prompts", "bad-line.jsonl"],
        ),
        (
            set("train.prompts", &few),
            vec!["train.prompts", "few.jsonl"],
        ),
        (
            r#"train.lora.targets=["q", "z"]"#.to_owned(),
            vec!["train.lora.targets", "`z`"],
        ),
    ] {
        for needle in needles {
            assert_rejected(
                Some(&text),
                &["--profile", "smoke", "--set", &value],
                needle,
            );
        }
    }
}

/// `fpo eval`'s flags and a `base` that is no file: exit 2, the flag or key named.
#[test]
fn bad_flags_of_fpo_eval_and_a_base_that_is_no_file_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("eval");
    for (args, needle) in [
        (vec!["eval", "nosuch"], "unknown suite `nosuch`"),
        (
            vec!["eval", "truthfulqa", "--metrics", "mcc"],
            "unknown metric `mcc`",
        ),
    ] {
        let mut args = args;
        args.extend(["--out", out.to_str().unwrap()]);
        let o = common::fpo(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!out.exists(), "no output for bad flags");
    }
    let text = format!("base = \".\"\n{}", shipped("toy-nn.toml"));
    assert_rejected(Some(&text), &[], "base");
    assert_rejected(Some(&text), &[], "not a file");
}

/// A kernel path `FPO_CPU` names wrongly, or one this CPU lacks (where it lacks any), is refused
/// before any work with exit 2, naming the variable; `fpo doctor` reports the refusal.
#[test]
fn a_kernel_path_the_cpu_lacks_is_refused() {
    let lacking = fpo_model::CpuPath::ALL
        .into_iter()
        .find(|p| !p.is_supported())
        .map(|p| p.name());
    for value in ["avx3"].into_iter().chain(lacking) {
        let tmp = tempfile::tempdir().unwrap();
        let out_dir = tmp.path().join("run");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fpo"))
            .current_dir(root())
            .env("FPO_CPU", value)
            .args(["run", "experiments/toy-linear.toml", "--profile", "smoke"])
            .args(["--out", out_dir.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "FPO_CPU={value}: {stderr}");
        assert!(stderr.contains("FPO_CPU"), "names the variable: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out_dir.exists() && !tmp.path().join("run.partial").exists());
        let doctor = std::process::Command::new(env!("CARGO_BIN_EXE_fpo"))
            .env("FPO_CPU", value)
            .arg("doctor")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&doctor.stdout);
        assert!(text.contains("cpu kernels: REFUSED"), "{text}");
        assert!(!doctor.status.success());
    }
}

/// A task file that is not there is named (the key and the file) before any work.
#[test]
fn a_missing_task_file_is_named_before_any_work() {
    for needle in ["eval.tasks[0]", "nope.toml"] {
        assert_rejected(
            Some(&shipped("truthfulqa.toml")),
            &[
                "--profile",
                "smoke",
                "--set",
                r#"eval.tasks=["tasks/nope.toml"]"#,
            ],
            needle,
        );
    }
}
