//! From a file to a desired state: read once, check the values and the machine, find Flink's
//! version, derive. Every problem of every stage is reported together, so an operator fixes a
//! file in one pass; a problem never half-applies anything (nothing is in force until `load`
//! returns `Ok`).

use super::{derive, Desired};
use crate::config::{self, AgentConfig, ConfigError, Errors, FieldError, Sizing};
use crate::flinkconf;
use crate::machine::Machine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A config revision and what it asks for.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub config: AgentConfig,
    pub desired: Desired,
    /// Short SHA-256 of exactly the bytes that were parsed.
    pub revision: String,
    /// Unix time it was loaded.
    pub loaded_at: u64,
    /// The machine as read when the agent started (what `"auto"` plan values resolve to).
    pub machine: Machine,
}

/// What an agent process fixed when it started, and keeps for every reload.
#[derive(Debug, Clone)]
pub struct Started {
    pub state_dir: PathBuf,
    pub machine: Machine,
}

/// The smallest memory Flink's two JVMs fit in (the smallest plan).
const AUTO_MEMORY_FLOOR_MIB: u32 = 4096;

/// Replaces `"auto"` plan values with what `machine` offers; a machine too small to run Flink
/// is a problem of `plan.memory_mib`, with the fix.
pub fn resolve_plan(config: &mut AgentConfig, machine: &Machine) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if config.plan.memory_mib == Sizing::Auto {
        if machine.memory_mib < AUTO_MEMORY_FLOOR_MIB {
            errors.push(FieldError::new(
                "plan.memory_mib",
                format!(
                    "\"auto\" found {} MiB ({}), but Flink's JobManager and TaskManager need at least {AUTO_MEMORY_FLOOR_MIB} MiB; use a larger VM or set plan.memory_mib",
                    machine.memory_mib, machine.memory_source
                ),
            ));
        }
        config.plan.memory_mib = Sizing::Fixed(machine.memory_mib.max(AUTO_MEMORY_FLOOR_MIB));
    }
    if config.plan.vcpus == Sizing::Auto {
        config.plan.vcpus = Sizing::Fixed(machine.vcpus.max(1));
    }
    errors
}

/// Loads `path` into a desired state, or every problem with it.
///
/// `started` is what the agent in force fixed at its start (None at start, and for the CLI:
/// the machine is read then). The state dir
/// only changes with the agent process (the agent's state, the rendered conf dir, staging and
/// job records live there, and moving them under running processes would half-apply the
/// change), so every concern is derived on the running one, while `desired.agent` keeps what
/// the file asks for, and the agent concern reports that the change waits for a restart.
pub fn load(path: &Path, started: Option<&Started>) -> Result<Loaded, ConfigError> {
    let text = config::read(path)?;
    let (config, mut errors) = config::check(path, &text)?;
    let requested_state_dir = config.agent.state_dir.clone();
    let mut effective = config.clone();
    let machine = match started {
        Some(started) => {
            effective.agent.state_dir = started.state_dir.clone();
            started.machine.clone()
        }
        None => Machine::detect(),
    };
    let auto = [config.plan.memory_mib, config.plan.vcpus].contains(&Sizing::Auto);
    errors.extend_fresh(resolve_plan(&mut effective, &machine));
    // An unusable flink.home was already reported; its version is then not looked for.
    let version = match flinkconf::detect_version(&config.flink.home) {
        Ok(v) => Some(v),
        Err(_) => {
            errors.extend_fresh(super::shape(&effective).1);
            errors.extend_fresh([config::FieldError::new(
                "flink.home",
                format!(
                    "{} has no lib/flink-dist-*.jar, so the Flink version cannot be told; is the distribution complete?",
                    config.flink.home.display()
                ),
            )]);
            None
        }
    };
    let desired = version.and_then(|v| match derive(&effective, v) {
        Ok(mut d) => {
            d.agent.state_dir = requested_state_dir;
            d.plan.auto = auto.then(|| {
                format!(
                    "auto: {} MiB from {}, {} CPU(s)",
                    machine.memory_mib, machine.memory_source, machine.vcpus
                )
            });
            Some(d)
        }
        Err(e) => {
            errors.extend_fresh(e);
            None
        }
    });
    match desired {
        Some(desired) if errors.0.is_empty() => Ok(Loaded {
            path: path.to_path_buf(),
            config,
            desired,
            revision: hex::encode(&Sha256::digest(text.as_bytes())[..6]),
            loaded_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine,
        }),
        _ => Err(invalid(path, errors)),
    }
}

fn invalid(path: &Path, errors: Errors) -> ConfigError {
    ConfigError::Invalid {
        path: path.display().to_string(),
        errors: errors.0,
    }
}
