//! A tiny random Llama (grouped-query attention, untied head) written as a Hugging Face
//! safetensors folder, and helpers to run it.

use std::collections::HashMap;
use std::path::Path;

use fpo_model::llm::weights::WeightSource;
use fpo_model::llm::{Adapters, Input, Llama, LlamaConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

pub const V: usize = 40;
pub const H: usize = 32;
pub const I: usize = 48;
pub const L: usize = 2;
pub const NH: usize = 4;
pub const NKV: usize = 2;
pub const HD: usize = 8;
pub const THETA: f64 = 10_000.0;
pub const EPS: f64 = 1e-5;

pub type Weights = Vec<(String, Vec<usize>, Vec<f32>)>;

pub fn random_weights(seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = Weights::new();
    let mut add = |name: String, shape: Vec<usize>, norm: bool| {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                if norm {
                    1.0 + rng.random_range(-0.2f32..0.2)
                } else {
                    rng.random_range(-0.3f32..0.3)
                }
            })
            .collect();
        w.push((name, shape, data));
    };
    add("model.embed_tokens.weight".into(), vec![V, H], false);
    for l in 0..L {
        let p = |n: &str| format!("model.layers.{l}.{n}");
        add(p("input_layernorm.weight"), vec![H], true);
        add(p("self_attn.q_proj.weight"), vec![NH * HD, H], false);
        add(p("self_attn.k_proj.weight"), vec![NKV * HD, H], false);
        add(p("self_attn.v_proj.weight"), vec![NKV * HD, H], false);
        add(p("self_attn.o_proj.weight"), vec![H, NH * HD], false);
        add(p("post_attention_layernorm.weight"), vec![H], true);
        add(p("mlp.gate_proj.weight"), vec![I, H], false);
        add(p("mlp.up_proj.weight"), vec![I, H], false);
        add(p("mlp.down_proj.weight"), vec![H, I], false);
    }
    add("model.norm.weight".into(), vec![H], true);
    add("lm_head.weight".into(), vec![V, H], false);
    w
}

pub fn write_hf(dir: &Path, w: &Weights) {
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": V, "hidden_size": H, "intermediate_size": I,
        "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
        "rope_theta": THETA, "rms_norm_eps": EPS, "max_position_embeddings": 128,
        "tie_word_embeddings": false
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let bytes: Vec<Vec<u8>> = w
        .iter()
        .map(|(_, _, d)| d.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = w
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(
        views,
        None::<HashMap<String, String>>,
        &dir.join("model.safetensors"),
    )
    .unwrap();
}

pub fn from_hf(dir: &Path, dev: &burn::tensor::Device) -> Llama {
    let config = LlamaConfig::from_hf_config(&dir.join("config.json")).unwrap();
    let src = WeightSource::safetensors_dir(dir).unwrap();
    Llama::from_source(&config, &src, dir, dev, true).unwrap()
}

pub fn all_logits(m: &Llama, ids: &[u32], adapters: Option<&Adapters>) -> Vec<f32> {
    let h = m.forward(&Input::single(ids, 0), None, adapters, None);
    m.logits(h.reshape([ids.len(), H]))
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap()
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn randomized(adapters: Adapters, seed: u64, dev: &burn::tensor::Device) -> Adapters {
    // Give B random values so that the adapters change the model.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = adapters;
    for l in &mut out.layers {
        for p in [&mut l.q, &mut l.k, &mut l.v, &mut l.o]
            .into_iter()
            .flatten()
        {
            let [r, o] = p.b.val().dims();
            let data: Vec<f32> = (0..r * o).map(|_| rng.random_range(-0.2f32..0.2)).collect();
            p.b = burn::module::Param::from_tensor(burn::tensor::Tensor::from_data(
                burn::tensor::TensorData::new(data, [r, o]),
                (dev, burn::tensor::DType::F32),
            ));
        }
    }
    out
}

/// The host policy step against burn's autodiff on `m` (an autodiff copy) for `seq` with
/// `adapters` and dropout `p` (masks from `seed`): the largest log-prob difference, and per
/// adapter matrix its name, the largest gradient difference and the gradient's largest entry.
pub fn host_step_against_autodiff(
    m: &Llama,
    adapters: &Adapters,
    seq: &[u32],
    p: f64,
    seed: u64,
) -> (f32, Vec<(String, f32, f32)>) {
    use burn::optim::GradientsParams;
    use fpo_model::llm::lora::DropoutMasks;
    let dev = m.device().clone();
    let seq = seq.to_vec();
    let mut drop = DropoutMasks::new(p, seq.len(), seed, &dev);
    let lp = m
        .token_logprobs(std::slice::from_ref(&seq), Some(adapters), drop.as_mut())
        .unwrap();
    let burn_lp: Vec<f32> = lp
        .tensor
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .unwrap();
    let grads = GradientsParams::from_grads(lp.tensor.mean().neg().backward(), adapters);
    let step = m.host_step().expect("a CPU model steps on the host");
    let mut drop = DropoutMasks::new(p, seq.len(), seed, &dev);
    let host = step.nll_gradients(&seq, adapters, drop.as_mut());
    let lp_diff = max_diff(&burn_lp, &host.logprobs);
    let host_params = host.to_params(adapters, 1.0);
    let mut out = Vec::new();
    for (li, l) in adapters.layers.iter().enumerate() {
        for (slot, pair) in ["q", "k", "v", "o"].iter().zip([&l.q, &l.k, &l.v, &l.o]) {
            let Some(pair) = pair else { continue };
            for (which, param) in [("A", &pair.a), ("B", &pair.b)] {
                let get = |g: &GradientsParams| -> Vec<f32> {
                    g.get::<2>(param.id)
                        .unwrap_or_else(|| panic!("no gradient for layer {li} {slot} {which}"))
                        .into_data()
                        .convert::<f32>()
                        .try_into_vec()
                        .unwrap()
                };
                let (want, got) = (get(&grads), get(&host_params));
                let largest = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                out.push((
                    format!("layer {li} {slot} {which}"),
                    max_diff(&want, &got),
                    largest,
                ));
            }
        }
    }
    (lp_diff, out)
}
