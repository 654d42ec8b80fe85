//! The node's firewall: the agent owns one nftables table (`inet flink_agent` by default) and
//! never touches any other. Desired rules are planned purely from the config ([`plan`]),
//! applied in one atomic transaction ([`apply`]), and a reconcile loop compares the live table
//! with the desired one every `firewall.reconcile_interval_secs` and repairs drift.
//!
//! The loop is a plain thread, not a tokio task: `nft` calls block, and `nft` runs as a child
//! of this thread, so the rules land in the network namespace of the thread that called
//! [`spawn`] (the tests rely on that to govern a namespace of their own).
//!
//! The table stays in force when the agent stops: a restart must not open the node.

pub mod apply;
pub mod compare;
pub mod plan;
mod policy;
mod rules;

pub use apply::{Comparison, FirewallError};
pub use plan::Swap;
pub use policy::Policy;

use crate::config::AgentConfig;
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the firewall loop reports (`status.firewall`, `GET /v1/firewall`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FirewallStatus {
    /// `firewall.enabled` of the config in force.
    pub enabled: bool,
    pub table: String,
    /// The live table matched the desired one at the last check (or is absent while disabled).
    pub in_sync: bool,
    /// Times drift was found and repaired since the agent started.
    pub repairs: u64,
    /// Why the firewall is not (fully) in force, e.g. `nft` missing or no CAP_NET_ADMIN.
    pub last_error: Option<String>,
    /// Why the last config handed to the loop was refused; the rules before it stay in force.
    /// (The daemon validates before handing a config over, so this is a safety net.)
    pub config_refused: Option<String>,
    /// Unix time of the last successful apply.
    pub last_applied: Option<u64>,
    /// Unix time of the last comparison of live and desired.
    pub last_checked: Option<u64>,
    /// Comparisons of live and desired since the agent started.
    pub checks: u64,
    /// What differed at the last check that found drift.
    pub last_drift: Vec<String>,
}

/// The running firewall loop. Dropping it stops the loop (the rules stay).
#[derive(Debug)]
pub struct FirewallHandle {
    updates: Option<mpsc::Sender<AgentConfig>>,
    status: Arc<Mutex<FirewallStatus>>,
    thread: Option<JoinHandle<()>>,
}

impl FirewallHandle {
    /// Hands a new (validated) config to the loop, which applies it at once.
    pub fn update(&self, config: &AgentConfig) {
        if let Some(tx) = &self.updates {
            // A send error means the loop is gone; its status already says why.
            let _ = tx.send(config.clone());
        }
    }

    pub fn status(&self) -> FirewallStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FirewallHandle {
    fn drop(&mut self) {
        self.updates = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the loop, which applies `config` at once (or, when disabled, removes the table).
pub fn spawn(config: &AgentConfig) -> FirewallHandle {
    let (tx, rx) = mpsc::channel();
    let status = Arc::new(Mutex::new(FirewallStatus::default()));
    let reconciler = Reconciler {
        status: Arc::clone(&status),
        policy: None,
    };
    let interval = Duration::from_secs(config.firewall.reconcile_interval_secs.max(1));
    // The channel is fresh and the receiver alive: the first config cannot fail to send.
    let _ = tx.send(config.clone());
    let thread = std::thread::Builder::new()
        .name("firewall".into())
        .spawn(move || reconciler.run(&rx, interval));
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .last_error = Some(format!(
                "could not start the firewall thread ({e}); the firewall is NOT enforced"
            ));
            None
        }
    };
    FirewallHandle {
        updates: Some(tx),
        status,
        thread,
    }
}

/// The loop's state: the policy in force (None when disabled or refused).
struct Reconciler {
    status: Arc<Mutex<FirewallStatus>>,
    policy: Option<Policy>,
}

impl Reconciler {
    fn run(mut self, updates: &mpsc::Receiver<AgentConfig>, mut interval: Duration) {
        let mut next = Instant::now() + interval;
        loop {
            match updates.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(config) => {
                    interval = Duration::from_secs(config.firewall.reconcile_interval_secs.max(1));
                    self.configure(&config);
                    next = Instant::now() + interval;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.check();
                    next = Instant::now() + interval;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Takes a new config: apply the table, or remove it when the firewall was turned off. A
    /// config the policy refuses leaves the rules in force untouched.
    ///
    /// A firewall that is off at start is not touched at all (not even read): an agent with
    /// `enabled = false` never runs `nft`. A table left from an earlier run is removed with
    /// `flink-agent firewall remove`.
    fn configure(&mut self, config: &AgentConfig) {
        let f = &config.firewall;
        if !f.enabled {
            let result = match self.policy.take() {
                Some(old) => apply::remove(&old.table),
                None => Ok(()),
            };
            self.update(|s| {
                *s = FirewallStatus {
                    enabled: false,
                    table: f.table.clone(),
                    in_sync: result.is_ok(),
                    repairs: s.repairs,
                    checks: s.checks,
                    last_error: result.err().map(|e| e.to_string()),
                    ..Default::default()
                };
            });
            return;
        }
        match Policy::from_config(config) {
            Ok(policy) => {
                self.update(|s| {
                    s.enabled = true;
                    s.table = policy.table.clone();
                    s.config_refused = None;
                });
                let applied = self.apply(&policy, Swap::InPlace);
                let old = self.policy.replace(policy);
                // A renamed table: the new one is in force before the old one goes.
                if let Some(old) = old.filter(|o| applied && o.table != f.table) {
                    if let Err(e) = apply::remove(&old.table) {
                        self.update(|s| s.last_error = Some(e.to_string()));
                    }
                }
            }
            Err(errors) => {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                self.update(|s| {
                    s.enabled = true;
                    s.config_refused = Some(list.join("; "));
                });
            }
        }
    }

    /// Compares live with desired; repairs drift. Retries an apply that failed before.
    fn check(&mut self) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        self.update(|s| {
            s.checks += 1;
            s.last_checked = Some(now());
        });
        match apply::compare(&policy) {
            Ok(c) if c.in_sync => self.update(|s| {
                s.in_sync = true;
                s.last_error = None;
            }),
            Ok(c) => {
                let was_applied = self.update(|s| {
                    s.last_drift = c.differences.clone();
                    s.last_error.is_none() && s.last_applied.is_some()
                });
                if self.apply(&policy, c.swap()) && was_applied {
                    self.update(|s| s.repairs += 1);
                    log::warn!(
                        "firewall: repaired drift in table inet {}: {}",
                        policy.table,
                        c.differences.join("; ")
                    );
                }
            }
            Err(e) => self.update(|s| {
                s.in_sync = false;
                s.last_error = Some(e.to_string());
            }),
        }
    }

    /// Applies `policy` with `swap`; true on success.
    fn apply(&self, policy: &Policy, swap: Swap) -> bool {
        let result = apply::apply(policy, swap);
        let ok = result.is_ok();
        if let Err(e) = &result {
            log::error!("firewall: {e}");
        }
        self.update(|s| {
            s.in_sync = ok;
            match result {
                Ok(()) => {
                    s.last_applied = Some(now());
                    s.last_error = None;
                }
                Err(e) => s.last_error = Some(e.to_string()),
            }
        });
        ok
    }

    fn update<R>(&self, f: impl FnOnce(&mut FirewallStatus) -> R) -> R {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
