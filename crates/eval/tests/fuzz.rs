//! Property-based fuzzing of the TruthfulQA readers (`TruthfulQA.csv` and `mc_task.json`):
//! the shipped files cut to a few questions and mutated byte by byte must give `Ok` or a typed
//! error naming a file, never a panic. `PROPTEST_CASES` raises the bounded case count.

use std::path::PathBuf;

use fpo_eval::truthfulqa::load;
use proptest::prelude::*;

fn shipped() -> PathBuf {
    std::env::var_os("FPO_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::current_dir().unwrap())
                .join("../../datasets")
        })
        .join("truthfulqa")
}

/// The CSV's header and first `k` records, and the matching `mc_task.json` records.
fn cut(k: usize) -> (Vec<u8>, Vec<u8>) {
    let csv = std::fs::read(shipped().join("TruthfulQA.csv")).unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(&csv[..]);
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(reader.headers().unwrap()).unwrap();
    for r in reader.records().take(k) {
        out.write_record(&r.unwrap()).unwrap();
    }
    let json: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(shipped().join("mc_task.json")).unwrap()).unwrap();
    let json = serde_json::to_vec(&json[..k.min(json.len())]).unwrap();
    (out.into_inner().unwrap(), json)
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(i, op, b) in edits {
        let n = bytes.len().max(1);
        match op % 3 {
            0 if !bytes.is_empty() => bytes[i % n] = b,
            1 if !bytes.is_empty() => {
                bytes.remove(i % n);
            }
            _ => bytes.insert(i % (bytes.len() + 1), b),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_truthfulqa_files_never_panic_the_reader(
        k in 0usize..4,
        csv_edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
        json_edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
    ) {
        let (csv, json) = cut(k);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("TruthfulQA.csv"), mutate(csv, &csv_edits)).unwrap();
        std::fs::write(dir.path().join("mc_task.json"), mutate(json, &json_edits)).unwrap();
        if let Err(e) = load(dir.path()) {
            let e = e.to_string();
            prop_assert!(e.contains("TruthfulQA.csv") || e.contains("mc_task.json"), "{}", e);
        }
    }
}
