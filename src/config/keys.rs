//! Known-key checking (with the nearest valid key suggested) and `--set` overrides.
use super::{Config, ConfigError};

/// The valid keys, `section.key`, derived from the serialised defaults.
fn known_keys() -> Vec<(String, Vec<String>)> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    defaults
        .iter()
        .map(|(section, v)| {
            let keys = v
                .as_table()
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            (section.clone(), keys)
        })
        .collect()
}

fn suggestion(bad: &str, candidates: impl Iterator<Item = String>) -> String {
    candidates
        .map(|c| (strsim::jaro_winkler(bad, &c), c))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// Rejects any section or key the configuration does not have.
pub fn check_known_keys(table: &toml::Table, file: &str) -> Result<(), ConfigError> {
    let known = known_keys();
    for (section, value) in table {
        let Some((_, keys)) = known.iter().find(|(s, _)| s == section) else {
            let all = known.iter().flat_map(|(s, ks)| {
                std::iter::once(s.clone()).chain(ks.iter().map(move |k| format!("{s}.{k}")))
            });
            return Err(ConfigError::UnknownKey {
                file: file.into(),
                key: section.clone(),
                hint: suggestion(section, all),
            });
        };
        let Some(inner) = value.as_table() else {
            return Err(ConfigError::Invalid {
                file: file.into(),
                key: section.clone(),
                msg: "must be a [section] table".into(),
            });
        };
        for key in inner.keys() {
            if !keys.contains(key) {
                let all = known
                    .iter()
                    .flat_map(|(s, ks)| ks.iter().map(move |k| format!("{s}.{k}")));
                let full = format!("{section}.{key}");
                return Err(ConfigError::UnknownKey {
                    file: file.into(),
                    hint: suggestion(&full, all),
                    key: full,
                });
            }
        }
    }
    Ok(())
}

/// Applies one `section.key=value` override; the value is read as TOML, or as a plain
/// string when it is not valid TOML (so `--set data.path=data/x` works unquoted).
pub fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let err = |msg: &str| ConfigError::Override {
        arg: arg.into(),
        msg: msg.into(),
    };
    let (path, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected section.key=value"))?;
    let (section, key) = path
        .trim()
        .split_once('.')
        .ok_or_else(|| err("expected section.key=value"))?;
    let value: toml::Value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let sec = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let sec = sec
        .as_table_mut()
        .ok_or_else(|| err("section is not a table"))?;
    sec.insert(key.to_string(), value);
    Ok(())
}
