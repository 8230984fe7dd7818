//! Golden test of the sentence encoder against sentence-transformers 6.2
//! (`tests/fixtures/minilm_reference.json`). Needs `just models`.

mod common;

use common::fixture_json;
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::{DEFAULT_ENCODER, models_dir};
use fpo_model::{BackendKind, device};

#[test]
fn token_ids_exact_and_embeddings_within_1e_4() {
    let r = fixture_json("minilm_reference.json");
    let dev = device(BackendKind::Flex, false).unwrap();
    let enc = SentenceEncoder::load(&models_dir().join(DEFAULT_ENCODER), &dev)
        .unwrap_or_else(|e| panic!("{e} (run `just models`)"));
    assert_eq!(enc.dim(), 384);
    assert!(enc.normalize);
    let sentences = r["sentences"].as_array().unwrap();
    let texts: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    for s in sentences {
        let want: Vec<u32> = s["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(enc.encode(s["text"].as_str().unwrap(), 256).unwrap(), want);
    }
    // One padded batch of all three, and each alone: both within 1e-4 of the reference.
    for batch in [3, 1] {
        let emb = enc.embed(&texts, 256, batch).unwrap();
        let mut worst = 0.0f64;
        for (e, s) in emb.iter().zip(sentences) {
            for (a, b) in e.iter().zip(s["embedding"].as_array().unwrap()) {
                worst = worst.max((f64::from(*a) - b.as_f64().unwrap()).abs());
            }
        }
        eprintln!("batch {batch}: max |embedding - reference| = {worst:.2e}");
        assert!(worst < 1e-4, "batch {batch}: {worst}");
    }
    // Truncation keeps [CLS] and [SEP].
    let ids = enc.encode(texts[0], 5).unwrap();
    assert_eq!(ids.len(), 5);
    assert_eq!((ids[0], ids[4]), (101, 102));
}
