//! Agent configuration: parse, report every problem at once, validate.
//!
//! Loading is two passes so operators see all their mistakes in one go:
//! 1. structural: each section is deserialized on its own, unknown keys are collected with
//!    their full path (instead of serde's stop-at-first `deny_unknown_fields`), and type errors
//!    carry the key path;
//! 2. semantic: ranges, cross-field rules, owned Flink keys, and the environment (Flink home,
//!    Java, user) are checked by [`validate`], again collecting everything.

mod diff;
mod error;
mod firewall;
mod ha;
mod sections;
mod storage;
mod tls;
mod validate;

pub use diff::changed_keys;
pub use error::{ConfigError, Errors, FieldError};
pub use firewall::{FirewallSection, ManagementSection};
pub use ha::{host_port, Ensemble, HaSection, Member, ZOOKEEPER_TICK_MS};
pub use sections::*;
pub use storage::{
    credentials_file_problem, parse_store_url, redact_userinfo, CheckpointsSection,
    ObjectStoreSection, StoreUrl,
};
pub use tls::{TlsMode, TlsProtocol, TlsSection};
pub use validate::{check_environment, validate_values, OWNED_KEY_PREFIXES};

use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads, parses and fully validates (including the environment) a configuration file.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    let text = read(path)?;
    let (config, errors) = check(path, &text)?;
    into_result(config, errors, path.display().to_string())
}

/// Parses `text`, the content of `path` (relative paths are taken relative to its directory),
/// and checks its values and the machine, collecting every problem. Fails early only when the
/// text is not TOML; the config returned holds defaults where a value was refused.
pub fn check(path: &Path, text: &str) -> Result<(AgentConfig, Errors), ConfigError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let (config, mut errors) = parse_collect(text, &path.display().to_string(), Some(base))?;
    check_environment(&config, &mut errors);
    storage::check_credentials_file(&config.object_store, &mut errors);
    Ok((config, errors))
}

/// The file's content, or the error naming it.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads and parses a file with value checks only (no environment checks): enough for the
/// CLI to find the socket path on a machine where Flink is not installed.
pub fn load_unchecked(path: &Path) -> Result<AgentConfig, ConfigError> {
    let (config, errors) = read_and_parse(path)?;
    into_result(config, errors, path.display().to_string())
}

/// The API socket named by a config file, read leniently: an operator asks for `status` (or
/// `reload`) exactly when something is wrong, possibly with the file itself, so only
/// `agent.socket` has to make sense. A missing or unusable value, or a file that is not even
/// TOML, means the default: the running agent then answers, and a reload gets its refusal with
/// every problem listed (and recorded in `status`). Only an unreadable file is an error.
pub fn socket_path(path: &Path) -> Result<std::path::PathBuf, ConfigError> {
    let text = read(path)?;
    let configured = text.parse::<toml::Table>().ok().and_then(|table| {
        table
            .get("agent")
            .and_then(|a| a.get("socket"))
            .and_then(|s| s.as_str())
            .map(std::path::PathBuf::from)
    });
    Ok(match configured {
        Some(p) if p.is_relative() => normalize(&path.parent().unwrap_or(Path::new(".")).join(p)),
        Some(p) => p,
        None => AgentConfig::default().agent.socket,
    })
}

/// Reads a file and parses it with paths relative to its directory, so a checked-in demo
/// config works from any checkout location. Value problems are collected, not returned as an
/// error (only a file that is not TOML is).
pub fn read_and_parse(path: &Path) -> Result<(AgentConfig, Errors), ConfigError> {
    let text = read(path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_collect(&text, &path.display().to_string(), Some(base))
}

/// Parses and validates values (no filesystem checks). `origin` names the source in errors.
/// Paths must be absolute.
pub fn parse(text: &str, origin: &str) -> Result<AgentConfig, ConfigError> {
    let (config, errors) = parse_collect(text, origin, None)?;
    into_result(config, errors, origin.to_string())
}

/// Parses and checks values, collecting every problem; fails early only on a TOML syntax
/// error. With `base`, relative paths are taken relative to it.
fn parse_collect(
    text: &str,
    origin: &str,
    base: Option<&Path>,
) -> Result<(AgentConfig, Errors), ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: origin.to_string(),
            message: e.to_string().trim().to_string(),
        })?;
    let mut errors = Errors::default();
    let mut config = AgentConfig::default();
    for (key, value) in &table {
        let value = value.clone();
        match key.as_str() {
            "agent" => section(key, value, &mut config.agent, &mut errors),
            "node" => section(key, value, &mut config.node, &mut errors),
            "cluster" => section(key, value, &mut config.cluster, &mut errors),
            "flink" => section(key, value, &mut config.flink, &mut errors),
            "ports" => section(key, value, &mut config.ports, &mut errors),
            "plan" => section(key, value, &mut config.plan, &mut errors),
            "advanced" => section(key, value, &mut config.advanced, &mut errors),
            "supervisor" => section(key, value, &mut config.supervisor, &mut errors),
            "object_store" => section(key, value, &mut config.object_store, &mut errors),
            "checkpoints" => section(key, value, &mut config.checkpoints, &mut errors),
            "firewall" => section(key, value, &mut config.firewall, &mut errors),
            "tls" => section(key, value, &mut config.tls, &mut errors),
            "metrics" => section(key, value, &mut config.metrics, &mut errors),
            "ha" => section(key, value, &mut config.ha, &mut errors),
            other => errors.push(
                other,
                format!(
                    "unknown section; valid sections are {}",
                    SECTIONS.join(", ")
                ),
            ),
        }
    }
    if let Some(base) = base {
        resolve_relative(&mut config, base);
    }
    validate_values(&config, &mut errors);
    storage::validate_storage(&config.object_store, &config.checkpoints, &mut errors);
    Ok((config, errors))
}

fn resolve_relative(config: &mut AgentConfig, base: &Path) {
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    for p in [
        &mut config.agent.state_dir,
        &mut config.agent.socket,
        &mut config.flink.home,
        &mut config.flink.java_home,
        &mut config.flink.data_dir,
        &mut config.flink.log_dir,
    ] {
        if p.is_relative() {
            *p = normalize(&base.join(&*p));
        }
    }
    for p in config
        .ha
        .shared_dir
        .iter_mut()
        .chain(config.ha.zookeeper_classpath.iter_mut())
        .filter(|p| p.is_relative())
    {
        *p = normalize(&base.join(&*p));
    }
    let files = config.tls.files_mut();
    for p in std::iter::once(&mut config.object_store.credentials_file)
        .chain(files)
        .filter_map(Option::as_mut)
        .filter(|p| p.is_relative())
    {
        *p = normalize(&base.join(&*p));
    }
    // `file://relative/dir` (the demo's object store) is taken relative to the file as well.
    let url = &mut config.object_store.url;
    if let Some(rest) = url.strip_prefix("file://").filter(|r| !r.starts_with('/')) {
        *url = format!("file://{}", normalize(&base.join(rest)).display());
    }
}

/// Removes `.` and `..` lexically, so paths in logs and Flink's config read cleanly.
fn normalize(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Top-level sections, for the unknown-section message.
const SECTIONS: &[&str] = &[
    "agent",
    "node",
    "cluster",
    "flink",
    "ports",
    "plan",
    "advanced",
    "supervisor",
    "object_store",
    "checkpoints",
    "firewall",
    "tls",
    "metrics",
    "ha",
];

fn into_result(
    config: AgentConfig,
    errors: Errors,
    path: String,
) -> Result<AgentConfig, ConfigError> {
    if errors.0.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path,
            errors: errors.0,
        })
    }
}

/// Deserializes one section into `slot`, recording unknown keys and every type error (with its
/// key path) instead of failing the whole file. After a type error the offending top-level key
/// of the section is dropped (it keeps its default) and the section is parsed again, so one bad
/// value neither hides the other bad values nor the range checks of the good ones.
fn section<T: DeserializeOwned>(
    name: &str,
    mut value: toml::Value,
    slot: &mut T,
    errors: &mut Errors,
) {
    let mut unknown = std::collections::BTreeSet::new();
    loop {
        let result = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
            value.clone(),
            &mut |path: serde_ignored::Path<'_>| {
                unknown.insert(path.to_string());
            },
        ));
        match result {
            Ok(parsed) => {
                *slot = parsed;
                break;
            }
            Err(e) => {
                let inner = e.path().to_string();
                let path = if inner == "." || inner.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}.{inner}")
                };
                let first = e.path().iter().next().and_then(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    _ => None,
                });
                errors.push(path, explain_type_error(e.inner().message()));
                let removed = match (first, value.as_table_mut()) {
                    (Some(key), Some(table)) => table.remove(&key).is_some(),
                    _ => false,
                };
                if !removed {
                    break; // the section itself is malformed (e.g. not a table)
                }
            }
        }
    }
    for key in unknown {
        errors.push(
            format!("{name}.{key}"),
            "unknown key; check its spelling against config/agent.toml (the commented reference)",
        );
    }
}

/// Turns serde's type messages into advice an operator can act on.
fn explain_type_error(message: &str) -> String {
    let message = message.trim();
    if message.contains("expected u") && message.contains("integer `-") {
        format!("{message}; this value cannot be negative")
    } else if message.contains("expected u16") {
        format!("{message}; ports range from 1 to 65535")
    } else if message.contains("unknown variant") {
        format!("{message}; use one of the listed values")
    } else {
        message.to_string()
    }
}
