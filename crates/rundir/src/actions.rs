//! `actions.jsonl`: the whole action (the linear toy's `y`, the NN toy's policy mean `theta`) at
//! every logged iteration of a toy run's first seeds, for projections of the trajectory (the
//! report's PCA figure) and the user's own analyses. `metrics.csv` keeps only its norms.

use serde::{Deserialize, Serialize};

/// One line of `actions.jsonl`: a (variant, seed)'s action at one logged iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRow {
    /// The penalty's label, as in `metrics.csv`.
    pub variant: String,
    /// Seed of the run.
    pub seed: u64,
    /// 0-based iteration, as in `metrics.csv`.
    pub iteration: usize,
    /// Every coordinate of the action, signal first.
    pub action: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_bit_for_bit_and_a_bad_line_is_named() {
        let rows = vec![
            ActionRow {
                variant: "standard".into(),
                seed: 0,
                iteration: 0,
                action: vec![0.0; 3],
            },
            ActionRow {
                variant: "influence(λ=0.1)".into(),
                seed: 4,
                iteration: 10,
                action: vec![0.1 + 0.2, -1e-300, 1.0 / 3.0],
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::files::ACTIONS);
        std::fs::write(&path, crate::to_jsonl(&rows).unwrap()).unwrap();
        assert_eq!(crate::read_jsonl::<ActionRow>(&path).unwrap(), rows);
        let mut bytes = crate::to_jsonl(&rows).unwrap();
        bytes.extend_from_slice(b"{\"variant\": \"standard\", \"seed\": 0}\n");
        std::fs::write(&path, bytes).unwrap();
        let err = crate::read_jsonl::<ActionRow>(&path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("actions.jsonl") && err.contains("line 3"),
            "{err}"
        );
    }
}
