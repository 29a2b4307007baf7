//! The TOML run configuration: defaults, loading with `--set` overrides, unknown-key
//! detection with a suggestion, and validation against the world size.
//!
//! Every key has a default (see `Default` impls), so a config file only states what
//! differs. The set of valid keys is derived from the defaults themselves, so adding a
//! field here is all it takes to make it a known key.
mod keys;
mod schema;

pub use keys::{apply_override, check_known_keys};
pub use schema::*;

use std::path::Path;

/// A configuration error; names the file and key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not valid TOML: {msg}")]
    Parse { file: String, msg: String },
    #[error("{file}: unknown key `{key}`{hint}")]
    UnknownKey {
        file: String,
        key: String,
        hint: String,
    },
    #[error("{file}: key `{key}`: {msg}")]
    Invalid {
        file: String,
        key: String,
        msg: String,
    },
    #[error("--set {arg}: {msg}")]
    Override { arg: String, msg: String },
}

impl Config {
    /// Loads `path` (or only the defaults when `None`), applies `key=value` overrides,
    /// rejects unknown keys and type errors. Does not yet check the world size: see
    /// [`Config::validate`].
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        let file = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<defaults>".into());
        let mut table: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    file: file.clone(),
                    source,
                })?;
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Parse {
                        file: file.clone(),
                        msg: e.message().to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for arg in overrides {
            apply_override(&mut table, arg)?;
        }
        check_known_keys(&table, &file)?;
        let cfg = deserialize(&table, &file)?;
        cfg.validate_static(&file)?;
        Ok(Config {
            source: file,
            ..cfg
        })
    }

    /// The resolved configuration as TOML (what `zerotrain config show` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Deserialises the checked table; a type error names the `section.key` it is in (found
/// from the error's position in the table rendered as TOML text).
fn deserialize(table: &toml::Table, file: &str) -> Result<Config, ConfigError> {
    let text = toml::to_string(table).map_err(|e| ConfigError::Parse {
        file: file.into(),
        msg: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e: toml::de::Error| {
        let key = e
            .span()
            .map(|span| key_at(&text, span.start))
            .unwrap_or_default();
        if key.is_empty() {
            ConfigError::Parse {
                file: file.into(),
                msg: e.message().to_string(),
            }
        } else {
            ConfigError::Invalid {
                file: file.into(),
                key,
                msg: e.message().to_string(),
            }
        }
    })
}

/// The `section.key` whose line holds byte `pos` of `text`.
fn key_at(text: &str, pos: usize) -> String {
    let before = &text[..pos.min(text.len())];
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    let section = before
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        .unwrap_or("");
    match (section.is_empty(), key.is_empty() || key.starts_with('[')) {
        (false, false) => format!("{section}.{key}"),
        (false, true) => section.to_string(),
        _ => key.to_string(),
    }
}
