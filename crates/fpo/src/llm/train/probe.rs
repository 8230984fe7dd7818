//! The held-out probe: the policy's samples on prompts it never trains on, set against the base
//! model's samples on the same prompts, every `probe.every` iterations (and before the first
//! and after the last), one [`ProbeRow`] per probe in the variant's `probe.jsonl`.
//!
//! Randomness: common random numbers. The base model's samples (drawn once per variant and seed)
//! and the policy's at every probe use one stream, `(seed, iterations + 1, 3)`: the gains measure
//! the policy's change, not a fresh draw (before training they are exactly 0; with 16 prompts,
//! separate draws differed by ~0.25 in mean RM score at iteration 0). A resumed run redoes only
//! the probes it has no row of, with the same numbers.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use fpo_model::llm::Generation;

use super::{Pipeline, SCORE_BATCH_TOKENS, State, VariantTiming, mean, stream_rng};
use crate::Result;
use crate::llm::checkpoint::{io, write_atomic};
use crate::reward::Head;
use fpo_rundir::llm::ProbeRow;

/// The samples of one model on the probe prompts, scored.
struct Scored {
    gens: Vec<Generation>,
    /// `(prompt, response)` token ids, as scored.
    seqs: Vec<(Vec<u32>, Vec<u32>)>,
    /// RM features.
    phi: Vec<Vec<f32>>,
    /// The paper's utility.
    utility: Vec<f64>,
    /// Minus the mean NLL of the response tokens.
    response_utility: Vec<f64>,
}

/// A variant's probe file and what it has done.
pub(super) struct Probe {
    path: PathBuf,
    done: BTreeSet<usize>,
    seed: u64,
}

/// The base model's samples on the probe prompts, the same for every variant of a seed: drawn
/// by the first probe that needs them (its seconds count there) and shared.
#[derive(Default)]
pub(super) struct BaseSamples(Option<Scored>);

impl Probe {
    /// Opens `dir/probe.jsonl`, keeping the rows of probes at or before `resumed_at` (those
    /// after it are redone, as the log's lines are).
    pub(super) fn open(p: &Pipeline, dir: &Path, seed: u64, resumed_at: usize) -> Result<Self> {
        let path = dir.join(fpo_rundir::files::PROBE);
        let mut rows: Vec<ProbeRow> = if path.exists() {
            fpo_rundir::read_jsonl(&path)?
        } else {
            Vec::new()
        };
        rows.retain(|r| r.iteration <= resumed_at);
        if p.cfg.probe.prompts > 0 {
            write_atomic(&path, &fpo_rundir::to_jsonl(&rows)?)?;
        }
        Ok(Self {
            path,
            done: rows.iter().map(|r| r.iteration).collect(),
            seed,
        })
    }

    /// Probes the policy of `st` if `t` iterations trained is on the schedule and not done;
    /// `base`: the seed's base-model samples (drawn here if not yet).
    pub(super) fn maybe(
        &mut self,
        p: &Pipeline,
        st: &State,
        t: usize,
        timing: &mut VariantTiming,
        base: &mut BaseSamples,
    ) -> Result<()> {
        let cfg = &p.cfg.probe;
        let due = t.is_multiple_of(cfg.every) || t == p.cfg.iterations;
        if cfg.prompts == 0 || !due || self.done.contains(&t) {
            return Ok(());
        }
        let started = Instant::now();
        let rng = || stream_rng(self.seed, p.cfg.iterations + 1, 3);
        if base.0.is_none() {
            base.0 = Some(sample(p, None, &mut rng())?);
        }
        let base = base.0.as_ref().expect("sampled above");
        let adapters = st.adapters.valid();
        let policy = sample(p, Some(&adapters), &mut rng())?;
        let m = &p.inference.model;
        let kl = m.token_kl(&policy.seqs, &adapters)?;
        let row = row(
            p,
            t,
            &policy,
            base,
            &st.head,
            mean(kl.into_iter().flatten()),
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        let mut line = serde_json::to_vec(&row).expect("serialisable");
        line.push(b'\n');
        f.write_all(&line).map_err(io(&self.path))?;
        self.done.insert(t);
        timing.probes += 1;
        timing.probe_seconds += started.elapsed().as_secs_f64();
        Ok(())
    }
}

/// One sample per probe prompt from the base model (`adapters` none) or the policy, scored.
fn sample(
    p: &Pipeline,
    adapters: Option<&fpo_model::llm::Adapters>,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<Scored> {
    let m = &p.inference;
    let tok = &m.tokenizer;
    let gens = m.model.generate(
        &p.probe_ids,
        &p.sampling(),
        &tok.eos,
        tok.pad,
        rng,
        adapters,
    )?;
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = p
        .probe_ids
        .iter()
        .zip(&gens)
        .map(|(ids, g)| (ids.clone(), g.ids.clone()))
        .collect();
    let scores = m.model.score(&seqs, None, SCORE_BATCH_TOKENS)?;
    let texts = gens
        .iter()
        .zip(&p.prompts.probe)
        .map(|(g, prompt)| Ok(p.rm_text(&prompt.text, &tok.decode(&g.ids, true)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Scored {
        phi: p.embed(&texts)?,
        utility: scores
            .iter()
            .map(|s| p.cfg.oracle.utility(s.mean_nll()))
            .collect(),
        response_utility: scores.iter().map(|s| -s.continuation_mean_nll()).collect(),
        gens,
        seqs,
    })
}

fn row(p: &Pipeline, t: usize, policy: &Scored, base: &Scored, head: &Head, kl: f64) -> ProbeRow {
    let rm = |s: &Scored, h: &Head| mean(s.phi.iter().map(|x| h.score(x)));
    let avg = |v: &[f64]| mean(v.iter().copied());
    let length = |s: &Scored| mean(s.gens.iter().map(|g| g.ids.len() as f64));
    let ids: Vec<Vec<u32>> = policy.seqs.iter().map(|(_, r)| r.clone()).collect();
    let max = p.cfg.max_new_tokens;
    let mut row = ProbeRow {
        iteration: t,
        prompts: p.probe_ids.len(),
        reward: rm(policy, head),
        base_reward: rm(base, head),
        reward_initial_head: rm(policy, &p.head),
        base_reward_initial_head: rm(base, &p.head),
        utility: avg(&policy.utility),
        base_utility: avg(&base.utility),
        response_utility: avg(&policy.response_utility),
        base_response_utility: avg(&base.response_utility),
        gap: 0.0,
        kl,
        length: length(policy),
        base_length: length(base),
        truncated: mean(
            policy
                .gens
                .iter()
                .map(|g| f64::from(u8::from(!g.stopped && g.ids.len() == max))),
        ),
        distinct_1: fpo_eval::generation::distinct_n(&ids, 1),
        distinct_2: fpo_eval::generation::distinct_n(&ids, 2),
    };
    row.gap = row.reward_gain() - row.utility_gain();
    row
}
