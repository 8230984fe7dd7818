//! `metrics.csv`: one row per logged iteration of a toy run, readable by `pandas.read_csv`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One row of `metrics.csv`. The columns are the fields, in this order; `exact_penalty` is empty
/// outside a ladder run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    /// The penalty's label: a variant name, or a ladder rung such as `influence(λ=0.1)`.
    pub variant: String,
    /// Seed of the run.
    pub seed: u64,
    /// 0-based iteration.
    pub iteration: usize,
    /// Magnitude of the action's signal part.
    pub signal: f64,
    /// Magnitude of the action's noise part.
    pub noise: f64,
    /// The oracle's utility of the action.
    pub true_utility: f64,
    /// The reward model's score of the action.
    pub proxy_reward: f64,
    /// The run's penalty at the action (0 for standard).
    pub penalty: f64,
    /// The exact (influence-function) penalty at the action, in ladder runs.
    pub exact_penalty: Option<f64>,
}

/// `metrics.csv` of `rows`, header first. Floats are written in their shortest form that reads
/// back to the same value.
pub fn write(rows: impl IntoIterator<Item = MetricsRow>) -> Result<Vec<u8>, Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row).map_err(Error::CsvWrite)?;
    }
    w.into_inner()
        .map_err(|e| Error::CsvWrite(e.into_error().into()))
}

/// The rows of a `metrics.csv`, by the header's column names; an error names the file and line.
pub fn read(path: &Path) -> Result<Vec<MetricsRow>, Error> {
    let mut reader = csv::Reader::from_path(path).map_err(|source| Error::Csv {
        path: path.to_owned(),
        source,
    })?;
    reader
        .deserialize()
        .collect::<Result<Vec<MetricsRow>, _>>()
        .map_err(|source| Error::Csv {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &str, exact: Option<f64>) -> MetricsRow {
        MetricsRow {
            variant: variant.into(),
            seed: 3,
            iteration: 7,
            signal: 0.1 + 0.2,
            noise: 1e-300,
            true_utility: -2.5,
            proxy_reward: f64::MAX,
            penalty: 0.0,
            exact_penalty: exact,
        }
    }

    #[test]
    fn rows_round_trip_bit_for_bit() {
        let rows = vec![
            row("standard", None),
            row("influence(λ=0.1)", Some(1.0 / 3.0)),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(&path, write(rows.clone()).unwrap()).unwrap();
        assert_eq!(read(&path).unwrap(), rows);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "variant,seed,iteration,signal,noise,true_utility,proxy_reward,penalty,exact_penalty"
        );
    }

    #[test]
    fn a_bad_row_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let mut bytes = write(vec![row("standard", None)]).unwrap();
        bytes.extend_from_slice(b"standard,x,1,0,0,0,0,0,\n");
        std::fs::write(&path, bytes).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("metrics.csv"), "{err}");
        assert!(err.contains("line 3") || err.contains("line: 3"), "{err}");
    }
}
