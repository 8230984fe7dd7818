//! The paper's best-of-n loop on a Llama-family policy with LoRA adapters.
//!
//! Per iteration (one prompt): the oracle (the base model, no adapters) writes one reference
//! response and the policy `candidates` responses, all sampled with the same settings; the oracle
//! utility `U = clip(5 - mean NLL(prompt + response), -15, 5)` and the RM score `r = head(φ(text))`
//! of each are computed; every candidate is scored under all three variants' rules (so the log
//! shows how often the penalty changes the winner) and the run's own rule picks the winner. The RM
//! head then takes the gradient of the BCE of `σ(r_win - r_ref)` against `σ(U_win - U_ref)`, and the
//! policy the gradient of the winner's NLL through LoRA; both optimisers step every
//! `grad_accumulation` iterations.
//!
//! Each seed trains on its own shuffled draw of the prompts file; a probe set of prompts spread
//! over the file is held out and sampled every `probe.every` iterations (see [`probe`]). At each
//! RM step the head's actual response on the step's winners is logged beside its first-order
//! prediction.
//!
//! Randomness is a function of `(seed, iteration)`, so a run resumed from a checkpoint continues
//! exactly as the uninterrupted run would have, and the variants of one seed share their
//! reference responses and first candidates (common random numbers).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::lora::DropoutMasks;
use fpo_model::llm::{Adapters, Generation, Llama, LoadedModel, Message, Sampling};
use fpo_model::{BackendKind, device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{self, CheckpointState, ckpt_err, io, read_log, write_atomic};
use super::config::{RmInit, RmInput, TrainConfig};
use super::data::{Pair, Prompt, PromptSplit, read_pairs, read_prompts};
use super::select::{self, Candidate, Reference};
use crate::penalty::{Penalty, Variant, grad_term, sigmoid};
use crate::reward::{AdamW, LinearHead, bce, follower_response};

mod probe;
use crate::{Error, Result};

/// Tokens per batch when the oracle scores responses.
const SCORE_BATCH_TOKENS: usize = 2048;
/// Texts per batch of the sentence encoder.
const ENCODER_BATCH: usize = 16;

pub use fpo_rundir::VariantTiming;
pub use fpo_rundir::llm::{FollowerResponse, HeadFit, IterationLog, ProbeRow, VariantOutcome};

/// The models and data of one experiment, loaded once and shared by every variant and seed.
#[derive(Debug)]
pub struct Pipeline {
    cfg: TrainConfig,
    /// The rules every candidate is scored under, one per variant.
    rules: Vec<Penalty>,
    inference: LoadedModel,
    trainer: Llama,
    encoder: SentenceEncoder,
    /// The probe's prompts and the training pool.
    prompts: PromptSplit,
    /// The probe's prompts in the chat template.
    probe_ids: Vec<Vec<u32>>,
    head: LinearHead,
    head_fit: HeadFit,
    /// Seconds spent embedding the warm-start pairs in this process.
    embed_seconds: f64,
}

/// Everything that changes during a run.
struct State {
    iteration: usize,
    adapters: Adapters,
    optimizer: ModuleOptimizer,
    accumulated: GradientsAccumulator<Adapters>,
    head: LinearHead,
    head_optimizer: AdamW,
    head_grad: Vec<f64>,
    /// `(winner, reference)` features of the iterations whose gradients `head_grad` holds.
    pending: Vec<(Vec<f32>, Vec<f32>)>,
}

fn stream_rng(seed: u64, iteration: usize, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(iteration as u64 * 4 + stream);
    rng
}

/// The user message `text` in the chat template, cut so that the whole prompt has at most
/// `max` tokens.
fn chat_prompt(m: &LoadedModel, text: &str, max: usize) -> Result<Vec<u32>> {
    let tok = &m.tokenizer;
    let chat = |t: &str| tok.encode_chat(&[Message::new("user", t)], true);
    let ids = chat(text)?;
    if ids.len() <= max {
        return Ok(ids);
    }
    let content = tok.encode(text, false)?;
    let mut keep = content.len().saturating_sub(ids.len() - max);
    while keep > 0 {
        let ids = chat(&tok.decode(&content[..keep], true)?)?;
        if ids.len() <= max {
            return Ok(ids);
        }
        keep = keep.saturating_sub((ids.len() - max).max(1));
    }
    Err(crate::error::invalid(
        "train.max_prompt_tokens",
        format!("{max} tokens do not even hold the chat template"),
    ))
}

impl Pipeline {
    /// Loads the policy (twice: quantised for sampling and scoring, f32 on the autodiff device
    /// for the LoRA step), the encoder, the prompts, and fits the RM head's warm start. `cfg`'s
    /// paths must be resolved already. Everything runs on `backend`; on a CPU backend the
    /// sampling and scoring copy keeps the GGUF's quantised blocks.
    /// `rules` are the penalties every candidate is scored under (one per variant; the run's
    /// own variant picks its winner with its rule).
    pub fn load(cfg: &TrainConfig, rules: &[Penalty], backend: BackendKind) -> Result<Self> {
        cfg.validate()?;
        for p in rules {
            crate::error::check_non_negative("fpo.gamma", p.gamma)?;
        }
        let device_of = |autodiff| device(backend, autodiff);
        let inference = LoadedModel::load(&cfg.model, backend, false)?;
        let trainer = LoadedModel::load_on(&cfg.model, &device_of(true)?, false)?.model;
        let plain = device_of(false)?;
        let encoder = SentenceEncoder::load(&cfg.rm.encoder, &plain)?;
        let all = read_prompts(&cfg.prompts, 0)?;
        let prompts = PromptSplit::new(&cfg.prompts, all, cfg.probe.prompts, cfg.iterations)?;
        let probe_ids = prompts
            .probe
            .iter()
            .map(|p| chat_prompt(&inference, &p.text, cfg.max_prompt_tokens))
            .collect::<Result<Vec<_>>>()?;
        let mut pipeline = Self {
            cfg: cfg.clone(),
            rules: rules.to_vec(),
            inference,
            trainer,
            encoder,
            prompts,
            probe_ids,
            head: LinearHead::zeros(0),
            head_fit: HeadFit {
                init: cfg.rm.init,
                train_pairs: 0,
                heldout_pairs: 0,
                train_accuracy: 0.5,
                heldout_accuracy: 0.5,
                final_loss: std::f64::consts::LN_2,
            },
            embed_seconds: 0.0,
        };
        pipeline.fit_head()?;
        Ok(pipeline)
    }

    /// The pipeline for evaluating variants that are trained already (their `outcome.json`
    /// exists): the models and encoder load, the reward model's head is not fitted again and
    /// `fit` (the record of the fit those variants were trained with) is reported instead.
    /// Training a new variant with it starts from a zero head.
    pub fn load_trained(
        cfg: &TrainConfig,
        rules: &[Penalty],
        fit: HeadFit,
        backend: BackendKind,
    ) -> Result<Self> {
        let mut cfg = cfg.clone();
        cfg.rm.init = RmInit::Untrained;
        let mut pipeline = Self::load(&cfg, rules, backend)?;
        pipeline.head_fit = fit;
        Ok(pipeline)
    }

    /// The RM's text for a response to `prompt`.
    fn rm_text(&self, prompt: &str, response: &str) -> String {
        match self.cfg.rm.input {
            RmInput::Response => response.to_owned(),
            RmInput::PromptAndResponse => format!("{prompt}\n\n{response}"),
        }
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(self
            .encoder
            .embed(&refs, self.cfg.rm.max_tokens, ENCODER_BATCH)?)
    }

    /// Fits the head (Bradley-Terry) on the preference pairs, or starts it at zero.
    fn fit_head(&mut self) -> Result<()> {
        let dim = self.encoder.dim();
        let rm = &self.cfg.rm;
        if rm.init == RmInit::Untrained {
            self.head = LinearHead::zeros(dim);
            return Ok(());
        }
        let pairs: Vec<Pair> = read_pairs(&rm.pairs, rm.pairs_limit)?;
        let t = Instant::now();
        let texts = |side: fn(&Pair) -> &str| -> Vec<String> {
            pairs
                .iter()
                .map(|p| self.rm_text(&p.context, side(p)))
                .collect()
        };
        let chosen = self.embed(&texts(|p| &p.chosen))?;
        let rejected = self.embed(&texts(|p| &p.rejected))?;
        self.embed_seconds = t.elapsed().as_secs_f64();
        let feats: Vec<(Vec<f32>, Vec<f32>)> = chosen.into_iter().zip(rejected).collect();
        let held = ((feats.len() as f64 * rm.holdout).round() as usize).clamp(1, feats.len() - 1);
        let (train, test) = feats.split_at(feats.len() - held);
        let (head, losses) = LinearHead::fit_bradley_terry(dim, train, &rm.fit);
        self.head_fit = HeadFit {
            init: rm.init,
            train_pairs: train.len(),
            heldout_pairs: test.len(),
            train_accuracy: head.pair_accuracy(train),
            heldout_accuracy: head.pair_accuracy(test),
            final_loss: losses.last().copied().unwrap_or(f64::NAN),
        };
        self.head = head;
        Ok(())
    }

    /// How the RM head's warm start went.
    pub fn head_fit(&self) -> &HeadFit {
        &self.head_fit
    }

    /// Seconds this process spent embedding the warm-start pairs (0 when not fitted here).
    pub fn embed_seconds(&self) -> f64 {
        self.embed_seconds
    }

    /// The head every variant starts from.
    pub fn initial_head(&self) -> &LinearHead {
        &self.head
    }

    /// The inference model (sampling and oracle scoring).
    pub fn model(&self) -> &LoadedModel {
        &self.inference
    }

    /// The reward model's sentence encoder.
    pub fn encoder(&self) -> &SentenceEncoder {
        &self.encoder
    }

    /// A string that changes whenever a setting that shapes the run changes.
    fn fingerprint(&self) -> String {
        serde_json::to_string(&(&self.cfg, &self.rules)).expect("serialisable")
    }

    fn fresh_state(&self, seed: u64) -> Result<State> {
        let adapters = Adapters::new(
            &self.cfg.lora,
            &self.inference.config,
            seed,
            self.trainer.device(),
        )?;
        let dim = self.head.w.len();
        Ok(State {
            iteration: 0,
            adapters,
            optimizer: self.policy_optimizer(),
            accumulated: GradientsAccumulator::new(),
            head: self.head.clone(),
            head_optimizer: AdamW::new(dim + 1, self.cfg.rm.weight_decay),
            head_grad: vec![0.0; dim + 1],
            pending: Vec::new(),
        })
    }

    /// The sampling of the policy, the reference and the probe.
    fn sampling(&self) -> Sampling {
        Sampling {
            max_new_tokens: self.cfg.max_new_tokens,
            min_new_tokens: self.cfg.min_new_tokens,
            temperature: self.cfg.temperature,
            top_p: self.cfg.top_p,
        }
    }

    fn policy_optimizer(&self) -> ModuleOptimizer {
        AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(self.cfg.policy_weight_decay as f32)
            .init()
    }

    /// Trains one variant with one seed in `dir` (created if needed), resuming from the
    /// checkpoint there if one exists; a finished run (`outcome.json`) is read back, not rerun.
    /// `on_iteration` sees every new log line and the seconds it took. Returns the outcome and
    /// the iterations this call trained, with their wall time (timings stay out of the log).
    pub fn run_variant(
        &self,
        variant: Variant,
        seed: u64,
        dir: &Path,
        on_iteration: &mut dyn FnMut(&IterationLog, f64),
    ) -> Result<(VariantOutcome, VariantTiming)> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let outcome_path = dir.join("outcome.json");
        if outcome_path.exists() {
            let text = std::fs::read_to_string(&outcome_path).map_err(io(&outcome_path))?;
            let outcome = serde_json::from_str(&text).map_err(|e| ckpt_err(&outcome_path, e))?;
            return Ok((outcome, VariantTiming::default()));
        }
        let mut timing = VariantTiming::default();
        let mut state = match self.load_checkpoint(dir, variant, seed)? {
            Some(s) => s,
            None => self.fresh_state(seed)?,
        };
        let log_path = dir.join("log.jsonl");
        let mut logs = read_log(&log_path, state.iteration)?;
        // Rewrite the log up to the checkpoint: lines of iterations after it are redone.
        let mut text = Vec::new();
        for l in &logs {
            serde_json::to_writer(&mut text, l).expect("serialisable");
            text.push(b'\n');
        }
        write_atomic(&log_path, &text)?;
        let mut log_file = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let mut probe = probe::Probe::open(self, dir, seed, state.iteration)?;
        let order = self
            .prompts
            .training_order(self.cfg.iterations, self.cfg.shuffle, seed);
        for it in state.iteration..self.cfg.iterations {
            probe.maybe(self, &state, it, &mut timing)?;
            let started = Instant::now();
            let prompt = &self.prompts.pool[order[it]];
            let line = self.iteration(&mut state, variant, seed, it, prompt, &mut timing.stages)?;
            let seconds = started.elapsed().as_secs_f64();
            timing.iterations += 1;
            timing.seconds += seconds;
            serde_json::to_writer(&mut log_file, &line).expect("serialisable");
            log_file.write_all(b"\n").map_err(io(&log_path))?;
            log_file.flush().map_err(io(&log_path))?;
            on_iteration(&line, seconds);
            logs.push(line);
            state.iteration = it + 1;
            if state.iteration.is_multiple_of(self.cfg.checkpoint_every)
                && state.iteration < self.cfg.iterations
            {
                self.save_checkpoint(dir, &state, variant, seed)?;
            }
        }
        probe.maybe(self, &state, self.cfg.iterations, &mut timing)?;
        state
            .adapters
            .save(&self.cfg.lora, &dir.join("adapters.safetensors"))?;
        write_atomic(&dir.join("head.json"), &fpo_rundir::to_json(&state.head)?)?;
        let gamma = self.rules.iter().map(|p| p.gamma).fold(0.0, f64::max);
        let outcome = summarize(variant, seed, gamma, &logs, &state.adapters);
        write_atomic(&outcome_path, &fpo_rundir::to_json(&outcome)?)?;
        let ckpt = dir.join("checkpoint");
        if ckpt.exists() {
            std::fs::remove_dir_all(&ckpt).map_err(io(&ckpt))?;
        }
        Ok((outcome, timing))
    }

    /// One iteration of the loop; updates `st` (gradients, and the optimisers every
    /// `grad_accumulation` iterations).
    fn iteration(
        &self,
        st: &mut State,
        variant: Variant,
        seed: u64,
        it: usize,
        source: &Prompt,
        stages: &mut BTreeMap<String, f64>,
    ) -> Result<IterationLog> {
        let mut lap = Lap::new(stages);
        let cfg = &self.cfg;
        let m = &self.inference;
        let tok = &m.tokenizer;
        let prompt = &chat_prompt(m, &source.text, cfg.max_prompt_tokens)?;
        let sampling = self.sampling();
        let reference = m
            .model
            .generate(
                std::slice::from_ref(prompt),
                &sampling,
                &tok.eos,
                tok.pad,
                &mut stream_rng(seed, it, 0),
                None,
            )?
            .remove(0);
        lap.mark("reference sampling");
        let policy = st.adapters.valid();
        let candidates = m.model.generate(
            &vec![prompt.clone(); cfg.candidates],
            &sampling,
            &tok.eos,
            tok.pad,
            &mut stream_rng(seed, it, 1),
            Some(&policy),
        )?;
        let all: Vec<&Generation> = std::iter::once(&reference).chain(&candidates).collect();
        lap.mark("candidate sampling");

        // Oracle utility: the base model's mean NLL of prompt + response.
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = all
            .iter()
            .map(|g| (prompt.clone(), g.ids.clone()))
            .collect();
        let utilities: Vec<f64> = m
            .model
            .score(&seqs, None, SCORE_BATCH_TOKENS)?
            .iter()
            .map(|s| cfg.oracle.utility(s.mean_nll()))
            .collect();
        lap.mark("oracle scoring");

        // Reward model: features, scores and head gradients.
        let prompt_text = &source.text;
        let texts = all
            .iter()
            .map(|g| tok.decode(&g.ids, true))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let rm_texts: Vec<String> = texts.iter().map(|t| self.rm_text(prompt_text, t)).collect();
        let phi = self.embed(&rm_texts)?;
        let rewards: Vec<f64> = phi.iter().map(|p| st.head.score(p)).collect();
        let grads: Vec<Vec<f64>> = phi.iter().map(|p| st.head.param_grad(p)).collect();
        lap.mark("RM features");
        let (r_ref, u_ref, g_ref) = (rewards[0], utilities[0], &grads[0]);
        let reference = Reference {
            reward: r_ref,
            utility: u_ref,
        };
        let scored: Vec<Candidate> = (1..all.len())
            .map(|i| Candidate {
                reward: rewards[i],
                utility: utilities[i],
                grad_term: grad_term(&grads[i], Some(g_ref)),
            })
            .collect();
        let winners = select::winners(&self.rules, &scored, &reference);
        let rule = self
            .rules
            .iter()
            .find(|p| p.variant == variant)
            .ok_or_else(|| Error::InvalidConfig {
                key: "run.variants".into(),
                message: format!("no rule for the variant {variant}"),
            })?;
        let w = winners[&variant];
        let wi = w + 1;
        let penalty = select::penalty(rule, &scored[w], &reference);
        let label = sigmoid(utilities[wi] - u_ref);
        let self_influence = (sigmoid(rewards[wi] - r_ref) - label) * scored[w].grad_term;

        // RM update: BCE of σ(r_win - r_ref) against the soft label, accumulated.
        let accum = cfg.grad_accumulation as f64;
        let (rm_loss, rm_grad) = bce(&st.head, &phi[wi], &phi[0], label);
        for (a, g) in st.head_grad.iter_mut().zip(&rm_grad) {
            *a += g / accum;
        }
        st.pending.push((phi[wi].clone(), phi[0].clone()));
        lap.mark("selection and RM update");

        // Policy update: NLL of the winner's whole sequence through the adapters.
        let full: Vec<u32> = prompt.iter().chain(&candidates[w].ids).copied().collect();
        let mut dropout = DropoutMasks::new(
            cfg.lora.dropout,
            full.len(),
            seed ^ ((it as u64 + 1) << 20),
            self.trainer.device(),
        );
        let lp = self.trainer.token_logprobs(
            std::slice::from_ref(&full),
            Some(&st.adapters),
            dropout.as_mut(),
        )?;
        let nll = lp.tensor.mean().neg();
        let policy_loss = f64::from(nll.clone().into_scalar::<f32>());
        let grads_p = GradientsParams::from_grads((nll / accum).backward(), &st.adapters);
        st.accumulated.accumulate(&st.adapters, grads_p);
        let step = (it + 1).is_multiple_of(cfg.grad_accumulation) || it + 1 == cfg.iterations;
        let mut follower = None;
        if step {
            let g = st.accumulated.grads();
            st.adapters = st.optimizer.step(cfg.policy_lr, st.adapters.clone(), g);
            let hg = std::mem::replace(&mut st.head_grad, vec![0.0; rm_grad.len()]);
            let before = st.head.clone();
            st.head_optimizer.step(&mut st.head, &hg, cfg.rm.lr);
            let pending = std::mem::take(&mut st.pending);
            follower = Some(follower_response(
                &before, &st.head, &pending, &hg, cfg.rm.lr,
            ));
        }
        lap.mark("policy step");
        for (name, v) in [
            ("policy loss", policy_loss),
            ("RM loss", rm_loss),
            ("penalty", penalty),
        ] {
            if !v.is_finite() {
                return Err(crate::error::invalid(
                    "train",
                    format!("{name} is {v} at iteration {it} (seed {seed}, variant {variant})"),
                ));
            }
        }
        let n = cfg.candidates as f64;
        Ok(IterationLog {
            iteration: it,
            prompt_line: source.line,
            winner: w,
            winners,
            winner_utility: utilities[wi],
            winner_reward: rewards[wi],
            reference_utility: u_ref,
            reference_reward: r_ref,
            mean_candidate_utility: utilities[1..].iter().sum::<f64>() / n,
            penalty,
            self_influence,
            reward_gap: (rewards[wi] - r_ref).abs(),
            grad_term: scored[w].grad_term,
            rm_loss,
            policy_loss,
            step,
            follower,
            tokens_generated: all.iter().map(|g| g.ids.len()).sum(),
            winner_tokens: candidates[w].ids.len(),
            winner_text: texts[wi].clone(),
        })
    }

    /// Writes `dir/checkpoint/` for the state `st` of `variant` and `seed`.
    fn save_checkpoint(&self, dir: &Path, st: &State, variant: Variant, seed: u64) -> Result<()> {
        let state = CheckpointState {
            iteration: st.iteration,
            variant,
            seed,
            fingerprint: self.fingerprint(),
            head: st.head.clone(),
            head_optimizer: st.head_optimizer.clone(),
        };
        checkpoint::save(dir, &state, &self.cfg.lora, &st.adapters, &st.optimizer)
    }

    /// The state of the checkpoint in `dir`, if there is one.
    fn load_checkpoint(&self, dir: &Path, variant: Variant, seed: u64) -> Result<Option<State>> {
        let Some((saved, adapters, record)) = checkpoint::load(
            dir,
            variant,
            seed,
            &self.fingerprint(),
            &self.inference.config,
            self.trainer.device(),
        )?
        else {
            return Ok(None);
        };
        let dim = saved.head.w.len();
        Ok(Some(State {
            iteration: saved.iteration,
            adapters,
            optimizer: self.policy_optimizer().load_record(record),
            accumulated: GradientsAccumulator::new(),
            head: saved.head,
            head_optimizer: saved.head_optimizer,
            head_grad: vec![0.0; dim + 1],
            pending: Vec::new(),
        }))
    }
}

/// The mean of `v` (NaN when empty).
fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

fn summarize(
    variant: Variant,
    seed: u64,
    gamma: f64,
    logs: &[IterationLog],
    adapters: &Adapters,
) -> VariantOutcome {
    let n = logs.len();
    let q = (n / 4).max(1).min(n);
    let followers = || logs.iter().filter_map(|l| l.follower.as_ref());
    let first = &logs[..q];
    let last = &logs[n - q..];
    let winner_change_share = Variant::ALL
        .into_iter()
        .map(|v| {
            let changed = logs.iter().filter(|l| l.winners[&v] != l.winner).count();
            (v, changed as f64 / n.max(1) as f64)
        })
        .collect();
    VariantOutcome {
        variant,
        seed,
        iterations: n,
        winner_change_share,
        winner_utility_first_quarter: mean(first.iter().map(|l| l.winner_utility)),
        winner_utility_last_quarter: mean(last.iter().map(|l| l.winner_utility)),
        winner_reward_first_quarter: mean(first.iter().map(|l| l.winner_reward)),
        winner_reward_last_quarter: mean(last.iter().map(|l| l.winner_reward)),
        mean_self_influence: mean(logs.iter().map(|l| l.self_influence)),
        mean_penalty: mean(logs.iter().map(|l| l.penalty)),
        mean_reward_gap: mean(logs.iter().map(|l| l.reward_gap)),
        penalty_to_gap: mean(logs.iter().map(|l| gamma * l.grad_term))
            / mean(logs.iter().map(|l| l.reward_gap)),
        follower_delta_reward: mean(followers().map(|f| f.delta_reward)),
        follower_predicted_delta_reward: mean(followers().map(|f| f.predicted_delta_reward)),
        tokens_generated: logs.iter().map(|l| l.tokens_generated).sum(),
        adapter_abs_sum: adapters
            .flat_values()
            .iter()
            .map(|v| f64::from(v.abs()))
            .sum(),
    }
}

pub use fpo_rundir::variant_dir;

/// Seconds per stage of an iteration, added to `stages` under each stage's name.
struct Lap<'a> {
    stages: &'a mut BTreeMap<String, f64>,
    since: Instant,
}

impl<'a> Lap<'a> {
    fn new(stages: &'a mut BTreeMap<String, f64>) -> Self {
        Self {
            stages,
            since: Instant::now(),
        }
    }

    /// Adds the seconds since the last mark to `stage`.
    fn mark(&mut self, stage: &str) {
        let now = Instant::now();
        *self.stages.entry(stage.to_owned()).or_default() += (now - self.since).as_secs_f64();
        self.since = now;
    }
}
