//! Training prompts and preference pairs, from JSONL files. Every error names the file and the
//! line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Error;

/// One training prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// Line number in its file (1-based), the prompt's identity in logs.
    pub line: usize,
    /// The user message.
    pub text: String,
}

/// One preference pair.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Pair {
    /// The dialogue before the two replies (may be empty).
    #[serde(default)]
    pub context: String,
    /// The preferred reply.
    pub chosen: String,
    /// The other reply.
    pub rejected: String,
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

fn data_err(path: &Path, line: usize, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.to_owned(),
        line,
        message: message.into(),
    }
}

/// Reads up to `limit` JSONL records (0: all), skipping blank lines.
fn records<T: for<'de> Deserialize<'de>>(
    path: &Path,
    limit: usize,
) -> Result<Vec<(usize, T)>, Error> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if limit > 0 && out.len() == limit {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let rec: T =
            serde_json::from_str(line).map_err(|e| data_err(path, i + 1, e.to_string()))?;
        out.push((i + 1, rec));
    }
    Ok(out)
}

/// The first `n` prompts of a JSONL file whose records carry a string field `prompt`.
pub fn read_prompts(path: &Path, n: usize) -> Result<Vec<Prompt>, Error> {
    #[derive(Deserialize)]
    struct Rec {
        prompt: String,
    }
    let recs: Vec<(usize, Rec)> = records(path, n)?;
    if recs.len() < n {
        return Err(data_err(
            path,
            recs.len(),
            format!("{n} prompts asked for, the file has {}", recs.len()),
        ));
    }
    recs.into_iter()
        .map(|(line, r)| {
            if r.prompt.trim().is_empty() {
                Err(data_err(path, line, "empty `prompt`"))
            } else {
                Ok(Prompt {
                    line,
                    text: r.prompt,
                })
            }
        })
        .collect()
}

/// The prompts of a run: the probe's, held out, and the pool the training draws from.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSplit {
    /// `probe` prompts spread evenly over the file (line `⌊i n / probe⌋` for the `i`-th).
    pub probe: Vec<Prompt>,
    /// Every other prompt, in file order.
    pub pool: Vec<Prompt>,
}

impl PromptSplit {
    /// Holds `probe` prompts of `all` out; errors when fewer than `iterations` remain.
    pub fn new(
        path: &Path,
        all: Vec<Prompt>,
        probe: usize,
        iterations: usize,
    ) -> Result<Self, Error> {
        let n = all.len();
        let held: std::collections::BTreeSet<usize> =
            (0..probe).map(|i| i * n / probe.max(1)).collect();
        if held.len() < probe || n - held.len() < iterations {
            return Err(data_err(
                path,
                n,
                format!(
                    "{iterations} training prompts and {probe} probe prompts asked for, the file has {n}"
                ),
            ));
        }
        let (probe, pool): (Vec<_>, Vec<_>) = all
            .into_iter()
            .enumerate()
            .partition(|(i, _)| held.contains(i));
        Ok(Self {
            probe: probe.into_iter().map(|(_, p)| p).collect(),
            pool: pool.into_iter().map(|(_, p)| p).collect(),
        })
    }

    /// The pool indices a seed trains on, in order: the first `iterations` of the pool, or,
    /// with `shuffle`, of a permutation of the pool drawn from `seed` alone (so every variant
    /// of a seed sees the same prompts, and other seeds other draws).
    pub fn training_order(&self, iterations: usize, shuffle: bool, seed: u64) -> Vec<usize> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..self.pool.len()).collect();
        if shuffle {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(u64::MAX); // apart from the loop's (iteration, stream) streams
            order.shuffle(&mut rng);
        }
        order.truncate(iterations);
        order
    }
}

/// The first `limit` preference pairs (0: all) of a JSONL file `{context?, chosen, rejected}`.
pub fn read_pairs(path: &Path, limit: usize) -> Result<Vec<Pair>, Error> {
    let recs: Vec<(usize, Pair)> = records(path, limit)?;
    if recs.len() < 2 {
        return Err(data_err(
            path,
            recs.len(),
            "needs at least two preference pairs",
        ));
    }
    Ok(recs.into_iter().map(|(_, p)| p).collect())
}

/// `path` if absolute, else `base/path`.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("fpo-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.jsonl");
        std::fs::write(&f, "{\"prompt\": \"a\"}\n\n{\"prompt\": 3}\n").unwrap();
        let err = read_prompts(&f, 2).unwrap_err().to_string();
        assert!(err.contains("p.jsonl:3"), "{err}");
        assert_eq!(read_prompts(&f, 1).unwrap()[0].text, "a");
        std::fs::write(&f, "{\"prompt\": \"a\"}\n").unwrap();
        let err = read_prompts(&f, 2).unwrap_err().to_string();
        assert!(err.contains("2 prompts asked for"), "{err}");
        std::fs::write(&f, "{\"chosen\": \"a\"}\n").unwrap();
        let err = read_pairs(&f, 0).unwrap_err().to_string();
        assert!(
            err.contains("p.jsonl:1") && err.contains("rejected"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn prompts(n: usize) -> Vec<Prompt> {
        (1..=n)
            .map(|line| Prompt {
                line,
                text: format!("p{line}"),
            })
            .collect()
    }

    /// Catches a probe that overlaps the training draw, bunches at the top of the file, or a
    /// shuffle that ignores the seed (or differs between calls with one seed).
    #[test]
    fn the_probe_is_held_out_and_spread_and_each_seed_draws_its_own_order() {
        let split = PromptSplit::new(Path::new("p.jsonl"), prompts(20), 4, 10).unwrap();
        let probe: Vec<usize> = split.probe.iter().map(|p| p.line).collect();
        assert_eq!(probe, vec![1, 6, 11, 16]);
        assert_eq!(split.pool.len(), 16);
        assert!(split.pool.iter().all(|p| !probe.contains(&p.line)));
        let plain = split.training_order(10, false, 0);
        assert_eq!(plain, (0..10).collect::<Vec<_>>());
        let a = split.training_order(10, true, 0);
        assert_eq!(a, split.training_order(10, true, 0));
        assert_ne!(a, split.training_order(10, true, 1));
        assert_ne!(a, plain);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 10, "no prompt twice");
        let err = PromptSplit::new(Path::new("p.jsonl"), prompts(12), 4, 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p.jsonl") && err.contains("4 probe prompts"),
            "{err}"
        );
    }
}
