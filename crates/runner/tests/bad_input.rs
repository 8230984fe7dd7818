//! Bad input, class by class: each case exits 2 with a message naming the culprit (the file and
//! its key, or the flag), without a panic, and leaves no run directory, not even a `.partial`.
//! Every case here once ran, aborted or panicked instead.

mod common;

use common::{assert_rejected, root};

fn shipped(name: &str) -> String {
    std::fs::read_to_string(root().join("experiments").join(name)).unwrap()
}

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

/// `--retry-errors` with no judge to ask.
#[test]
fn retry_errors_without_a_judge_is_refused() {
    assert_rejected(
        Some(&shipped("truthfulqa.toml")),
        &["--profile", "smoke", "--retry-errors"],
        "--retry-errors",
    );
}
