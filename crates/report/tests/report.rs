//! Rendering reports from run directories written in the test.

use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A tiny toy run directory whose description carries markup and template syntax.
fn toy_run(dir: &Path, description: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "kind": "single", "suite": "toy-linear", "description": description,
        "config": {"env": {"signal_dims": 3, "target_value": 2.0, "utility_scale": 10.0, "utility_width": 0.3}}
    });
    write(dir, "config.json", &config.to_string());
    let s = |m: f64| serde_json::json!({"n": 2, "mean": m, "sd": 0.1, "ci_low": m - 0.5, "ci_high": m + 0.5, "level": 0.95});
    let v = |u: f64| serde_json::json!({"seeds": [0, 1], "true_utility": s(u), "noise": s(1.0), "signal": s(2.0), "proxy_reward": s(u), "penalty": s(0.0)});
    let summary = serde_json::json!({
        "suite": "toy-linear", "confidence": 0.95,
        "variants": {"relaxed": v(9.0), "standard": v(4.0)},
        "claims": [{"id": "x", "statement": "a <b>claim</b> & \"quotes\"", "authors": "{{ 7 * 7 }}", "quantity": "q",
                    "ours": s(1.0), "side": "above", "threshold": 0.0, "verdict": "reproduced"}]
    });
    write(dir, "summary.json", &summary.to_string());
    let mut csv = String::from(
        "variant,seed,iteration,signal,noise,true_utility,proxy_reward,penalty,exact_penalty\n",
    );
    for v in ["standard", "relaxed"] {
        for seed in 0..2 {
            for it in 0..4 {
                let x = it as f64 + seed as f64 * 0.1;
                csv.push_str(&format!(
                    "{v},{seed},{it},{x},{},{},{x},0,\n",
                    x / 2.0,
                    10.0 - x
                ));
            }
        }
    }
    write(dir, "metrics.csv", &csv);
}

#[test]
fn model_and_config_strings_are_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    toy_run(&run, "<script>alert('x')</script> \"q\" {{ 6 * 7 }}");
    let html = fpo_report::render("t", &[run]).unwrap();
    assert!(!html.contains("<script>"), "raw script tag in the report");
    assert!(html.contains("&lt;script&gt;"));
    assert!(
        html.contains("{{ 6 * 7 }}"),
        "template syntax must render as text"
    );
    assert!(html.contains("a &lt;b&gt;claim&lt;&#x2f;b&gt; &amp; &quot;quotes&quot;"));
    assert!(
        !html.contains("<link") && !html.contains("src=\"http"),
        "no external resources"
    );
}

#[test]
fn toy_report_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    toy_run(&run, "a toy");
    let html = fpo_report::render("snapshot", &[run]).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "phase space, noise, utility"
    );
    insta::with_settings!({filters => vec![
        (r"(?s)<svg.*?</svg>", "[svg]"),
        (r"(?:/|&#x2f;)[^ <]*?(?:/|&#x2f;)run\b", "[dir]"),
    ]}, {
        insta::assert_snapshot!(html);
    });
}

#[test]
fn the_pca_figure_projects_the_first_seed_and_the_ideal() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    toy_run(&run, "a toy");
    // Seed 0: standard drifts along a noise axis, relaxed walks to the ideal (2, 2, 2, 0, 0);
    // both paths lie in one plane through 0, which holds the ideal. Seed 1 leaves that plane
    // (along the last axis): a projection of every seed would explain less than all.
    let mut lines = String::new();
    for (seed, v) in [(1, "standard"), (0, "standard"), (0, "relaxed")] {
        for it in 0..4 {
            let t = it as f64 / 3.0;
            let action = match (seed, v) {
                (0, "standard") => [0.3 * t, 0.3 * t, 0.3 * t, 3.0 * t, 0.0],
                (0, _) => [2.0 * t, 2.0 * t, 2.0 * t, 0.0, 0.0],
                _ => [0.0, 0.0, 0.0, t, 5.0 * t],
            };
            let row =
                serde_json::json!({"variant": v, "seed": seed, "iteration": it, "action": action});
            lines.push_str(&format!("{row}\n"));
        }
    }
    write(&run, "actions.jsonl", &lines);
    let html = fpo_report::render("pca", &[run]).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        4,
        "phase, PCA, noise, utility"
    );
    assert!(
        html.contains("PCA of the trajectory (seed 0)"),
        "the first seed"
    );
    assert!(html.contains("(100% of the variance)"), "seed 1 left out");
    assert!(
        html.contains("the ideal lies 0.00 off the plane"),
        "the ideal's projection"
    );
}

#[test]
fn a_directory_without_a_run_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fpo_report::render("t", &[tmp.path().to_owned()]).unwrap_err();
    assert!(err.to_string().contains("holds no run"), "{err}");
}

/// A tiny LLM run directory whose model outputs carry markup and template syntax.
fn stat(m: f64) -> serde_json::Value {
    serde_json::json!({"n": 2, "mean": m, "sd": 0.1, "ci_low": m - 0.05, "ci_high": m + 0.05, "level": 0.95})
}

fn mc(m: f64) -> serde_json::Value {
    serde_json::json!({"n": 2, "mc1": stat(m / 2.0), "mc2": stat(m),
        "by_type": {"Adversarial": [1, stat(m), stat(m)], "Non-Adversarial": [1, stat(m), stat(m)]},
        "by_category": {"Misconceptions": [2, stat(m), stat(m)]}})
}

fn answers() -> serde_json::Value {
    let figures = serde_json::json!({"n": 10, "words": stat(40.0), "acc": stat(0.5), "cos_diff": stat(0.01),
        "rouge_l_diff": stat(1.0), "bleu_diff": stat(2.0), "bleu_acc": stat(0.4)});
    let mut a = figures.clone();
    a["by_type"] = serde_json::json!({"Adversarial": figures.clone()});
    a["by_category"] = serde_json::json!({"Law <&>": figures});
    a
}

fn wtl() -> serde_json::Value {
    let share = |k: usize| serde_json::json!({"k": k, "n": 10, "share": k as f64 / 10.0, "ci_low": 0.0, "ci_high": 1.0});
    serde_json::json!({"n": 10, "first": share(3), "second": share(5), "tie": share(2), "sign_test_p": 0.72})
}

/// A comparison by an LLM judge: one question without a verdict.
fn judged() -> serde_json::Value {
    let mut w = wtl();
    let share = |k: usize, n: usize| serde_json::json!({"k": k, "n": n, "share": k as f64 / n as f64, "ci_low": 0.0, "ci_high": 1.0});
    w["n"] = 11.into();
    w["errors"] = share(1, 11);
    w
}

/// A judge's exam card: `passed` or not, with one Type.
fn card(judge: &str, passed: bool) -> serde_json::Value {
    let share = |k: usize, n: usize| serde_json::json!({"k": k, "n": n, "share": k as f64 / n as f64, "ci_low": 0.1, "ci_high": 0.9});
    let figures = serde_json::json!({"questions": 10, "accuracy": share(if passed { 18 } else { 10 }, 20),
        "combined_accuracy": share(5, 10), "position_bias": share(10, 16), "swap_consistency": share(6, 10),
        "tie_rate": share(4, 20), "error_rate": share(0, 20),
        "soft": {"n": 10, "mean": 0.61, "sd": 0.1, "ci_low": 0.55, "ci_high": 0.67, "level": 0.95}});
    serde_json::json!({"judge": judge, "overall": figures, "by_type": {"Adversarial": figures}, "passed": passed})
}

fn llm_run(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let config =
        serde_json::json!({"kind": "single", "suite": "truthfulqa", "description": "an LLM run"});
    write(dir, "config.json", &config.to_string());
    write(dir, "rm_head_fit.json", "{}");
    let outcome = |v: &str| {
        serde_json::json!({"variant": v, "seed": 0, "iterations": 4,
            "winner_change_share": {"standard": 0.25, "relaxed": 0.5, "practical": 0.0},
            "winner_utility_first_quarter": 1.0, "winner_utility_last_quarter": 1.5,
            "winner_reward_first_quarter": 0.1, "winner_reward_last_quarter": 0.9,
            "mean_self_influence": -0.1, "tokens_generated": 64, "seconds": 4.0, "adapter_abs_sum": 1.0})
    };
    let summary = serde_json::json!({
        "suite": "truthfulqa",
        "rm_head_fit": {"init": "bradley-terry", "train_pairs": 32, "heldout_pairs": 8, "train_accuracy": 0.9,
                        "heldout_accuracy": 0.6, "final_loss": 0.3, "embed_seconds": 1.0},
        "outcomes": [outcome("standard"), outcome("relaxed")],
        "winner_change_vs_standard": {"standard": 0.0, "relaxed": 0.5},
        "seconds_per_iteration": 1.0,
        "evaluation": {
            "questions": 2,
            "mc": {"base": mc(0.3), "relaxed-seed0": mc(0.4)},
            "mc2_vs_base": {"relaxed-seed0": [stat(0.1), [0.04, 0.16]]},
            "mc1_mcnemar_vs_base": {"relaxed-seed0": 0.5},
            "generation": {"base": answers(), "relaxed-seed0": answers()},
            "published": {"pairs": [{"first": "standard", "second": "relaxed", "first_wins": 144, "second_wins": 188, "ties": 485}],
                          "words": [["standard", 42.8]]},
            "sycophancy_items": 10,
            "sycophancy": {"base": {"rate": wtl()["first"], "by_subdomain": {"nlp": wtl()["tie"]}}},
            "comparisons": [{"first": "standard-seed0", "second": "relaxed-seed0", "judge": "offline <judge>",
                             "overall": wtl(), "by_type": {"Adversarial": wtl()},
                             "by_category": {"Law <&>": wtl()}, "similar_length": wtl()},
                            {"first": "standard-seed0", "second": "relaxed-seed0", "judge": "llm: <m> at host/v1 (both orders)",
                             "overall": judged(), "by_type": {"Adversarial": judged()},
                             "by_category": {"Law <&>": judged()}, "similar_length": judged(),
                             "swap_consistency": wtl()["second"],
                             "soft": {"n": 11, "mean": 0.58, "sd": 0.1, "ci_low": 0.52, "ci_high": 0.64, "level": 0.95}}],
            "judge_cards": [card("offline <judge>", true), card("llm: <m> at host/v1 (both orders)", false)],
            "judge": {"label": "llm: <m> at host/v1 (both orders)", "pairs": 10, "requests_sent": 21, "cache_hits": 0, "errors": 1},
            "types": ["Adversarial"],
            "across_seeds": {"relaxed": {"seeds": 1, "mc1": stat(0.3), "mc2": stat(0.4), "acc": null, "words": stat(40.0)}},
            "pressure": {"base": {"shift": stat(-0.5), "overall": {"n": 10, "correct_neutral": wtl()["first"],
                "correct_under_pressure": wtl()["tie"], "moved_toward_falsehood": wtl()["second"], "flipped": wtl()["tie"]},
                "by_type": {}, "by_category": {}}},
            "pressure_generation": {"base": answers()},
            "pressure_comparisons": [{"first": "base", "second": "base under pressure", "judge": "offline <judge>",
                             "overall": wtl(), "by_type": {}, "by_category": {}, "similar_length": wtl()}]
        }
    });
    write(dir, "summary.json", &summary.to_string());
    for m in ["base", "relaxed-seed0"] {
        let edir = dir.join("eval").join(m);
        std::fs::create_dir_all(&edir).unwrap();
        let row = serde_json::json!({"id": 7, "kind": "Adversarial", "category": "Law <&>",
            "question": format!("{text}?"), "answer": format!("{text} ({m})"), "cos_diff": 0.25,
            "words": 3, "rouge_l_correct": 0.5, "rouge_l_incorrect": 0.25, "rouge_l_diff": 0.25,
            "cos_correct": 0.75, "cos_incorrect": 0.5, "acc": 1.0});
        write(&edir, "answers.jsonl", &row.to_string());
    }
    for v in ["standard", "relaxed"] {
        let vdir = dir.join(format!("{v}-seed0"));
        std::fs::create_dir_all(&vdir).unwrap();
        let lines: Vec<String> = (0..4)
            .map(|i| {
                serde_json::json!({"iteration": i, "prompt_line": i + 1, "winner_reward": i as f64 * 0.3,
                    "winner_utility": 1.0 + i as f64 * 0.1, "penalty": 0.0, "self_influence": -0.1,
                    "winner_text": format!("{text} {v} {i}"),
                    "winner": 0, "winners": {"standard": 0, "relaxed": 0, "practical": 0},
                    "reference_utility": 1.0, "reference_reward": 0.0, "mean_candidate_utility": 1.0,
                    "grad_term": 0.5, "rm_loss": 0.7, "policy_loss": 2.0, "step": false,
                    "tokens_generated": 16, "winner_tokens": 8})
                .to_string()
            })
            .collect();
        write(&vdir, "log.jsonl", &lines.join("\n"));
    }
}

#[test]
fn llm_report_plots_the_loop_and_escapes_model_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    llm_run(&run, "<script>alert(1)</script> \"q\" {{ 6 * 7 }}");
    let html = fpo_report::render("t", &[run]).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        5,
        "reward, utility, penalty, self-influence, win/tie/loss"
    );
    assert!(!html.contains("<script>"), "raw script tag in the report");
    assert!(html.contains(
        "&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &quot;q&quot; {{ 6 * 7 }} relaxed 3"
    ));
    assert!(html.contains("held-out pair accuracy"));
    assert!(html.contains("Greedy answers side by side (1 questions"));
    assert!(
        html.contains(
            "&lt;script&gt;alert(1)&lt;&#x2f;script&gt; &quot;q&quot; {{ 6 * 7 }} (base)"
        )
    );
    assert!(html.contains("Sycophancy under pressure") && html.contains("base under pressure"));
    assert!(
        html.contains("llm: &lt;m&gt; at host&#x2f;v1"),
        "judge label escaped"
    );
    assert!(html.contains("21 requests sent"));
    // The judges' cards, the failed judge's comparison flagged (and only its), soft preferences.
    assert!(html.contains("<h3>The judges' exam</h3>"));
    assert_eq!(html.matches("failed its exam: accuracy 0.500").count(), 1);
    assert!(html.contains("soft preference for the second (the judge's probability"));
    assert!(html.contains("0.580 <span class=\"meta\">[0.520, 0.640]</span> over 11 questions"));
    assert!(html.contains("Variants over seeds"));
    assert!(html.contains("MC2 minus base") && html.contains("MC2, Non-Adversarial"));
    assert!(
        html.contains("0.100 <span class=\"meta\">[0.050, 0.150]</span>"),
        "paired difference shown"
    );
}

#[test]
fn llm_report_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    llm_run(&run, "an answer");
    let html = fpo_report::render("snapshot", &[run]).unwrap();
    insta::with_settings!({filters => vec![
        (r"(?s)<svg.*?</svg>", "[svg]"),
        (r"(?:/|&#x2f;)[^ <]*?(?:/|&#x2f;)run\b", "[dir]"),
    ]}, {
        insta::assert_snapshot!(html);
    });
}

/// The provenance line names each data file the run read with its licence, the AlpacaEval
/// prompts' non-commercial one included, and no path of the machine.
#[test]
fn llm_report_names_its_data_and_their_licences() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    llm_run(&run, "an answer");
    let config = serde_json::json!({"kind": "single", "suite": "truthfulqa", "description": "an LLM run",
        "config": {"train": {"prompts": "/home/someone/datasets/prompts/alpaca_eval_prompts_805.jsonl",
                             "rm": {"pairs": "/home/someone/datasets/preferences/hh_rlhf_harmless_base_test_pairs.jsonl"}},
                   "eval": {}}});
    write(&run, "config.json", &config.to_string());
    let html = fpo_report::render("provenance", &[run]).unwrap();
    let line = html
        .lines()
        .find(|l| l.contains("Data: "))
        .expect("a provenance line");
    assert!(line.contains("alpaca_eval_prompts_805.jsonl"), "{line}");
    assert!(line.contains("CC BY-NC 4.0"), "{line}");
    assert!(
        line.contains("hh_rlhf_harmless_base_test_pairs.jsonl"),
        "{line}"
    );
    assert!(line.contains("TruthfulQA"), "{line}");
    assert!(!line.contains("someone"), "{line}");
}

/// A run whose LLM judge failed on every pair (endpoint down, wrong key): the comparison has no
/// judged pair, its shares are undefined, and the report still renders, saying so.
#[test]
fn a_comparison_without_a_judged_pair_still_renders() {
    use fpo_eval::generation::WinTieLoss;
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    llm_run(&run, "an answer");
    // The tally the runner writes when every verdict is an error, through summary.json's bytes.
    let failed = serde_json::to_value(WinTieLoss::of(&[None; 11], 0.95)).unwrap();
    let path = run.join("summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let c = &mut summary["evaluation"]["comparisons"][1];
    for key in ["overall", "similar_length"] {
        c[key] = failed.clone();
    }
    c["by_type"] = serde_json::json!({"Adversarial": failed.clone()});
    c["by_category"] = serde_json::json!({"Law <&>": failed.clone()});
    c["swap_consistency"] = serde_json::to_value(fpo_eval::stats::Share::of(0, 0, 0.95)).unwrap();
    c["single_order"] = failed.clone();
    summary["evaluation"]["judge"]["errors"] = 11.into();
    std::fs::write(&path, summary.to_string()).unwrap();
    let html = fpo_report::render("failed judge", &[run]).unwrap();
    assert!(
        html.contains("llm: &lt;m&gt; at host&#x2f;v1"),
        "the judge's row is there"
    );
    assert!(
        !html.contains("NaN") && !html.contains("nan"),
        "undefined shares print as –"
    );
}
