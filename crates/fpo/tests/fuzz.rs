//! Property-based fuzzing of the readers of outside text: experiment TOML files (mutations of the
//! shipped toy files, line by line and value by value) and the LLM suite's JSONL loaders
//! (prompts, preference pairs). `Ok` or a typed error, never a panic. Bounded case counts keep
//! this inside `just test`; `PROPTEST_CASES` raises them for a longer hunt.

use std::path::{Path, PathBuf};

use fpo::experiment::{Overrides, load_experiment};
use fpo::llm::data::{read_pairs, read_prompts};
use proptest::prelude::*;

fn experiments() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().unwrap())
        .join("../../experiments")
}

/// Values that have broken settings readers: non-finite, negative, huge, of the wrong type.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("nan".to_owned()),
        Just("-inf".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1e308".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"0..99999999999999\"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        "[a-z\\.\\[\\]=\" ]{0,12}",
    ]
}

/// A mutation of a TOML text, line by line.
#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    SetValue(usize, String),
    Insert(usize, String),
}

fn line_edit() -> impl Strategy<Value = LineEdit> {
    prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), value()).prop_map(|(i, v)| LineEdit::SetValue(i, v)),
        (
            any::<usize>(),
            "[a-z_\\.\\[\\]]{1,16} = [0-9a-z\"\\.\\-]{0,8}"
        )
            .prop_map(|(i, l)| LineEdit::Insert(i, l)),
    ]
}

fn mutate(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            LineEdit::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            LineEdit::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            LineEdit::SetValue(i, v) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                if let Some((key, _)) = l.split_once('=') {
                    *l = format!("{key}= {v}");
                }
            }
            LineEdit::Insert(i, l) => lines.insert(i % (lines.len() + 1), l.clone()),
            _ => {}
        }
    }
    lines.join("\n")
}

fn load_text(dir: &Path, name: &str, text: &str, profile: Option<&str>) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let _ = load_experiment(&path, profile, &Overrides::default());
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_experiment_files_never_panic_the_settings(
        file in prop_oneof![Just("toy-linear.toml"), Just("toy-nn.toml"), Just("toy-ladder.toml")],
        edits in proptest::collection::vec(line_edit(), 1..5),
        profile in prop_oneof![Just(None), Just(Some("smoke")), Just(Some("nosuch"))],
    ) {
        let dir = tempfile::tempdir().unwrap();
        // The ladder names the toy files beside it.
        for toy in ["toy-linear.toml", "toy-nn.toml"] {
            std::fs::copy(experiments().join(toy), dir.path().join(toy)).unwrap();
        }
        let text = std::fs::read_to_string(experiments().join(file)).unwrap();
        load_text(dir.path(), file, &mutate(&text, &edits), profile);
    }

    #[test]
    fn arbitrary_text_never_panics_the_settings(text in "[a-z_\\[\\]\\.=\"0-9 \n]{0,200}") {
        let dir = tempfile::tempdir().unwrap();
        load_text(dir.path(), "any.toml", &text, None);
        load_text(dir.path(), "suite.toml", &format!("suite = \"toy-nn\"\n{text}"), Some("smoke"));
    }

    #[test]
    fn arbitrary_jsonl_never_panics_the_loaders(
        lines in proptest::collection::vec(prop_oneof![
            Just(r#"{"prompt": "Say hi."}"#.to_owned()),
            Just(r#"{"context": "c", "chosen": "a", "rejected": "b"}"#.to_owned()),
            Just(r#"{"prompt": ""}"#.to_owned()),
            Just(String::new()),
            "[\\{\\}\\[\\]\":,a-z0-9 ]{0,40}",
        ], 0..8),
        n in 0usize..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let _ = read_prompts(&path, n);
        let _ = read_pairs(&path, n);
    }
}
