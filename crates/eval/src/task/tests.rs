use super::mc::{self, McRecord};
use super::*;
use crate::lm::LanguageModel;

/// A task file and its data in a temporary folder: `task.toml` and `d/rows.<ext>`.
fn setup(toml: &str, ext: &str, data: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("d")).unwrap();
    std::fs::write(tmp.path().join(format!("d/rows.{ext}")), data).unwrap();
    let file = tmp.path().join("task.toml");
    std::fs::write(&file, toml).unwrap();
    (tmp, file)
}

fn load(toml: &str, ext: &str, data: &str) -> Result<Task, TaskError> {
    let (tmp, file) = setup(toml, ext, data);
    Task::load(&file, tmp.path(), None)
}

const MMLU_LIKE: &str = r#"
name = "mini"
output_type = "multiple_choice"
data = "d/rows.jsonl"
num_fewshot = 2
fewshot_match = "subject"
description = "About {{ subject | replace('_', ' ') }}.\n\n"
doc_to_text = "{{ question.strip() }}\nA. {{ choices[0] }}\nB. {{ choices[1] }}\nAnswer:"
doc_to_choice = ["A", "B"]
doc_to_target = "answer"
metrics = ["acc"]
group_by = "subject"
"#;

const MMLU_ROWS: &str = r#"{"subject": "x_y", "question": " q0 ", "choices": ["a", "b"], "answer": 1}
{"subject": "z", "question": "q1", "choices": ["c", "d"], "answer": 0}
{"subject": "x_y", "question": "q2", "choices": ["e", "f"], "answer": "A"}
{"subject": "x_y", "question": "q3", "choices": ["g", "h"], "answer": 0}
"#;

#[test]
fn prompts_follow_the_harness_layout_with_examples_of_the_same_group_never_the_row_itself() {
    let task = load(MMLU_LIKE, "jsonl", MMLU_ROWS).unwrap();
    assert_eq!(task.docs.len(), 4);
    // Row 3 (q3): the first two other rows of subject x_y are q0 and q2.
    let (prefix, question) = task.prompt(&task.docs[3]).unwrap();
    assert_eq!(
        prefix,
        "About x y.\n\nq0\nA. a\nB. b\nAnswer: B\n\nq2\nA. e\nB. f\nAnswer: A\n\n"
    );
    assert_eq!(question, "q3\nA. g\nB. h\nAnswer:");
    let (prefix0, _) = task.prompt(&task.docs[0]).unwrap();
    assert!(prefix0.contains("q2") && prefix0.contains("q3") && !prefix0.contains("q0\n"));
    let (_, _, conts) = mc::request(&task, &task.docs[3]).unwrap();
    assert_eq!(conts, [" A", " B"]);
    assert_eq!(task.docs[2].gold, [0], "a letter is an index");
    // Subject z has no other row: two examples cannot be found.
    let e = task.prompt(&task.docs[1]).unwrap_err().to_string();
    assert!(e.contains("row 2 has 0 few-shot examples"), "{e}");
}

#[test]
fn choices_as_an_object_of_labels_keep_file_order_and_give_the_gold() {
    let toml = r#"
name = "tq"
output_type = "multiple_choice"
data = "d/rows.json"
doc_to_text = "Q: {{ question }}\nA:"
doc_to_choice = "t"
metrics = ["mass"]
"#;
    let task = load(
        toml,
        "json",
        r#"[{"question": "q", "t": {"zeta": 0, "alpha": 1, "mid": 1}}]"#,
    )
    .unwrap();
    assert_eq!(task.docs[0].choices, ["zeta", "alpha", "mid"]);
    assert_eq!(task.docs[0].gold, [1, 2]);
}

#[test]
fn gold_from_an_index_a_list_a_letter_or_a_choice_and_out_of_range_is_an_error() {
    let c: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
    assert_eq!(gold(&Value::from(2), &c).unwrap(), [2]);
    assert_eq!(gold(&Value::from("1"), &c).unwrap(), [1]);
    assert_eq!(gold(&Value::from("C"), &c).unwrap(), [2]);
    assert_eq!(gold(&Value::from("y"), &c).unwrap(), [1]);
    assert_eq!(gold(&Value::from(vec![0, 2]), &c).unwrap(), [0, 2]);
    assert!(
        gold(&Value::from(3), &c)
            .unwrap_err()
            .contains("out of range")
    );
    assert!(
        gold(&Value::from("D"), &c)
            .unwrap_err()
            .contains("out of range")
    );
    assert!(gold(&Value::from("nope"), &c).is_err());
}

#[test]
fn bad_task_files_name_the_key_and_bad_rows_name_the_line() {
    let bad = |toml: &str| load(toml, "jsonl", MMLU_ROWS).unwrap_err().to_string();
    let e = bad(&MMLU_LIKE.replace("metrics = [\"acc\"]", "metrics = [\"f1\"]"));
    assert!(
        e.contains("task.toml") && e.contains("unknown metric `f1`"),
        "{e}"
    );
    let e = bad(&MMLU_LIKE.replace("doc_to_target = \"answer\"\n", ""));
    assert!(e.contains("doc_to_target"), "{e}");
    let e = bad(&MMLU_LIKE.replace("num_fewshot = 2", "num_fewshot = 2\nshots = 3"));
    assert!(e.contains("unknown field `shots`"), "{e}");
    let e = bad(&MMLU_LIKE.replace("{{ choices[0] }}", "{{ choices[0] "));
    assert!(e.contains("`doc_to_text`"), "{e}");
    let e = bad(&MMLU_LIKE.replace("name = \"mini\"", "name = \"../x\""));
    assert!(e.contains("`name`"), "{e}");
    let rows = MMLU_ROWS.replace("\"answer\": 0}", "\"answer\": 7}");
    let e = load(MMLU_LIKE, "jsonl", &rows).unwrap_err().to_string();
    assert!(
        e.contains("rows.jsonl:2") && e.contains("out of range"),
        "{e}"
    );
    let rows = MMLU_ROWS.replace("\"subject\": \"z\", ", "");
    let e = load(MMLU_LIKE, "jsonl", &rows).unwrap_err().to_string();
    assert!(
        e.contains("rows.jsonl:2") && e.contains("no field `subject`"),
        "{e}"
    );
    let (tmp, file) = setup(MMLU_LIKE, "csv", "");
    let e = Task::load(&file, tmp.path(), None).unwrap_err().to_string();
    assert!(e.contains("rows.jsonl") && e.contains("cannot read"), "{e}");
}

/// A choice's log-likelihood from its text alone: longer choices are less likely in total but
/// more likely per character.
struct ByLength;
impl LanguageModel for ByLength {
    type Error = std::convert::Infallible;
    fn chat_context(&self, u: &str) -> Result<String, Self::Error> {
        Ok(u.into())
    }
    fn loglikelihoods(&mut self, _: &str, c: &[String]) -> Result<Vec<f64>, Self::Error> {
        Ok(c.iter()
            .map(|s| -(s.chars().count() as f64) * if s.len() > 6 { 0.5 } else { 1.0 } - 1.0)
            .collect())
    }
}

#[test]
fn acc_norm_divides_by_the_choices_characters_and_mass_is_the_true_share() {
    let toml = r#"
name = "n"
output_type = "multiple_choice"
data = "d/rows.csv"
doc_to_text = "{{ q }}"
doc_to_choice = "c"
doc_to_target = "g"
metrics = ["acc", "acc_norm", "mass"]
"#;
    let data = "q,c,g\n";
    let (tmp, file) = setup(toml, "csv", data);
    // A header alone is no data.
    let e = Task::load(&file, tmp.path(), None).unwrap_err().to_string();
    assert!(e.contains("holds no row"), "{e}");
    std::fs::write(
        tmp.path().join("d/rows.jsonl"),
        "{\"q\": \"?\", \"c\": [\"ab\", \"abcdefghij\"], \"g\": 1}\n",
    )
    .unwrap();
    let file2 = tmp.path().join("t2.toml");
    std::fs::write(&file2, toml.replace("rows.csv", "rows.jsonl")).unwrap();
    let task = Task::load(&file2, tmp.path(), None).unwrap();
    let recs: Vec<McRecord> = mc::evaluate(&mut ByLength, &task, &task.docs, || {}).unwrap();
    let r = &recs[0];
    // " ab": -4; " abcdefghij": -6.5. acc picks the short one (wrong), acc_norm the long one.
    assert_eq!(r.lls, [-4.0, -6.5]);
    assert_eq!((r.acc, r.acc_norm), (0.0, 1.0));
    assert_eq!(
        r.chars,
        [2, 10],
        "the choice's characters, not the delimiter's"
    );
    let want = (-6.5f64).exp() / ((-4.0f64).exp() + (-6.5f64).exp());
    assert!((r.mass - want).abs() < 1e-12);
    let s = mc::summarize(&recs, 0.95);
    assert_eq!(
        (s.overall.acc.k, s.overall.acc_norm.k, s.overall.chance),
        (0, 1, 0.5)
    );
}

#[test]
fn a_stratified_subset_keeps_each_group_in_proportion_and_the_file_order() {
    let items: Vec<(usize, &str)> = (0..100)
        .map(|i| {
            (
                i,
                if i < 70 {
                    "a"
                } else if i < 95 {
                    "b"
                } else {
                    "c"
                },
            )
        })
        .collect();
    let s = stratified(items.clone(), 20, |x| x.1);
    assert_eq!(s.len(), 20);
    let count = |g: &str| s.iter().filter(|x| x.1 == g).count();
    assert_eq!((count("a"), count("b"), count("c")), (14, 5, 1));
    assert!(s.windows(2).all(|w| w[0].0 < w[1].0), "file order");
    // One row per group at least while the limit allows, though a group's share rounds to 0.
    let s = stratified(items.clone(), 3, |x| x.1);
    assert_eq!(s.len(), 3);
    assert!(["a", "b", "c"].iter().all(|g| s.iter().any(|x| x.1 == *g)));
    assert_eq!(stratified(items.clone(), 0, |x| x.1).len(), 100);
    assert_eq!(stratified(items, 500, |x| x.1).len(), 100);
    // Without groups: the same rows as TruthfulQA's even spread.
    let plain: Vec<usize> = (0..817).collect();
    assert_eq!(
        stratified(plain.clone(), 60, |_| ""),
        crate::truthfulqa::spread(plain.clone(), 60)
    );
    let every: Vec<usize> = (0..60).map(|k| k * 817 / 60).collect();
    assert_eq!(stratified(plain, 60, |_| ""), every, "every len/n-th row");
}

/// Echoes each prompt's last line, with a stop string inside.
struct Echo;
impl crate::lm::Generator for Echo {
    type Error = std::convert::Infallible;
    fn generate(
        &mut self,
        prompts: &[String],
        o: &crate::lm::GenerationOptions,
    ) -> Result<Vec<String>, Self::Error> {
        Ok(prompts
            .iter()
            .map(|p| {
                let t = format!("{}\n\nQ: more", p.lines().last().unwrap_or(""));
                crate::lm::cut_at_stop(&t, &o.until).to_owned()
            })
            .collect())
    }
}

/// Embeds a text as its letter counts (case ignored).
struct Letters;
impl crate::lm::Embedder for Letters {
    type Error = std::convert::Infallible;
    fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, Self::Error> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 26];
                for c in t.to_lowercase().bytes().filter(u8::is_ascii_lowercase) {
                    v[usize::from(c - b'a')] += 1.0;
                }
                v
            })
            .collect())
    }
}

#[test]
fn generation_scores_answers_against_the_references() {
    let toml = r#"
name = "g"
output_type = "generate_until"
data = "d/rows.jsonl"
doc_to_text = "Say {{ word }}"
references = "refs"
incorrect_references = "wrong"
until = ["\n\n"]
ignore_case = true
metrics = ["exact_match", "rouge_l"]
"#;
    let rows = "{\"word\": \"hi\", \"refs\": [\"say HI\", \"hello\"], \"wrong\": \"bye\"}\n\
                {\"word\": \"no\", \"refs\": \"yes\", \"wrong\": [\"say no\"]}\n";
    let task = load(toml, "jsonl", rows).unwrap();
    let mut m = crate::suite::ChatAndEmbedder {
        chat: &mut Echo,
        embedder: &mut Letters,
    };
    let recs = super::generation::evaluate(&mut m, &task, &task.docs, || {}).unwrap();
    assert_eq!(recs[0].answer, "Say hi", "cut before the stop string");
    // "Say no" is the incorrect reference itself: cosine 1 to it, less to "yes".
    assert!((recs[1].cos_incorrect.unwrap() - 1.0).abs() < 1e-12);
    assert!(recs[1].cos < 1.0);
    let a = recs[1].answer_scores();
    assert!(a.cos_diff < 0.0 && a.acc == 0.0 && a.category.is_empty());
    let q = super::generation::questions(&task).unwrap();
    assert_eq!(
        (q[0].text.as_str(), q[1].incorrect.clone()),
        ("Say hi", vec!["say no".to_owned()])
    );
    assert_eq!(recs[0].exact_match, 1.0, "case ignored");
    assert_eq!(recs[1].exact_match, 0.0);
    assert!(recs[1].rouge_l < recs[1].rouge_l_incorrect.unwrap());
    let s = super::generation::summarize(&recs, 0.95);
    assert_eq!(s.overall.exact_match.mean, 0.5);
}

#[test]
fn the_shipped_task_files_parse() {
    let dir = crate::test_data_dir().join("../experiments/tasks");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let f: TaskFile = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        f.check().unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(p.file_stem().unwrap().to_str().unwrap(), f.name);
        n += 1;
    }
    assert!(n >= 6);
}
