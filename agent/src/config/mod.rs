//! Agent configuration: parse, report every problem at once, validate.
//!
//! Loading is two passes so operators see all their mistakes in one go:
//! 1. structural: each section is deserialized on its own, unknown keys are collected with
//!    their full path (instead of serde's stop-at-first `deny_unknown_fields`), and type errors
//!    carry the key path;
//! 2. semantic: ranges, cross-field rules, owned Flink keys, and the environment (Flink home,
//!    Java, user) are checked by [`validate`], again collecting everything.

mod error;
mod firewall;
mod sections;
mod validate;

pub use error::{ConfigError, Errors, FieldError};
pub use firewall::{FirewallSection, ManagementSection};
pub use sections::*;
pub use validate::{check_environment, validate_values, OWNED_KEY_PREFIXES};

use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads, parses and fully validates (including the environment) a configuration file.
pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let shown = path.display().to_string();
    let config = parse(&text, &shown)?;
    let mut errors = Errors::default();
    check_environment(&config, &mut errors);
    into_result(config, errors, shown)
}

/// Parses and validates values (no filesystem checks). `origin` names the source in errors.
pub fn parse(text: &str, origin: &str) -> Result<AgentConfig, ConfigError> {
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
            "firewall" => section(key, value, &mut config.firewall, &mut errors),
            other => errors.push(
                other,
                format!(
                    "unknown section; valid sections are {}",
                    SECTIONS.join(", ")
                ),
            ),
        }
    }
    validate_values(&config, &mut errors);
    into_result(config, errors, origin.to_string())
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
    "firewall",
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

/// Deserializes one section into `slot`, recording unknown keys and the first type error
/// (with its key path) instead of failing the whole file.
fn section<T: DeserializeOwned>(name: &str, value: toml::Value, slot: &mut T, errors: &mut Errors) {
    let mut unknown = Vec::new();
    let result = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        value,
        &mut |path: serde_ignored::Path<'_>| unknown.push(path.to_string()),
    ));
    for key in unknown {
        errors.push(
            format!("{name}.{key}"),
            "unknown key; check its spelling against config/agent.toml (the commented reference)",
        );
    }
    match result {
        Ok(parsed) => *slot = parsed,
        Err(e) => {
            let inner = e.path().to_string();
            let path = if inner == "." || inner.is_empty() {
                name.to_string()
            } else {
                format!("{name}.{inner}")
            };
            errors.push(path, explain_type_error(&e.into_inner().to_string()));
        }
    }
}

/// Turns serde's type messages into advice an operator can act on.
fn explain_type_error(message: &str) -> String {
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
