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
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use fpo_model::encoder::SentenceEncoder;
use fpo_model::llm::lora::DropoutMasks;
use fpo_model::llm::{
    Adapters, Generation, Llama, LoadedModel, Message, PromptPass, SampleGroup, Sampling,
    decoder::HostStep,
};
use fpo_model::{BackendKind, device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::checkpoint::{self, CheckpointState, ckpt_err, io, read_log, write_atomic};
use super::config::{RmBackbone, RmConfig, RmFeatures, RmInit, RmInput, TrainConfig};
use super::data::{Pair, Prompt, PromptSplit, read_pairs, read_prompts};
use super::select::{self, Candidate, Reference};
use crate::penalty::{Penalty, Variant, grad_term, sigmoid};
use crate::reward::{AdamW, Head, bce, follower_response};

mod probe;
use crate::{Error, Result};

/// Tokens per batch when the oracle scores responses.
const SCORE_BATCH_TOKENS: usize = 2048;
/// Texts per batch of the sentence encoder.
const ENCODER_BATCH: usize = 16;

pub use fpo_rundir::VariantTiming;
pub use fpo_rundir::llm::{FollowerResponse, HeadFit, IterationLog, ProbeRow, VariantOutcome};

/// The warm start's preference pairs as (chosen, rejected) features, and the seconds their
/// embedding took.
type PairFeatures = (Vec<(Vec<f32>, Vec<f32>)>, f64);

/// The features of `[train.rm] pairs` ([`features`]; `base` as there).
fn pair_features(
    rm: &RmConfig,
    encoder: &SentenceEncoder,
    base: Option<&LoadedModel>,
) -> Result<PairFeatures> {
    let pairs: Vec<Pair> = read_pairs(&rm.pairs, rm.pairs_limit)?;
    let t = Instant::now();
    let texts = |side: fn(&Pair) -> &str| -> Vec<String> {
        pairs
            .iter()
            .map(|p| rm_text(rm, &p.context, side(p)))
            .collect()
    };
    let chosen = features(rm, encoder, base, &texts(|p| &p.chosen))?;
    let rejected = features(rm, encoder, base, &texts(|p| &p.rejected))?;
    Ok((
        chosen.into_iter().zip(rejected).collect(),
        t.elapsed().as_secs_f64(),
    ))
}

/// The RM's text for a response to `prompt`.
fn rm_text(rm: &RmConfig, prompt: &str, response: &str) -> String {
    match rm.input {
        RmInput::Response => response.to_owned(),
        RmInput::PromptAndResponse => format!("{prompt}\n\n{response}"),
    }
}

/// The RM's features of `texts`: pooled by the encoder or from the base model's hidden states
/// (`[train.rm] backbone`; `base` is the policy's base model, needed for those), normalised or
/// raw, scaled (`features`, `feature_scale`). The warm start, the loop and the probe all read
/// features through here.
fn features(
    rm: &RmConfig,
    encoder: &SentenceEncoder,
    base: Option<&LoadedModel>,
    texts: &[String],
) -> Result<Vec<Vec<f32>>> {
    let normalise = rm.features == RmFeatures::Normalised;
    let mut phi = match (rm.backbone, base) {
        (RmBackbone::Encoder, _) => {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            encoder.embed_pooled(&refs, rm.max_tokens, ENCODER_BATCH, normalise)?
        }
        (backbone, Some(m)) => {
            let seqs = texts
                .iter()
                .map(|t| {
                    let mut ids = m.tokenizer.encode(t, false)?;
                    ids.truncate(rm.max_tokens);
                    Ok(ids)
                })
                .collect::<Result<Vec<_>>>()?;
            let mut phi = m
                .model
                .pooled_hidden(&seqs, backbone == RmBackbone::BaseLast);
            if normalise {
                for p in &mut phi {
                    let norm = p.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    p.iter_mut().for_each(|x| *x /= norm);
                }
            }
            phi
        }
        (_, None) => unreachable!("the base model's features need the base model"),
    };
    if rm.feature_scale != 1.0 {
        let s = rm.feature_scale as f32;
        phi.iter_mut().flatten().for_each(|x| *x *= s);
    }
    Ok(phi)
}

/// Where the policy's gradient is computed.
#[derive(Debug)]
enum PolicyStep {
    /// On the host kernels (a CPU backend), from the inference copy's weights.
    Host(HostStep),
    /// Through burn's autodiff, on a training copy of the model.
    Autodiff(Llama),
}

/// The models and data of one experiment, loaded once and shared by every variant and seed.
#[derive(Debug)]
pub struct Pipeline {
    cfg: TrainConfig,
    /// The rules every candidate is scored under, one per variant.
    rules: Vec<Penalty>,
    inference: LoadedModel,
    /// The device the adapters live on (autodiff).
    train_device: Device,
    policy_step: PolicyStep,
    encoder: SentenceEncoder,
    /// The probe's prompts and the training pool.
    prompts: PromptSplit,
    /// The probe's prompts in the chat template.
    probe_ids: Vec<Vec<u32>>,
    head: Head,
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
    head: Head,
    head_optimizer: AdamW,
    head_grad: Vec<f64>,
    /// `(winner, reference)` features of the iterations whose gradients `head_grad` holds.
    pending: Vec<(Vec<f32>, Vec<f32>)>,
    /// Their BCE labels `σ(U_win - U_ref)` (for `head_steps` past the first).
    pending_labels: Vec<f64>,
}

/// One variant's run in progress: its state, log, probe and this process's timings.
struct VariantRun {
    variant: Variant,
    dir: PathBuf,
    state: State,
    logs: Vec<IterationLog>,
    log_file: std::fs::File,
    log_path: PathBuf,
    probe: probe::Probe,
    timing: VariantTiming,
}

impl VariantRun {
    /// Appends an iteration's line to the log and advances the state past it.
    fn record(
        &mut self,
        line: IterationLog,
        seconds: f64,
        on_iteration: &mut dyn FnMut(Variant, &IterationLog, f64),
    ) -> Result<()> {
        self.timing.iterations += 1;
        self.timing.seconds += seconds;
        let mut text = serde_json::to_vec(&line).expect("serialisable");
        text.push(b'\n');
        self.log_file
            .write_all(&text)
            .and_then(|()| self.log_file.flush())
            .map_err(io(&self.log_path))?;
        on_iteration(self.variant, &line, seconds);
        self.state.iteration = line.iteration + 1;
        self.logs.push(line);
        Ok(())
    }
}

/// A variant's folder as [`Pipeline::run_variants`] finds it.
enum Opened {
    Finished(VariantOutcome),
    Running(Box<VariantRun>),
}

/// What the variants of an iteration share: the seed and iteration, the prompt, the base
/// model's pass over it, the reference response and its oracle utility.
struct Shared<'a> {
    seed: u64,
    it: usize,
    source: &'a Prompt,
    prompt: &'a [u32],
    base: &'a PromptPass,
    reference: &'a Generation,
    reference_utility: f64,
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
        let rm = &cfg.rm;
        let warm = rm.init != RmInit::Untrained;
        // The policy's model and the reward model's encoder load side by side, and with the
        // encoder as the backbone the warm start's pairs embed beside the policy's model too:
        // each leaves a thread waiting at times (reading, parsing) that the other fills.
        let (llm, rm_side) = rayon::join(
            || -> Result<_> {
                let inference = LoadedModel::load(&cfg.model, backend, false)?;
                let train_device = device(backend, true)?;
                // On a CPU backend the policy step runs on the host kernels from the inference
                // copy's f32 weights (the file's values, as a training copy would hold them):
                // no second copy of the model is read.
                let policy_step = match inference.model.host_step() {
                    Some(host) => PolicyStep::Host(host),
                    None => PolicyStep::Autodiff(
                        LoadedModel::load_on(&cfg.model, &train_device, false)?.model,
                    ),
                };
                Ok((inference, train_device, policy_step))
            },
            || -> Result<_> {
                let encoder = SentenceEncoder::load(&rm.encoder, &device(backend, false)?)?;
                let pairs = if warm && rm.backbone == RmBackbone::Encoder {
                    Some(pair_features(rm, &encoder, None)?)
                } else {
                    None
                };
                Ok((encoder, pairs))
            },
        );
        let (inference, train_device, policy_step) = llm?;
        let (encoder, pairs) = rm_side?;
        let pairs = match pairs {
            None if warm => Some(pair_features(rm, &encoder, Some(&inference))?),
            pairs => pairs,
        };
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
            train_device,
            policy_step,
            encoder,
            prompts,
            probe_ids,
            head: Head::zeros(0),
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
        pipeline.fit_head(pairs)?;
        Ok(pipeline)
    }

    /// The RM's text for a response to `prompt`.
    fn rm_text(&self, prompt: &str, response: &str) -> String {
        rm_text(&self.cfg.rm, prompt, response)
    }

    /// The RM's features of `texts` ([`features`]).
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        features(&self.cfg.rm, &self.encoder, Some(&self.inference), texts)
    }

    /// Fits the head (Bradley-Terry) on the preference pairs' features and the seconds they
    /// took ([`pair_features`]), or starts it at zero (`None`: `[train.rm] init` untrained).
    fn fit_head(&mut self, pairs: Option<PairFeatures>) -> Result<()> {
        let dim = match self.cfg.rm.backbone {
            RmBackbone::Encoder => self.encoder.dim(),
            _ => self.inference.config.hidden_size,
        };
        let rm = &self.cfg.rm;
        let Some((feats, seconds)) = pairs else {
            // Normalised features have squared norm `feature_scale²`; raw ones are not measured
            // without texts, so the MLP's pre-activations start at that scale too.
            self.head = Head::init(dim, rm.head_hidden, rm.feature_scale.powi(2));
            return Ok(());
        };
        self.embed_seconds = seconds;
        let held = ((feats.len() as f64 * rm.holdout).round() as usize).clamp(1, feats.len() - 1);
        let (train, test) = feats.split_at(feats.len() - held);
        let sq_norm = mean(
            train
                .iter()
                .flat_map(|(c, r)| [c, r])
                .map(|x| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>()),
        );
        let start = Head::init(dim, rm.head_hidden, sq_norm);
        let (head, losses) = Head::fit_bradley_terry(start, train, &rm.fit);
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
    pub fn initial_head(&self) -> &Head {
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
            &self.train_device,
        )?;
        let n = self.head.n_params();
        Ok(State {
            iteration: 0,
            adapters,
            optimizer: self.policy_optimizer(),
            accumulated: GradientsAccumulator::new(),
            head: self.head.clone(),
            head_optimizer: AdamW::new(n, self.cfg.rm.weight_decay),
            head_grad: vec![0.0; n],
            pending: Vec::new(),
            pending_labels: Vec::new(),
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

    /// Trains the variants `runs` (each with its folder, created if needed) with one seed,
    /// together: at each iteration the work their variants share (the prompt under the base
    /// model, the reference response and its oracle score) is done once, and every policy's
    /// candidates decode in one batch with the reference (see [`fpo_model::llm::best_of`]).
    /// Each variant computes exactly what it computes trained alone. A variant resumes from the
    /// checkpoint in its folder if one exists, and a finished one (`outcome.json`) is read back,
    /// not rerun; variants at different iterations wait for each other. `on_iteration` sees
    /// every new log line and the seconds it took (its own work and an equal share of the
    /// shared work, so that the variants' seconds add up to the wall time). Returns each
    /// variant's outcome and the iterations this call trained, in the order of `runs`.
    pub fn run_variants(
        &self,
        runs: &[(Variant, PathBuf)],
        seed: u64,
        on_iteration: &mut dyn FnMut(Variant, &IterationLog, f64),
    ) -> Result<Vec<(VariantOutcome, VariantTiming)>> {
        let mut active = Vec::new();
        let mut finished = BTreeMap::new();
        for (variant, dir) in runs {
            match self.open_run(*variant, seed, dir)? {
                Opened::Finished(outcome) => {
                    finished.insert(*variant, (outcome, VariantTiming::default()));
                }
                Opened::Running(run) => active.push(*run),
            }
        }
        let order = self
            .prompts
            .training_order(self.cfg.iterations, self.cfg.shuffle, seed);
        let first = active.iter().map(|r| r.state.iteration).min();
        let mut probe_base = probe::BaseSamples::default();
        for it in first.unwrap_or(self.cfg.iterations)..self.cfg.iterations {
            let mut due: Vec<&mut VariantRun> = active
                .iter_mut()
                .filter(|r| r.state.iteration == it)
                .collect();
            let prompt = &self.prompts.pool[order[it]];
            // On a rayon worker: the probe's and the iteration's many parallel products and
            // loops split there instead of waking the pool from this thread each time.
            let lines = fpo_model::cpu::on_worker(|| {
                for r in &mut due {
                    r.probe
                        .maybe(self, &r.state, it, &mut r.timing, &mut probe_base)?;
                }
                self.iteration(&mut due, seed, it, prompt)
            })?;
            for (r, (line, seconds)) in due.into_iter().zip(lines) {
                r.record(line, seconds, on_iteration)?;
                if r.state.iteration.is_multiple_of(self.cfg.checkpoint_every)
                    && r.state.iteration < self.cfg.iterations
                {
                    self.save_checkpoint(&r.dir, &r.state, r.variant, seed)?;
                }
            }
        }
        for mut r in active {
            r.probe.maybe(
                self,
                &r.state,
                self.cfg.iterations,
                &mut r.timing,
                &mut probe_base,
            )?;
            let outcome = self.finish(&r, seed)?;
            finished.insert(r.variant, (outcome, r.timing));
        }
        Ok(runs
            .iter()
            .map(|(v, _)| finished.remove(v).expect("every variant ran or was read"))
            .collect())
    }

    /// The run of `variant` in `dir`: read back if finished, else its state from the checkpoint
    /// there (or fresh), the log cut to that state and opened for appending, and the probe.
    fn open_run(&self, variant: Variant, seed: u64, dir: &Path) -> Result<Opened> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let outcome_path = dir.join("outcome.json");
        if outcome_path.exists() {
            let text = std::fs::read_to_string(&outcome_path).map_err(io(&outcome_path))?;
            let outcome = serde_json::from_str(&text).map_err(|e| ckpt_err(&outcome_path, e))?;
            return Ok(Opened::Finished(outcome));
        }
        let state = match self.load_checkpoint(dir, variant, seed)? {
            Some(s) => s,
            None => self.fresh_state(seed)?,
        };
        let log_path = dir.join("log.jsonl");
        let logs = read_log(&log_path, state.iteration)?;
        // Rewrite the log up to the checkpoint: lines of iterations after it are redone.
        let mut text = Vec::new();
        for l in &logs {
            serde_json::to_writer(&mut text, l).expect("serialisable");
            text.push(b'\n');
        }
        write_atomic(&log_path, &text)?;
        let log_file = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let probe = probe::Probe::open(self, dir, seed, state.iteration)?;
        Ok(Opened::Running(Box::new(VariantRun {
            variant,
            dir: dir.to_owned(),
            state,
            logs,
            log_file,
            log_path,
            probe,
            timing: VariantTiming::default(),
        })))
    }

    /// Writes a trained run's adapters, head and outcome, and removes its checkpoint.
    fn finish(&self, r: &VariantRun, seed: u64) -> Result<VariantOutcome> {
        let dir = &r.dir;
        r.state
            .adapters
            .save(&self.cfg.lora, &dir.join("adapters.safetensors"))?;
        let head = &fpo_rundir::to_json(&r.state.head)?;
        write_atomic(&dir.join(fpo_rundir::files::HEAD), head)?;
        let gamma = self.rules.iter().map(|p| p.gamma).fold(0.0, f64::max);
        let outcome = summarize(r.variant, seed, gamma, &r.logs, &r.state.adapters);
        write_atomic(&dir.join("outcome.json"), &fpo_rundir::to_json(&outcome)?)?;
        let ckpt = dir.join("checkpoint");
        if ckpt.exists() {
            std::fs::remove_dir_all(&ckpt).map_err(io(&ckpt))?;
        }
        Ok(outcome)
    }

    /// One iteration of the loop for the variants `runs` (all at iteration `it`): the work they
    /// share, then each variant's own (see [`Pipeline::variant_step`]). Returns each variant's
    /// log line and seconds.
    fn iteration(
        &self,
        runs: &mut [&mut VariantRun],
        seed: u64,
        it: usize,
        source: &Prompt,
    ) -> Result<Vec<(IterationLog, f64)>> {
        let started = Instant::now();
        let cfg = &self.cfg;
        let m = &self.inference;
        let tok = &m.tokenizer;
        let mut shared = BTreeMap::new();
        let mut own: Vec<BTreeMap<String, f64>> = vec![BTreeMap::new(); runs.len()];
        // Each variant's own wall time; the rest of the iteration's is shared.
        let mut own_seconds = vec![0.0; runs.len()];
        let mut lap = Lap::new(&mut shared);
        let prompt = chat_prompt(m, &source.text, cfg.max_prompt_tokens)?;
        // The oracle's pass over the prompt: the reference continues it, every response is
        // scored after it.
        let base = m.model.prompt_pass(&prompt, None, true)?;
        lap.mark("prompt passes");
        let policies: Vec<Adapters> = runs.iter().map(|r| r.state.adapters.valid()).collect();
        let host = matches!(self.policy_step, PolicyStep::Host(_));
        let passes = each_timed(policies.iter().collect(), host, |policy, lap| {
            let pass = m
                .model
                .prompt_pass(&prompt, Some(policy), false)
                .map_err(Error::from);
            lap.mark("prompt passes");
            pass
        });
        let passes = take_timed(passes, &mut own, &mut own_seconds)?;
        let mut lap = Lap::new(&mut shared);
        // Each policy's candidates from the stream (seed, iteration, 1) (common random numbers
        // across variants), the reference from (seed, iteration, 0).
        let mut rngs: Vec<ChaCha8Rng> = runs.iter().map(|_| stream_rng(seed, it, 1)).collect();
        let mut reference_rng = stream_rng(seed, it, 0);
        let mut groups: Vec<SampleGroup<'_, ChaCha8Rng>> = passes
            .iter()
            .zip(&policies)
            .zip(&mut rngs)
            .map(|((pass, policy), rng)| SampleGroup {
                pass,
                rows: cfg.candidates,
                adapters: Some(policy),
                rng,
            })
            .collect();
        groups.push(SampleGroup {
            pass: &base,
            rows: 1,
            adapters: None,
            rng: &mut reference_rng,
        });
        let mut sampled =
            m.model
                .sample_groups(&mut groups, &self.sampling(), &tok.eos, tok.pad)?;
        let reference = sampled
            .pop()
            .and_then(|mut g| g.pop())
            .expect("one reference");
        lap.mark("sampling (reference and candidates)");
        let reference_score =
            m.model
                .score_after(&base, std::slice::from_ref(&reference.ids), None)?;
        let reference_utility = cfg.oracle.utility(reference_score[0].mean_nll());
        lap.mark("oracle scoring");
        let shared_response = Shared {
            seed,
            it,
            source,
            prompt: &prompt,
            base: &base,
            reference: &reference,
            reference_utility,
        };
        // The variants' own parts at once on the host (each computes what it computes alone;
        // together they fill the gaps between each other's parallel loops).
        let work: Vec<_> = runs.iter_mut().zip(sampled).collect();
        let lines = each_timed(work, host, |(run, candidates), lap| {
            self.variant_step(run, &shared_response, candidates, lap)
        });
        let lines = take_timed(lines, &mut own, &mut own_seconds)?;
        // The shared work in equal shares, so that the variants' seconds add up to the wall time.
        let share = runs.len() as f64;
        let shared_seconds = started.elapsed().as_secs_f64() - own_seconds.iter().sum::<f64>();
        let mut out = Vec::with_capacity(runs.len());
        for (((run, line), mut stages), seconds) in
            runs.iter_mut().zip(lines).zip(own).zip(own_seconds)
        {
            for (stage, s) in &shared {
                *stages.entry(stage.clone()).or_default() += s / share;
            }
            for (stage, s) in stages {
                *run.timing.stages.entry(stage).or_default() += s;
            }
            out.push((line, seconds + shared_seconds / share));
        }
        Ok(out)
    }

    /// One variant's part of an iteration: the oracle's scores of its candidates, the reward
    /// model's features, the winner under every rule, and the updates (gradients, and the
    /// optimisers every `grad_accumulation` iterations).
    fn variant_step(
        &self,
        run: &mut VariantRun,
        shared: &Shared<'_>,
        candidates: Vec<Generation>,
        lap: &mut Lap<'_>,
    ) -> Result<IterationLog> {
        let (seed, it, source) = (shared.seed, shared.it, shared.source);
        let (variant, st) = (run.variant, &mut run.state);
        let cfg = &self.cfg;
        let m = &self.inference;
        let tok = &m.tokenizer;
        let prompt = shared.prompt;
        let all: Vec<&Generation> = std::iter::once(shared.reference)
            .chain(&candidates)
            .collect();

        // Oracle utility: the base model's mean NLL of prompt + response.
        let ids: Vec<Vec<u32>> = candidates.iter().map(|g| g.ids.clone()).collect();
        let utilities: Vec<f64> = std::iter::once(shared.reference_utility)
            .chain(
                m.model
                    .score_after(shared.base, &ids, None)?
                    .iter()
                    .map(|s| cfg.oracle.utility(s.mean_nll())),
            )
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
        let (rewards, grads): (Vec<f64>, Vec<Vec<f64>>) =
            phi.iter().map(|p| st.head.score_and_grad(p)).unzip();
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
        st.pending_labels.push(label);
        lap.mark("selection and RM update");

        // Policy update: NLL of the winner's whole sequence through the adapters.
        let full: Vec<u32> = prompt.iter().chain(&candidates[w].ids).copied().collect();
        let mut dropout = DropoutMasks::new(
            cfg.lora.dropout,
            full.len(),
            seed ^ ((it as u64 + 1) << 20),
            &self.train_device,
        );
        let (policy_loss, grads_p) = match &self.policy_step {
            PolicyStep::Host(host) => {
                let g = host.nll_gradients(&full, &st.adapters, dropout.as_mut());
                let params = g.to_params(&st.adapters, (1.0 / accum) as f32);
                (f64::from(g.mean_nll()), params)
            }
            PolicyStep::Autodiff(trainer) => {
                let lp = trainer.token_logprobs(
                    std::slice::from_ref(&full),
                    Some(&st.adapters),
                    dropout.as_mut(),
                )?;
                let nll = lp.tensor.mean().neg();
                let loss = f64::from(nll.clone().into_scalar::<f32>());
                let grads = (nll / accum).backward();
                (loss, GradientsParams::from_grads(grads, &st.adapters))
            }
        };
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
            let labels = std::mem::take(&mut st.pending_labels);
            for _ in 1..cfg.rm.head_steps {
                // The same pairs' BCE at the head as it now is, scaled as the accumulation was.
                let mut g = vec![0.0; hg.len()];
                for ((win, reference), &label) in pending.iter().zip(&labels) {
                    let (_, gi) = bce(&st.head, win, reference, label);
                    g.iter_mut().zip(&gi).for_each(|(a, b)| *a += b / accum);
                }
                st.head_optimizer.step(&mut st.head, &g, cfg.rm.lr);
            }
            // The first-order prediction of `head_steps` plain steps on the first gradient.
            let steps = cfg.rm.head_steps as f64;
            follower = Some(follower_response(
                &before,
                &st.head,
                &pending,
                &hg,
                cfg.rm.lr * steps,
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
            &self.train_device,
        )?
        else {
            return Ok(None);
        };
        let n = saved.head.n_params();
        Ok(Some(State {
            iteration: saved.iteration,
            adapters,
            optimizer: self.policy_optimizer().load_record(record),
            accumulated: GradientsAccumulator::new(),
            head: saved.head,
            head_optimizer: saved.head_optimizer,
            head_grad: vec![0.0; n],
            pending: Vec::new(),
            pending_labels: Vec::new(),
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

/// `f` on each item with a [`Lap`] of its own: at once on rayon's threads when `parallel`
/// (each item computes what it computes alone), else one after another. Returns each result
/// with its stages and seconds, scaled so that the items' seconds add up to the wall time of
/// the whole (items at once overlap).
fn each_timed<T: Send, R: Send>(
    items: Vec<T>,
    parallel: bool,
    f: impl Fn(T, &mut Lap<'_>) -> R + Sync,
) -> Vec<(R, BTreeMap<String, f64>)> {
    let started = Instant::now();
    let one = |item: T| {
        let mut stages = BTreeMap::new();
        let r = f(item, &mut Lap::new(&mut stages));
        (r, stages)
    };
    let mut done: Vec<(R, BTreeMap<String, f64>)> = if parallel && rayon::current_num_threads() > 1
    {
        items.into_par_iter().map(one).collect()
    } else {
        items.into_iter().map(one).collect()
    };
    let busy: f64 = done.iter().flat_map(|d| d.1.values()).sum();
    if busy > 0.0 {
        let scale = started.elapsed().as_secs_f64() / busy;
        for s in done.iter_mut().flat_map(|d| d.1.values_mut()) {
            *s *= scale;
        }
    }
    done
}

/// The results of [`each_timed`], their stages and seconds added to each variant's (`own`,
/// `seconds`); the first error in order, if any.
fn take_timed<R>(
    done: Vec<(Result<R>, BTreeMap<String, f64>)>,
    own: &mut [BTreeMap<String, f64>],
    seconds: &mut [f64],
) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(done.len());
    for ((r, stages), (own, seconds)) in done.into_iter().zip(own.iter_mut().zip(seconds)) {
        for (stage, s) in stages {
            *seconds += s;
            *own.entry(stage).or_default() += s;
        }
        out.push(r?);
    }
    Ok(out)
}

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

    /// Adds the seconds since the last mark to `stage`, and returns them.
    fn mark(&mut self, stage: &str) -> f64 {
        let now = Instant::now();
        let seconds = (now - self.since).as_secs_f64();
        *self.stages.entry(stage.to_owned()).or_default() += seconds;
        self.since = now;
        seconds
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Items run at once keep their order and their own stages, and the stages are scaled to
    /// the wall time of the whole: unscaled, three 40 ms items on two threads add up to 120 ms
    /// in about 80.
    #[test]
    fn each_timed_keeps_order_and_adds_up_to_the_wall_time() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        let outer = Instant::now();
        let done = pool.install(|| {
            each_timed(vec![0u64, 1, 2], true, |i, lap| {
                std::thread::sleep(Duration::from_millis(40));
                lap.mark(if i == 1 { "b" } else { "a" });
                i * 10
            })
        });
        let wall = outer.elapsed().as_secs_f64();
        let results: Vec<u64> = done.iter().map(|d| d.0).collect();
        assert_eq!(results, [0, 10, 20]);
        let keys: Vec<Vec<&str>> = done
            .iter()
            .map(|d| d.1.keys().map(String::as_str).collect())
            .collect();
        assert_eq!(keys, [vec!["a"], vec!["b"], vec!["a"]]);
        let total: f64 = done.iter().flat_map(|d| d.1.values()).sum();
        assert!(total <= wall, "{total} s of stages in {wall} s");
        assert!(total > 0.07, "{total} s of stages for three 40 ms items");
    }

    /// The results in order with each variant's stages added to its own; the first error in
    /// order is the one returned.
    #[test]
    fn take_timed_adds_the_stages_and_returns_the_first_error() {
        let stages = |s: f64| BTreeMap::from([("oracle scoring".to_owned(), s)]);
        let mut own = vec![stages(1.0), BTreeMap::new()];
        let mut seconds = vec![1.0, 0.0];
        let ok: Vec<(Result<u8>, _)> = vec![(Ok(1), stages(0.5)), (Ok(2), stages(0.25))];
        assert_eq!(take_timed(ok, &mut own, &mut seconds).unwrap(), [1, 2]);
        assert_eq!(own[0]["oracle scoring"], 1.5);
        assert_eq!(own[1]["oracle scoring"], 0.25);
        assert_eq!(seconds, [1.5, 0.25]);
        let failed: Vec<(Result<u8>, _)> = vec![
            (Ok(1), stages(0.0)),
            (Err(crate::error::invalid("first", "")), stages(0.0)),
            (Err(crate::error::invalid("second", "")), stages(0.0)),
        ];
        let err = take_timed(failed, &mut own, &mut seconds).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { key, .. } if key == "first"));
    }
}
