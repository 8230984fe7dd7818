//! `fpo sweep` and `fpo merge` on the toy suites: a sharded and merged grid equals the same grid
//! run on one machine, byte for byte; missing cells are named and nothing is written; a Slurm
//! script and a resubmission of just the missing cells are emitted.

mod common;

use std::path::Path;

use common::fpo;

/// `fpo ARGS`, which must succeed; its standard output.
fn ok(args: &[&str]) -> String {
    String::from_utf8_lossy(&common::ok(args).stdout).into_owned()
}

fn same_files(a: &Path, b: &Path) {
    for f in ["config.json", "metrics.csv", "summary.json"] {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(
            x == y,
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_sharded_and_merged_sweep_equals_one_run_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let sw = tmp.path().join("sweep");
    ok(&[
        "sweep",
        "experiments/toy-linear.toml",
        "--seeds",
        "0..3",
        "--set",
        "fpo.gamma=0.1,1",
        "--jobs",
        "2",
        "--out",
        s(&sw),
    ]);
    let cells: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sw.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(cells["cells"].as_array().unwrap().len(), 2 * 3 * 3);
    let merged = tmp.path().join("merged");
    ok(&["merge", s(&sw), "--no-report", "--out", s(&merged)]);
    for gamma in ["0.1", "1"] {
        let local = tmp.path().join(format!("local-{gamma}"));
        ok(&[
            "run",
            "experiments/toy-linear.toml",
            "--seeds",
            "0..3",
            "--set",
            &format!("fpo.gamma={gamma}"),
            "--no-report",
            "--out",
            s(&local),
        ]);
        same_files(&merged.join(format!("fpo.gamma={gamma}")), &local);
    }
    // The two gammas really differ.
    assert_ne!(
        std::fs::read(merged.join("fpo.gamma=0.1/metrics.csv")).unwrap(),
        std::fs::read(merged.join("fpo.gamma=1/metrics.csv")).unwrap()
    );

    // Shards run by hand (as array tasks would) give the same cells.
    let by_hand = tmp.path().join("by-hand");
    for k in 0..4 {
        ok(&[
            "run",
            "experiments/toy-linear.toml",
            "--seeds",
            "0..3",
            "--set",
            "fpo.gamma=0.1,1",
            "--shard",
            &format!("{k}/4"),
            "--no-report",
            "--out",
            s(&by_hand),
        ]);
    }
    let merged2 = tmp.path().join("merged2");
    ok(&["merge", s(&by_hand), "--no-report", "--out", s(&merged2)]);
    for gamma in ["0.1", "1"] {
        same_files(
            &merged.join(format!("fpo.gamma={gamma}")),
            &merged2.join(format!("fpo.gamma={gamma}")),
        );
    }
}

#[test]
fn the_toy_nn_suite_merges_to_the_same_summary_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let sw = tmp.path().join("sweep");
    let grid = ["--profile", "smoke", "--seeds", "0..2"];
    let mut args = vec!["sweep", "experiments/toy-nn.toml"];
    args.extend(grid);
    args.extend(["--out", s(&sw)]);
    ok(&args);
    let reports = tmp.path().join("reports");
    let out = ok(&["merge", s(&sw), "--reports", s(&reports)]);
    assert!(out.contains("index.html"), "{out}");
    let local = tmp.path().join("local");
    let mut args = vec!["run", "experiments/toy-nn.toml"];
    args.extend(grid);
    args.extend(["--no-report", "--out", s(&local)]);
    ok(&args);
    same_files(&sw.join("merged"), &local);
}

#[test]
fn missing_cells_are_named_and_nothing_is_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let sw = tmp.path().join("sweep");
    ok(&[
        "sweep",
        "experiments/toy-linear.toml",
        "--seeds",
        "0..2",
        "--emit",
        "slurm",
        "--partition",
        "gpu",
        "--time",
        "02:00:00",
        "--mem",
        "8G",
        "--gpus",
        "1",
        "--out",
        s(&sw),
    ]);
    let script = std::fs::read_to_string(sw.join("slurm.sh")).unwrap();
    for line in [
        "#SBATCH --array=0,1,2,3,4,5",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=02:00:00",
        "#SBATCH --mem=8G",
        "#SBATCH --gres=gpu:1",
        "--shard \"$SLURM_ARRAY_TASK_ID/6\"",
    ] {
        assert!(script.contains(line), "{line} not in\n{script}");
    }
    // Run all but cells 1 and 4 (as if those array tasks had failed).
    for k in [0, 2, 3, 5] {
        ok(&[
            "run",
            "experiments/toy-linear.toml",
            "--seeds",
            "0,1",
            "--shard",
            &format!("{k}/6"),
            "--out",
            s(&sw),
        ]);
    }
    let out = tmp.path().join("merged");
    let o = fpo(&["merge", s(&sw), "--no-report", "--out", s(&out)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("2 of 6 cells")
            && err.contains("standard-seed1")
            && err.contains("practical-seed0"),
        "{err}"
    );
    assert!(!out.exists() && !tmp.path().join("merged.partial").exists());
    let msg = ok(&["sweep", "--resubmit-missing", s(&sw)]);
    assert!(msg.contains("2 missing cells"), "{msg}");
    let again = std::fs::read_to_string(sw.join("slurm-resubmit.sh")).unwrap();
    assert!(again.contains("#SBATCH --array=1,4"), "{again}");
    assert!(
        again.contains("#SBATCH --gres=gpu:1"),
        "options kept: {again}"
    );
    // A grid that differs from the directory's is refused.
    let o = fpo(&[
        "run",
        "experiments/toy-linear.toml",
        "--seeds",
        "0..3",
        "--shard",
        "0/9",
        "--out",
        s(&sw),
    ]);
    assert!(!o.status.success());
}
