//! From a file to a desired state: read once, check the values and the machine, find Flink's
//! version, prepare the TLS generation (which checks the TLS files), derive. Every problem of
//! every stage is reported together, so an operator fixes a file in one pass; a problem never
//! half-applies anything (nothing is in force until `load` returns `Ok`; a TLS generation
//! prepared for it is new files, never the ones Flink runs with).

use super::{derive, Desired};
use crate::config::{self, AgentConfig, ConfigError, Errors, FieldError, Sizing};
use crate::flinkconf;
use crate::machine::Machine;
use crate::tls;
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
    /// TLS material refused while the generation in force was kept (agent start, periodic
    /// check); a reload refuses it instead.
    pub tls_refused: Vec<FieldError>,
    /// The config every concern is derived from (`config` on the running state dir).
    effective: AgentConfig,
    /// The machine as read when the agent started (what `"auto"` plan values resolve to).
    pub machine: Machine,
}

impl Loaded {
    /// The same revision with its TLS material checked again at `now` (the periodic check):
    /// a renewal due, new files, the next step of a CA rotation. Refused material keeps the
    /// generation in force and is listed in `tls_refused`.
    /// With `hold`, a rotation step waits (see `tls::prepare`).
    pub fn recheck_tls(&self, now: SystemTime, hold: bool) -> Result<Loaded, Vec<FieldError>> {
        let settings = &self.desired.tls.settings;
        if !settings.enabled {
            return Ok(self.clone());
        }
        let prepared = tls::prepare(settings, now, tls::Access::ApplyOrKeep, hold)?;
        let mut desired = derive(
            &self.effective,
            self.desired.flink.version,
            Some(&prepared.generation),
        )?;
        desired.agent = self.desired.agent.clone();
        desired.plan = self.desired.plan.clone();
        Ok(Loaded {
            desired,
            tls_refused: prepared.refused,
            ..self.clone()
        })
    }
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
///
/// `started` is what the agent in force fixed at its start (None at start, and for the CLI:
/// the machine is read then).
///
/// `tls` says what may be done with TLS material: `Inspect` for the commands that only look,
/// `Apply` for a reload (bad material refuses it), `ApplyOrKeep` at the agent's start (bad
/// material keeps the generation in force, as Flink does); `hold` keeps a rotation step for
/// later (Flink is still recovering from the previous one).
pub fn load(
    path: &Path,
    started: Option<&Started>,
    tls: tls::Access,
    hold: bool,
) -> Result<Loaded, ConfigError> {
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
    // TLS material is read only for a file otherwise sound: a refused file makes nothing.
    let settings = super::tls_settings(&effective);
    let prepared = match (&version, settings.enabled && errors.0.is_empty()) {
        (Some(_), true) => match tls::prepare(&settings, SystemTime::now(), tls, hold) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.extend_fresh(e);
                None
            }
        },
        _ => None,
    };
    let desired = version.and_then(|v| {
        match derive(&effective, v, prepared.as_ref().map(|p| &p.generation)) {
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
            tls_refused: prepared.map(|p| p.refused).unwrap_or_default(),
            effective,
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
