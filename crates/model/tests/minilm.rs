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

/// `embed` batches texts by length, so a list's embeddings do not depend on its order (the
/// same batches run whatever the order: exactly the same bits), and a text's embedding barely
/// depends on its batch: padded keys weigh exactly 0, but burn's products take another path
/// for a few rows than for many, which moves the last bits (~2e-7 here). Texts of 2 to 128
/// tokens (two of the same length), in any order and batch, against each embedded alone.
#[test]
fn embeddings_follow_their_texts_whatever_the_order_and_batch() {
    let dev = device(BackendKind::Flex, false).unwrap();
    let enc = SentenceEncoder::load(&models_dir().join(DEFAULT_ENCODER), &dev)
        .unwrap_or_else(|e| panic!("{e} (run `just models`)"));
    let long = "The committee reviewed every proposal twice before the vote. ".repeat(12);
    let texts = [
        "Yes.",
        long.as_str(),
        "No.",
        "A short answer about the weather in Paris.",
        "",
        "Hydrogen is the lightest element; helium is the second lightest, and both formed early.",
        &long[..200],
    ];
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| enc.embed(&[t], 128, 1).unwrap().remove(0))
        .collect();
    let reversed: Vec<&str> = texts.iter().rev().copied().collect();
    for batch in 1..=texts.len() {
        let emb = enc.embed(&texts, 128, batch).unwrap();
        let mut back = enc.embed(&reversed, 128, batch).unwrap();
        back.reverse();
        assert_eq!(back, emb, "batch {batch}: the order changed the embeddings");
        for (i, (e, a)) in emb.iter().zip(&alone).enumerate() {
            let worst = e
                .iter()
                .zip(a)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(
                worst < 1e-6,
                "batch {batch}, text {i}: {worst:e} from alone"
            );
        }
    }
}
