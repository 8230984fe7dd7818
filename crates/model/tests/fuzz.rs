//! Property-based fuzzing of the parsers that read outside files: GGUF (header, metadata,
//! tensor directory, then the model config and tokenizer read from it) and safetensors headers.
//! Arbitrary bytes and mutations of a valid file must give `Ok` or a typed error, never a panic.
//! A bounded case count keeps this inside `just test` (`PROPTEST_CASES` raises it for a longer
//! hunt); cases it once found are kept below as regressions.

use std::path::Path;

use fpo_model::gguf::Gguf;
use fpo_model::llm::weights::check_safetensors_header;
use fpo_model::llm::{LlamaConfig, TextTokenizer};
use proptest::prelude::*;

mod common;

use common::Writer;

/// A small valid GGUF that reaches every reader: the llama config keys, a byte-level BPE
/// tokenizer and a quantised and a float tensor.
fn seed() -> Vec<u8> {
    let mut w = Writer::new();
    w.kv_str("general.architecture", "llama");
    for (k, v) in [
        ("block_count", 1),
        ("embedding_length", 8),
        ("feed_forward_length", 16),
        ("attention.head_count", 2),
        ("attention.head_count_kv", 1),
        ("context_length", 64),
        ("vocab_size", 4),
    ] {
        w.kv_u32(&format!("llama.{k}"), v);
    }
    w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", &["a", "b", "ab", "<|end|>"]);
    w.kv_strs("tokenizer.ggml.merges", &["a b"]);
    w.kv_u32("tokenizer.ggml.eos_token_id", 3);
    let mut q8 = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    q8.extend((0..32).map(|q| q as u8));
    w.tensor("token_embd.weight", &[8, 4], 8, &q8);
    let norm: Vec<u8> = (0..8).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    w.tensor("output_norm.weight", &[8], 0, &norm);
    w.finish()
}

/// Every reader of a GGUF, on `bytes`: errors are fine, panics are not.
fn read_all(bytes: Vec<u8>) {
    if let Ok(g) = Gguf::parse(bytes, Path::new("fuzz.gguf")) {
        let _ = LlamaConfig::from_gguf(&g);
        let _ = TextTokenizer::from_gguf(&g);
        for t in &g.tensors {
            let _ = g.dequantize(&t.name);
        }
    }
}

/// A mutation of a byte string: overwrite, insert, delete, truncate, or write a little-endian
/// integer (lengths and counts are u64s and u32s) at a position.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Int(usize, u64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let big = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(u64::MAX / 2),
        any::<u64>()
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), big).prop_map(|(i, v)| Edit::Int(i, v)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len().max(1);
        match *e {
            Edit::Set(i, b) => {
                if !bytes.is_empty() {
                    bytes[i % n] = b;
                }
            }
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Edit::Delete(i) => {
                if !bytes.is_empty() {
                    bytes.remove(i % n);
                }
            }
            Edit::Truncate(i) => bytes.truncate(i % n),
            Edit::Int(i, v) => {
                let at = i % n;
                let end = (at + 8).min(bytes.len());
                bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_gguf_reader(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"GGUF\x03\0\0\0".to_vec();
        bytes.extend(tail);
        read_all(bytes);
    }

    #[test]
    fn mutated_gguf_files_never_panic_the_readers(edits in proptest::collection::vec(edit(), 1..6)) {
        read_all(apply(seed(), &edits));
    }

    #[test]
    fn mutated_safetensors_headers_never_panic(edits in proptest::collection::vec(edit(), 1..6)) {
        let header = br#"{"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header);
        bytes.extend([0u8; 16]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, apply(bytes, &edits)).unwrap();
        let _ = check_safetensors_header(&path);
    }
}

#[test]
fn the_seed_reads_whole() {
    // The mutations start from a file every reader accepts, so that they reach each of them.
    let g = Gguf::parse(seed(), Path::new("seed.gguf")).unwrap();
    LlamaConfig::from_gguf(&g).unwrap();
    TextTokenizer::from_gguf(&g).unwrap();
    g.dequantize("token_embd.weight").unwrap();
}

/// Regressions: metadata arrays nested without bound (a stack overflow before the nesting cap).
#[test]
fn deeply_nested_arrays_are_an_error() {
    let mut bytes = b"GGUF\x03\0\0\0".to_vec();
    bytes.extend(0u64.to_le_bytes()); // tensors
    bytes.extend(1u64.to_le_bytes()); // one key
    Writer::string(&mut bytes, "k");
    bytes.extend(9u32.to_le_bytes());
    for _ in 0..100_000 {
        bytes.extend(9u32.to_le_bytes()); // an array of arrays ...
        bytes.extend(1u64.to_le_bytes()); // ... of one element
    }
    assert!(Gguf::parse(bytes, Path::new("nested.gguf")).is_err());
}
