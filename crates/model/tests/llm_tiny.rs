//! A tiny random Llama (grouped-query attention, untied head) that the test writes itself, as a
//! Hugging Face safetensors folder and as a GGUF file (Q/K rows permuted as llama.cpp does):
//! both loaders give the same model, the decoder matches a naive f64 forward written here, and
//! LoRA adapters behave (fresh = no-op, merged = unmerged, save/load, training lowers the NLL).

mod common;

use std::path::Path;

use burn::optim::{AdamWConfig, GradientsParams};
use common::Writer;
use common::tiny::*;
use fpo_model::gguf::Gguf;
use fpo_model::llm::weights::WeightSource;
use fpo_model::llm::{Adapters, Llama, LlamaConfig, LoraConfig};
use fpo_model::{BackendKind, device};

/// llama.cpp's permutation of Q/K rows (HF row `h d + half d/2 + i` -> GGUF row `h d + 2 i + half`).
fn permute(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let d = rows / heads;
    let mut out = vec![0.0; rows * cols];
    for h in 0..heads {
        for half in 0..2 {
            for i in 0..d / 2 {
                let (hf, gg) = (h * d + half * (d / 2) + i, h * d + 2 * i + half);
                out[gg * cols..(gg + 1) * cols].copy_from_slice(&w[hf * cols..(hf + 1) * cols]);
            }
        }
    }
    out
}

fn gguf_bytes(w: &Weights) -> Vec<u8> {
    let mut g = Writer::new();
    g.kv_str("general.architecture", "llama");
    for (k, v) in [
        ("block_count", L),
        ("embedding_length", H),
        ("feed_forward_length", I),
        ("attention.head_count", NH),
        ("attention.head_count_kv", NKV),
        ("context_length", 128),
        ("vocab_size", V),
    ] {
        g.kv_u32(&format!("llama.{k}"), v as u32);
    }
    g.kv_f32("llama.rope.freq_base", THETA as f32);
    g.kv_f32("llama.attention.layer_norm_rms_epsilon", EPS as f32);
    for (name, shape, data) in w {
        let gname = name
            .replace("model.embed_tokens.weight", "token_embd.weight")
            .replace("model.norm.weight", "output_norm.weight")
            .replace("lm_head.weight", "output.weight")
            .replace("model.layers.", "blk.")
            .replace("input_layernorm", "attn_norm")
            .replace("post_attention_layernorm", "ffn_norm")
            .replace("self_attn.q_proj", "attn_q")
            .replace("self_attn.k_proj", "attn_k")
            .replace("self_attn.v_proj", "attn_v")
            .replace("self_attn.o_proj", "attn_output")
            .replace("mlp.gate_proj", "ffn_gate")
            .replace("mlp.up_proj", "ffn_up")
            .replace("mlp.down_proj", "ffn_down");
        let data = if name.contains("q_proj") {
            permute(data, shape[0], shape[1], NH)
        } else if name.contains("k_proj") {
            permute(data, shape[0], shape[1], NKV)
        } else {
            data.clone()
        };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        g.tensor(&gname, &dims, 0, &bytes);
    }
    g.finish()
}

/// Naive f64 forward of the whole sequence: logits at every position.
fn reference(w: &Weights, ids: &[u32]) -> Vec<f32> {
    let get = |n: &str| -> Vec<f64> {
        w.iter()
            .find(|(m, _, _)| m == n)
            .unwrap()
            .2
            .iter()
            .map(|&x| f64::from(x))
            .collect()
    };
    let matvec = |m: &[f64], x: &[f64], rows: usize| -> Vec<f64> {
        let cols = x.len();
        (0..rows)
            .map(|r| (0..cols).map(|c| m[r * cols + c] * x[c]).sum())
            .collect()
    };
    let norm = |x: &[f64], g: &[f64]| -> Vec<f64> {
        let r = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + EPS).sqrt();
        x.iter().zip(g).map(|(v, g)| v / r * g).collect()
    };
    let rope = |v: &mut [f64], pos: usize| {
        for i in 0..HD / 2 {
            let f = 1.0 / THETA.powf((2 * i) as f64 / HD as f64);
            let (s, c) = (pos as f64 * f).sin_cos();
            let (a, b) = (v[i], v[i + HD / 2]);
            v[i] = a * c - b * s;
            v[i + HD / 2] = b * c + a * s;
        }
    };
    let emb = get("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&t| emb[t as usize * H..(t as usize + 1) * H].to_vec())
        .collect();
    for l in 0..L {
        let p = |n: &str| get(&format!("model.layers.{l}.{n}"));
        let (wq, wk, wv, wo) = (
            p("self_attn.q_proj.weight"),
            p("self_attn.k_proj.weight"),
            p("self_attn.v_proj.weight"),
            p("self_attn.o_proj.weight"),
        );
        let (g1, g2) = (
            p("input_layernorm.weight"),
            p("post_attention_layernorm.weight"),
        );
        let (wg, wu, wd) = (
            p("mlp.gate_proj.weight"),
            p("mlp.up_proj.weight"),
            p("mlp.down_proj.weight"),
        );
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let xn = norm(x, &g1);
            let mut q = matvec(&wq, &xn, NH * HD);
            let mut k = matvec(&wk, &xn, NKV * HD);
            for h in 0..NH {
                rope(&mut q[h * HD..(h + 1) * HD], pos);
            }
            for h in 0..NKV {
                rope(&mut k[h * HD..(h + 1) * HD], pos);
            }
            qs.push(q);
            ks.push(k);
            vs.push(matvec(&wv, &xn, NKV * HD));
        }
        for t in 0..xs.len() {
            let mut att = vec![0.0; NH * HD];
            for h in 0..NH {
                let kh = h / (NH / NKV);
                let scores: Vec<f64> = (0..=t)
                    .map(|s| {
                        (0..HD)
                            .map(|d| qs[t][h * HD + d] * ks[s][kh * HD + d])
                            .sum::<f64>()
                            / (HD as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().copied().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for s in 0..=t {
                    for d in 0..HD {
                        att[h * HD + d] += e[s] / z * vs[s][kh * HD + d];
                    }
                }
            }
            let o = matvec(&wo, &att, H);
            for d in 0..H {
                xs[t][d] += o[d];
            }
            let xn = norm(&xs[t], &g2);
            let g = matvec(&wg, &xn, I);
            let u = matvec(&wu, &xn, I);
            let act: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let dn = matvec(&wd, &act, H);
            for d in 0..H {
                xs[t][d] += dn[d];
            }
        }
    }
    let (gn, head) = (get("model.norm.weight"), get("lm_head.weight"));
    xs.iter()
        .flat_map(|x| matvec(&head, &norm(x, &gn), V))
        .map(|v| v as f32)
        .collect()
}

const IDS: [u32; 7] = [3, 17, 5, 39, 0, 22, 8];

#[test]
fn safetensors_and_gguf_give_the_model_of_the_naive_reference() {
    let dir = tempfile::tempdir().unwrap();
    let w = random_weights(1);
    write_hf(dir.path(), &w);
    let dev = device(BackendKind::Flex, false).unwrap();
    let hf = from_hf(dir.path(), &dev);
    assert!(!hf.config.tie_embeddings);

    let g = Gguf::parse(gguf_bytes(&w), Path::new("tiny.gguf")).unwrap();
    let config = LlamaConfig::from_gguf(&g).unwrap();
    // GGUF stores epsilon as f32.
    assert_eq!(
        config,
        LlamaConfig {
            rms_eps: f64::from(EPS as f32),
            ..hf.config.clone()
        }
    );
    let gg = Llama::from_source(
        &config,
        &WeightSource::Gguf(Box::new(g)),
        Path::new("tiny.gguf"),
        &dev,
        true,
    )
    .unwrap();

    let a = all_logits(&hf, &IDS, None);
    let b = all_logits(&gg, &IDS, None);
    assert!(
        max_diff(&a, &b) < 1e-6,
        "safetensors vs gguf: {}",
        max_diff(&a, &b)
    );
    let r = reference(&w, &IDS);
    assert!(
        max_diff(&a, &r) < 1e-4,
        "burn vs naive f64: {}",
        max_diff(&a, &r)
    );
}

#[test]
fn a_wrong_shape_or_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = random_weights(2);
    w.retain(|(n, _, _)| n != "model.layers.1.mlp.up_proj.weight");
    write_hf(dir.path(), &w);
    let config = LlamaConfig::from_hf_config(&dir.path().join("config.json")).unwrap();
    let src = WeightSource::safetensors_dir(dir.path()).unwrap();
    let dev = device(BackendKind::Flex, false).unwrap();
    let err = Llama::from_source(&config, &src, dir.path(), &dev, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("model.safetensors"),
        "{err}"
    );

    let mut w = random_weights(2);
    w[0].1 = vec![H, V];
    write_hf(dir.path(), &w);
    let src = WeightSource::safetensors_dir(dir.path()).unwrap();
    let err = Llama::from_source(&config, &src, dir.path(), &dev, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.embed_tokens.weight") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn lora_fresh_is_a_no_op_merged_equals_unmerged_and_survives_save_load() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), &random_weights(3));
    let dev = device(BackendKind::Flex, false).unwrap();
    let m = from_hf(dir.path(), &dev);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["q".into(), "k".into(), "v".into(), "o".into()],
    };
    let fresh = Adapters::new(&cfg, &m.config, 7, &dev).unwrap();
    let base = all_logits(&m, &IDS, None);
    assert_eq!(max_diff(&base, &all_logits(&m, &IDS, Some(&fresh))), 0.0);

    let ad = randomized(fresh, 8, &dev);
    let unmerged = all_logits(&m, &IDS, Some(&ad));
    assert!(
        max_diff(&base, &unmerged) > 1e-2,
        "the adapters change the model"
    );
    let merged = all_logits(&m.merged(&ad), &IDS, None);
    assert!(
        max_diff(&merged, &unmerged) < 1e-5,
        "merged vs unmerged: {}",
        max_diff(&merged, &unmerged)
    );

    let path = dir.path().join("adapters.safetensors");
    ad.save(&cfg, &path).unwrap();
    let (back, cfg_back) = Adapters::load(&path, &m.config, &dev).unwrap();
    assert_eq!(cfg_back, cfg);
    assert_eq!(back.flat_values(), ad.flat_values());
    assert_eq!(all_logits(&m, &IDS, Some(&back)), unmerged);
    // An adapter file whose settings say rank 0: refused naming the file and the setting.
    let bytes = std::fs::read(&path).unwrap();
    let (from, to) = (br#"\"rank\":4"#, br#"\"rank\":0"#);
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("rank in the header");
    let mut zero = bytes.clone();
    zero[at..at + from.len()].copy_from_slice(to);
    let bad_path = dir.path().join("rank0.safetensors");
    std::fs::write(&bad_path, zero).unwrap();
    let err = Adapters::load(&bad_path, &m.config, &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rank0.safetensors") && err.contains("lora_config"),
        "{err}"
    );

    // Only q and v: k and o carry nothing.
    let qv = LoraConfig {
        targets: vec!["q".into(), "v".into()],
        ..cfg
    };
    let a = Adapters::new(&qv, &m.config, 7, &dev).unwrap();
    assert!(
        a.layers
            .iter()
            .all(|l| l.q.is_some() && l.k.is_none() && l.v.is_some() && l.o.is_none())
    );
    let bad = LoraConfig {
        targets: vec!["gate".into()],
        ..qv
    };
    assert!(
        Adapters::new(&bad, &m.config, 7, &dev)
            .unwrap_err()
            .to_string()
            .contains("gate")
    );
}

#[test]
fn adamw_on_the_adapters_lowers_the_nll_and_only_the_adapters_move() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), &random_weights(4));
    let dev = device(BackendKind::Flex, true).unwrap();
    let m = from_hf(dir.path(), &dev);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.1,
        targets: vec!["q".into(), "v".into()],
    };
    let mut ad = Adapters::new(&cfg, &m.config, 1, &dev).unwrap();
    let seq = IDS.to_vec();
    let nll = |ad: &Adapters| -> f32 {
        let lp = m
            .token_logprobs(std::slice::from_ref(&seq), Some(ad), None)
            .unwrap();
        -lp.tensor.mean().into_scalar::<f32>()
    };
    let before = nll(&ad);
    let base = all_logits(&m, &IDS, None);
    let mut optim = AdamWConfig::new().init();
    for step in 0..20 {
        let mut drop = fpo_model::llm::lora::DropoutMasks::new(cfg.dropout, seq.len(), step, &dev);
        let lp = m
            .token_logprobs(std::slice::from_ref(&seq), Some(&ad), drop.as_mut())
            .unwrap();
        let loss = lp.tensor.mean().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &ad);
        ad = optim.step(1e-2, ad, grads);
    }
    let after = nll(&ad);
    assert!(after < before - 0.05, "NLL {before} -> {after}");
    assert_eq!(
        all_logits(&m, &IDS, None),
        base,
        "base weights are constants"
    );
}

/// `KL(p || q)` of two logit rows written out here: softmax in `f64`, then `Σ p (log p - log q)`.
fn naive_kl(p: &[f32], q: &[f32]) -> f64 {
    let softmax = |x: &[f32]| {
        let e: Vec<f64> = x.iter().map(|&v| f64::from(v).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|v| v / z).collect::<Vec<_>>()
    };
    let (p, q) = (softmax(p), softmax(q));
    p.iter().zip(&q).map(|(a, b)| a * (a / b).ln()).sum()
}

/// Catches a KL taken at the wrong positions (shifted by one, or over the prompt), in the wrong
/// direction (`KL(base || policy)`), from tempered or top-p distributions, or between two
/// passes of the same model.
#[test]
fn token_kl_is_the_exact_kl_of_the_adapted_model_from_the_base_one() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), &random_weights(11));
    let dev = device(BackendKind::Flex, false).unwrap();
    let m = from_hf(dir.path(), &dev);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: vec!["q".into(), "k".into(), "v".into(), "o".into()],
    };
    let fresh = Adapters::new(&cfg, &m.config, 3, &dev).unwrap();
    let (prompt, cont) = (IDS[..3].to_vec(), IDS[3..].to_vec());
    let seqs = vec![(prompt.clone(), cont.clone())];
    let zero = m.token_kl(&seqs, &fresh).unwrap().remove(0);
    assert_eq!(zero.len(), cont.len());
    assert!(zero.iter().all(|&k| k == 0.0), "fresh adapters: {zero:?}");

    let ad = randomized(fresh, 5, &dev);
    let kl = m.token_kl(&seqs, &ad).unwrap().remove(0);
    let (policy, base) = (all_logits(&m, &IDS, Some(&ad)), all_logits(&m, &IDS, None));
    let row = |l: &[f32], t: usize| l[t * V..(t + 1) * V].to_vec();
    for (j, &k) in kl.iter().enumerate() {
        let t = prompt.len() - 1 + j;
        let want = naive_kl(&row(&policy, t), &row(&base, t));
        assert!(
            k > 1e-6,
            "token {j}: the adapters move the distribution ({k})"
        );
        assert!(
            (k - want).abs() < 1e-4 * want.max(1e-3),
            "token {j}: {k} vs {want}"
        );
        let reverse = naive_kl(&row(&base, t), &row(&policy, t));
        assert!((k - reverse).abs() > 1e-7, "the direction is told apart");
    }
}

/// The host policy step (its forward kept, its backward written out) gives burn autodiff's
/// log-probs and every adapter gradient, with dropout and adapters on q, k, v and o: catches a
/// wrong sign or factor anywhere in the backward (RMSNorm, SwiGLU, the softmax, RoPE's
/// rotation, the adapters' scale or masks), masks drawn in another order, a grouped query head
/// sent to the wrong key/value head, or a causal mask off by one.
#[test]
fn host_step_equals_burn_autodiff() {
    let dir = tempfile::tempdir().unwrap();
    write_hf(dir.path(), &random_weights(5));
    let dev = device(BackendKind::Flex, true).unwrap();
    let m = from_hf(dir.path(), &dev);
    let cfg = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout: 0.2,
        targets: ["q", "k", "v", "o"].map(String::from).to_vec(),
    };
    let ad = randomized(Adapters::new(&cfg, &m.config, 2, &dev).unwrap(), 3, &dev);
    let seq: Vec<u32> = (0..23u32).map(|i| (i * 17 + 5) % V as u32).collect();
    for p in [0.0, cfg.dropout] {
        let (lp_diff, grads) = host_step_against_autodiff(&m, &ad, &seq, p, 9);
        assert!(lp_diff < 1e-5, "dropout {p}: log-probs differ by {lp_diff}");
        assert_eq!(grads.len(), L * 4 * 2, "every adapter matrix");
        for (name, diff, largest) in grads {
            assert!(
                largest > 1e-3,
                "{name}: a gradient of {largest} checks nothing"
            );
            assert!(
                diff <= 1e-5 + 1e-4 * largest,
                "dropout {p}, {name}: host and autodiff gradients differ by {diff} (largest {largest})"
            );
        }
    }
}
