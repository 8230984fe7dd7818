//! The GGUF reader: dequantisation against gguf-py's values for real SmolLM2 blocks, and a tiny
//! GGUF file written in memory.

use std::path::Path;

mod common;

use common::{Writer, fixtures};
use fpo_model::gguf::{GgmlType, Gguf, GgufError, Value, dequantize, unpermute_qk};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The first two blocks of `blk.0.attn_q.weight` (Q4_1) and `token_embd.weight` (Q8_0) of
/// SmolLM2-135M-Instruct.Q4_1.gguf, dequantised by gguf-py 0.19
/// (`tests/fixtures/smollm2_dequant_fixture.json`): equal to the last bit.
#[test]
fn dequantisation_matches_gguf_py_on_smollm2_blocks() {
    let text = std::fs::read_to_string(fixtures().join("smollm2_dequant_fixture.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (name, ty) in [
        ("blk.0.attn_q.weight", GgmlType::Q4_1),
        ("token_embd.weight", GgmlType::Q8_0),
    ] {
        let block = &fixture["blocks"][name];
        assert_eq!(block["type"], format!("{ty:?}"));
        let bytes = hex(block["raw_first2_blocks_hex"].as_str().unwrap());
        let ours = dequantize(ty, &bytes).unwrap();
        let theirs: Vec<f32> = block["dequant_first64"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours, theirs, "{name}");
    }
}

fn tiny() -> Vec<u8> {
    let mut w = Writer::new();
    w.kv_str("general.architecture", "llama");
    w.kv_u32("llama.block_count", 2);
    w.kv_f32("llama.rope.freq_base", 10000.0);
    w.kv_strs("tokenizer.ggml.tokens", &["<s>", "a", "b"]);
    let f32s: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25, 8.0, -0.5]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    w.tensor("m.f32", &[3, 2], 0, &f32s);
    let f16s: Vec<u8> = [1.5f32, -0.25, 2.0, 0.0]
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    w.tensor("v.f16", &[4], 1, &f16s);
    // Q8_0: d = 0.5, q = -16..16.
    let mut q8 = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    q8.extend((-16i8..16).map(|q| q as u8));
    w.tensor("v.q8_0", &[32], 8, &q8);
    // Q4_1: d = 0.25, m = -1, nibbles j (low) and 15 - j (high).
    let mut q4 = half::f16::from_f32(0.25).to_le_bytes().to_vec();
    q4.extend(half::f16::from_f32(-1.0).to_le_bytes());
    q4.extend((0u8..16).map(|j| j | ((15 - j) << 4)));
    w.tensor("v.q4_1", &[32], 3, &q4);
    w.finish()
}

#[test]
fn a_tiny_gguf_written_in_memory_reads_back() {
    let g = Gguf::parse(tiny(), Path::new("tiny.gguf")).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.str("general.architecture").unwrap(), "llama");
    assert_eq!(g.u32("llama.block_count").unwrap(), 2);
    assert_eq!(g.f64("llama.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(
        g.str_array("tokenizer.ggml.tokens").unwrap(),
        ["<s>", "a", "b"]
    );
    assert_eq!(g.metadata["llama.block_count"], Value::U64(2));
    assert_eq!(g.tensor("m.f32").unwrap().shape(), vec![2, 3]);
    assert_eq!(
        g.dequantize("m.f32").unwrap(),
        [1.0, -2.0, 3.5, 0.25, 8.0, -0.5]
    );
    assert_eq!(g.dequantize("v.f16").unwrap(), [1.5, -0.25, 2.0, 0.0]);
    let q8: Vec<f32> = (-16..16).map(|q| 0.5 * q as f32).collect();
    assert_eq!(g.dequantize("v.q8_0").unwrap(), q8);
    let q4: Vec<f32> = (0..16)
        .map(|j| 0.25 * j as f32 - 1.0)
        .chain((0..16).map(|j| 0.25 * (15 - j) as f32 - 1.0))
        .collect();
    assert_eq!(g.dequantize("v.q4_1").unwrap(), q4);
}

#[test]
fn corrupt_files_are_named_errors() {
    let path = Path::new("bad.gguf");
    let bytes = tiny();
    // Truncated in the data section: the error names the tensor.
    let err = Gguf::parse(bytes[..bytes.len() - 5].to_vec(), path).unwrap_err();
    assert!(
        matches!(&err, GgufError::Truncated { what, .. } if what.contains("v.q4_1")),
        "{err}"
    );
    assert!(err.to_string().contains("bad.gguf"));
    // Truncated in the metadata.
    let err = Gguf::parse(bytes[..40].to_vec(), path).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
    // Not GGUF.
    let err = Gguf::parse(b"GGML\x03\0\0\0".to_vec(), path).unwrap_err();
    assert!(matches!(err, GgufError::BadMagic { .. }), "{err}");
    // An unsupported quantisation (12 = Q4_K) names the tensor.
    let mut w = Writer::new();
    w.tensor("blk.0.ffn_up.weight", &[256], 12, &[0; 144]);
    let err = Gguf::parse(w.finish(), path).unwrap_err();
    assert!(
        err.to_string().contains("blk.0.ffn_up.weight") && err.to_string().contains("Other(12)"),
        "{err}"
    );
    // A missing key and a missing tensor name themselves.
    let g = Gguf::parse(tiny(), path).unwrap();
    assert!(
        g.u32("llama.context_length")
            .unwrap_err()
            .to_string()
            .contains("llama.context_length")
    );
    assert!(
        g.dequantize("output.weight")
            .unwrap_err()
            .to_string()
            .contains("output.weight")
    );
}

/// llama.cpp's converter: `w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2).reshape(rows, cols)`.
fn permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let d = rows / n_head;
    let mut out = vec![0.0; rows * cols];
    for h in 0..n_head {
        for half in 0..2 {
            for i in 0..d / 2 {
                let src = h * d + half * (d / 2) + i; // index (h, half, i) of the reshape
                let dst = h * d + i * 2 + half; // index (h, i, half) after the swap
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[test]
fn unpermute_inverts_the_converters_permutation() {
    let (rows, cols, n_head) = (12, 3, 2);
    let w: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
    assert_eq!(
        unpermute_qk(&permute(&w, rows, cols, n_head), rows, cols, n_head),
        w
    );
    // Head dim 6: HF rows (0 1 2 | 3 4 5) become GGUF rows (0 3 1 4 2 5).
    let rows_only: Vec<f32> = (0..6).map(|v| v as f32).collect();
    assert_eq!(permute(&rows_only, 6, 1, 1), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
}

/// Non-finite weights are refused at load, naming the tensor (they gave NaN logits with no
/// warning): a NaN float, a NaN block scale, an infinite block minimum.
#[test]
fn non_finite_weights_are_refused_at_load() {
    let path = Path::new("nan.gguf");
    let nan16 = half::f16::NAN.to_le_bytes();
    let cases: [(&str, u32, Vec<u8>); 3] = [
        (
            "m.f32",
            0,
            [1.0f32, f32::NAN]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "v.q8_0",
            8,
            nan16.iter().copied().chain([0u8; 32]).collect(),
        ),
        (
            "v.q4_1",
            3,
            half::f16::ONE
                .to_le_bytes()
                .into_iter()
                .chain(half::f16::INFINITY.to_le_bytes())
                .chain([0u8; 16])
                .collect(),
        ),
    ];
    for (name, ty, bytes) in cases {
        let mut w = Writer::new();
        let dims = [if ty == 0 { 2 } else { 32 }];
        w.tensor(name, &dims, ty, &bytes);
        let err = Gguf::parse(w.finish(), path).unwrap_err();
        assert!(
            matches!(&err, GgufError::NonFinite { name: n, .. } if n == name),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("nan.gguf"), "{err}");
    }
}

/// A tensor whose dimensions multiply past `usize` is a truncated file, not an overflow.
#[test]
fn dimensions_that_overflow_are_a_named_error() {
    let mut w = Writer::new();
    w.tensor("huge", &[u64::MAX / 2, 4], 0, &[0; 8]);
    let err = Gguf::parse(w.finish(), Path::new("huge.gguf")).unwrap_err();
    assert!(
        matches!(&err, GgufError::Truncated { what, .. } if what.contains("huge")),
        "{err}"
    );
}

/// Shapes no model has are refused with the key the file spells (a head count of 0 divided by
/// zero; key/value heads that do not divide the query heads; a NaN epsilon).
#[test]
fn impossible_model_shapes_are_refused_naming_the_key() {
    use fpo_model::llm::{LlamaConfig, LlmError};
    type Keys = Vec<(&'static str, u32)>;
    let file = |edit: &dyn Fn(&mut Keys), eps: f32| {
        let mut keys = vec![
            ("block_count", 2),
            ("embedding_length", 8),
            ("feed_forward_length", 16),
            ("attention.head_count", 2),
            ("attention.head_count_kv", 1),
            ("vocab_size", 3),
        ];
        edit(&mut keys);
        let mut w = Writer::new();
        w.kv_str("general.architecture", "llama");
        for (k, v) in keys {
            w.kv_u32(&format!("llama.{k}"), v);
        }
        w.kv_f32("llama.attention.layer_norm_rms_epsilon", eps);
        Gguf::parse(w.finish(), Path::new("shape.gguf")).unwrap()
    };
    let set = |key: &'static str, v: u32| {
        move |keys: &mut Vec<(&'static str, u32)>| {
            keys.iter_mut().find(|k| k.0 == key).unwrap().1 = v;
        }
    };
    assert!(LlamaConfig::from_gguf(&file(&|_| {}, 1e-5)).is_ok());
    for (g, key) in [
        (
            file(&set("attention.head_count", 0), 1e-5),
            "llama.attention.head_count",
        ),
        (
            file(&set("attention.head_count_kv", 0), 1e-5),
            "llama.attention.head_count_kv",
        ),
        (
            file(&set("attention.head_count_kv", 3), 1e-5),
            "llama.attention.head_count_kv",
        ),
        (file(&set("vocab_size", 0), 1e-5), "llama.vocab_size"),
        (
            file(&|_| {}, f32::NAN),
            "llama.attention.layer_norm_rms_epsilon",
        ),
        (file(&|_| {}, 0.0), "llama.attention.layer_norm_rms_epsilon"),
    ] {
        let err = LlamaConfig::from_gguf(&g).unwrap_err();
        assert!(
            matches!(&err, LlmError::Invalid { key: k, .. } if k == key),
            "{key}: {err}"
        );
        assert!(err.to_string().contains("shape.gguf"), "{err}");
    }
}
