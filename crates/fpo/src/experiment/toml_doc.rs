//! TOML plumbing: reading an experiment file, its `base` file, its `[profiles.<name>]`
//! overrides and `--set key=value`, before the typed parse.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::SettingsError;

/// Reads a TOML file into its text and table; errors name the file.
pub(super) fn read_toml(path: &Path) -> Result<(String, toml::Table), SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let doc = toml::from_str(&text).map_err(|e| SettingsError::Invalid {
        path: path.to_owned(),
        key: ".".into(),
        message: e.to_string(),
    })?;
    Ok((text, doc))
}

/// A file with `base = "other.toml"` is that file (resolved beside it) with this one's tables
/// merged over it, profiles included.
pub(super) fn with_base(
    path: &Path,
    mut doc: toml::Table,
    text: String,
) -> Result<(toml::Table, String), SettingsError> {
    let Some(base) = doc.remove("base") else {
        return Ok((doc, text));
    };
    let Some(name) = base.as_str() else {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            key: "base".into(),
            message: "must be a file name".into(),
        });
    };
    let base_path = path.parent().unwrap_or(Path::new(".")).join(name);
    if !base_path.is_file() {
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            key: "base".into(),
            message: format!(
                "`{name}` names {}, which is not a file (a base file is an experiment TOML beside this one)",
                base_path.display()
            ),
        });
    }
    let (_, mut merged) = read_toml(&base_path)?;
    if merged.contains_key("base") {
        return Err(SettingsError::Invalid {
            path: base_path,
            key: "base".into(),
            message: "a base file cannot have a base itself".into(),
        });
    }
    merge(&mut merged, &doc);
    let text = toml::to_string(&merged).unwrap_or_default();
    Ok((merged, text))
}

/// Merges `[profiles.<profile>]` into the document; returns the text to deserialise (the
/// original, so that errors keep their line numbers, unless a profile changed it).
///
/// A profile the file does not define is an error naming the ones it does, unless `optional`
/// (`fpo reproduce`'s profiles apply to the suites that define them; the others run their base
/// settings).
pub(super) fn apply_profile(
    path: &Path,
    mut doc: toml::Table,
    text: String,
    profile: Option<&str>,
    optional: bool,
) -> Result<(toml::Table, String), SettingsError> {
    let profiles = doc.remove("profiles");
    let Some(name) = profile else {
        return Ok((doc, text));
    };
    let Some(table) = profiles
        .as_ref()
        .and_then(|p| p.get(name))
        .and_then(|t| t.as_table())
    else {
        if optional {
            return Ok((doc, text));
        }
        let known: Vec<&str> = profiles
            .as_ref()
            .and_then(|p| p.as_table())
            .map(|t| t.keys().map(String::as_str).collect())
            .unwrap_or_default();
        return Err(SettingsError::Invalid {
            path: path.to_owned(),
            key: format!("profiles.{name}"),
            message: format!(
                "no such profile (this file defines: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        });
    };
    merge(&mut doc, table);
    let text = toml::to_string(&doc).unwrap_or_default();
    Ok((doc, text))
}

/// A `--set` value as TOML: a number, boolean, array or quoted string; anything else is a bare
/// string.
pub(super) fn toml_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Sets the dotted `key` of `doc` to `raw`; errors name the file and key.
pub(super) fn set_key(
    path: &Path,
    doc: &mut toml::Table,
    key: &str,
    raw: &str,
) -> Result<(), SettingsError> {
    let invalid = |message: String| SettingsError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        message,
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(
            "--set needs a dotted key, e.g. fpo.gamma=10".into(),
        ));
    }
    let mut table = doc;
    for p in &parts[..parts.len() - 1] {
        table = match table
            .entry((*p).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            _ => return Err(invalid(format!("`{p}` is not a table"))),
        };
    }
    table.insert(parts[parts.len() - 1].to_owned(), toml_value(raw));
    Ok(())
}

pub(super) fn typed<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T, SettingsError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| SettingsError::Invalid {
        path: path.to_owned(),
        key: ".".into(),
        message: e.to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        SettingsError::Invalid {
            path: path.to_owned(),
            key,
            message: e.into_inner().to_string(),
        }
    })
}

/// Deep-merges `over` into `base`: tables merge key by key, other values replace.
pub(super) fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The first number of `doc` that is not finite (TOML's `nan`, `inf`), with its dotted key.
pub(super) fn non_finite(doc: &toml::Table) -> Option<(String, f64)> {
    fn walk(prefix: &str, v: &toml::Value) -> Option<(String, f64)> {
        match v {
            toml::Value::Float(x) if !x.is_finite() => Some((prefix.to_owned(), *x)),
            toml::Value::Table(t) => t.iter().find_map(|(k, v)| {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v)
            }),
            toml::Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(&format!("{prefix}[{i}]"), v)),
            _ => None,
        }
    }
    doc.iter().find_map(|(k, v)| walk(k, v))
}
