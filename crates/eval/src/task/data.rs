//! A task's rows: JSON lines, a JSON array or CSV, each row a [`Value`] (an object whose keys
//! keep their file order), and fields reached by dotted paths (`mc2_targets.choices`, `choices.0`).

use std::path::Path;

use minijinja::Value;
use minijinja::value::ValueKind;

use super::TaskError;

/// The rows of `path`, by its extension: `.jsonl` (one JSON object per line; blank lines
/// skipped), `.json` (an array of objects) or `.csv` (a header, then one row per record; every
/// value a string).
pub fn read_rows(path: &Path) -> Result<Vec<Value>, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |line: usize, message: String| TaskError::Invalid {
        path: path.to_owned(),
        line,
        message,
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let rows: Vec<Value> = match ext {
        "jsonl" => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str::<Value>(l).map_err(|e| invalid(i + 1, e.to_string()))
            })
            .collect::<Result<_, _>>()?,
        "json" => serde_json::from_str::<Vec<Value>>(&text)
            .map_err(|e| invalid(e.line(), e.to_string()))?,
        "csv" => {
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let header = reader
                .headers()
                .map_err(|e| invalid(1, e.to_string()))?
                .clone();
            reader
                .records()
                .enumerate()
                .map(|(i, r)| {
                    let r = r.map_err(|e| invalid(i + 2, e.to_string()))?;
                    Ok(Value::from_iter(
                        header
                            .iter()
                            .zip(r.iter())
                            .map(|(k, v)| (k.to_owned(), v.to_owned())),
                    ))
                })
                .collect::<Result<_, TaskError>>()?
        }
        _ => {
            return Err(invalid(
                0,
                "unknown data format (the file must end in .jsonl, .json or .csv)".into(),
            ));
        }
    };
    if let Some(i) = rows.iter().position(|r| r.kind() != ValueKind::Map) {
        return Err(invalid(i + 1, "a row is not an object".into()));
    }
    if rows.is_empty() {
        return Err(invalid(0, "holds no row".into()));
    }
    Ok(rows)
}

/// The value at a dotted `path` in `row` (`a.b`, `a.0`); `None` where a step is missing.
pub fn field(row: &Value, path: &str) -> Option<Value> {
    let mut v = row.clone();
    for step in path.split('.') {
        let next = match (v.kind(), step.parse::<usize>()) {
            (ValueKind::Seq, Ok(i)) => v.get_item(&Value::from(i)).ok(),
            _ => v.get_attr(step).ok(),
        }?;
        if next.is_undefined() || next.is_none() {
            return None;
        }
        v = next;
    }
    Some(v)
}

/// A value as text: strings as they are, numbers and booleans printed.
pub fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A value as a non-negative integer: an integer, or a string holding one.
pub fn index(v: &Value) -> Option<usize> {
    if let Some(s) = v.as_str() {
        return s.trim().parse().ok();
    }
    if v.kind() == ValueKind::Number {
        return usize::try_from(v.clone()).ok();
    }
    None
}

/// A list of strings: a sequence's items as text.
pub fn texts(v: &Value) -> Option<Vec<String>> {
    if v.kind() != ValueKind::Seq {
        return None;
    }
    Some(v.try_iter().ok()?.map(|x| text(&x)).collect())
}

/// Choices from a list (no labels), or from an object of choice -> label (the keys in file
/// order, each label's truth); `None` for anything else.
pub fn labelled(v: &Value) -> Option<(Vec<String>, Option<Vec<bool>>)> {
    if let Some(c) = texts(v) {
        return Some((c, None));
    }
    if v.kind() != ValueKind::Map {
        return None;
    }
    let (mut choices, mut labels) = (Vec::new(), Vec::new());
    for k in v.try_iter().ok()? {
        labels.push(v.get_item(&k).ok()?.is_true());
        choices.push(text(&k));
    }
    Some((choices, Some(labels)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_from_each_format_keep_their_key_order_and_fields_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let jsonl = tmp.path().join("a.jsonl");
        std::fs::write(
            &jsonl,
            "{\"q\": \"x\", \"t\": {\"zeta\": 1, \"alpha\": 0}, \"c\": [\"p\", \"q\"]}\n\n",
        )
        .unwrap();
        let rows = read_rows(&jsonl).unwrap();
        assert_eq!(rows.len(), 1);
        let t = field(&rows[0], "t").unwrap();
        let keys: Vec<String> = t.try_iter().unwrap().map(|k| text(&k)).collect();
        assert_eq!(keys, ["zeta", "alpha"], "file order, not sorted");
        assert_eq!(text(&field(&rows[0], "c.1").unwrap()), "q");
        assert!(field(&rows[0], "c.5").is_none() && field(&rows[0], "nope").is_none());
        let csv = tmp.path().join("b.csv");
        std::fs::write(&csv, "question,answer\nwhy?,2\n").unwrap();
        let rows = read_rows(&csv).unwrap();
        assert_eq!(index(&field(&rows[0], "answer").unwrap()), Some(2));
        let json = tmp.path().join("c.json");
        std::fs::write(&json, "[{\"a\": 3}]").unwrap();
        assert_eq!(
            index(&field(&read_rows(&json).unwrap()[0], "a").unwrap()),
            Some(3)
        );
    }

    #[test]
    fn bad_rows_name_the_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("bad.jsonl");
        std::fs::write(&p, "{\"a\": 1}\n{\"a\": \n").unwrap();
        let e = read_rows(&p).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl:2"), "{e}");
        std::fs::write(&p, "{\"a\": 1}\n[1, 2]\n").unwrap();
        let e = read_rows(&p).unwrap_err().to_string();
        assert!(
            e.contains("bad.jsonl:2") && e.contains("not an object"),
            "{e}"
        );
        let p = tmp.path().join("x.parquet");
        std::fs::write(&p, "").unwrap();
        assert!(
            read_rows(&p)
                .unwrap_err()
                .to_string()
                .contains(".jsonl, .json or .csv")
        );
    }
}
