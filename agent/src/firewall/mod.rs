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

use crate::config::{AgentConfig, FieldError};
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// What the firewall must look like: derived from the config (and so always valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The agent's table (also the one to remove when the firewall is off).
    pub table: String,
    pub reconcile_interval: Duration,
    /// The rules; None when `firewall.enabled = false`.
    pub policy: Option<Policy>,
}

impl Settings {
    /// The firewall's settings, or every problem with them, each naming its key.
    pub fn from_config(c: &AgentConfig) -> Result<Settings, Vec<FieldError>> {
        let f = &c.firewall;
        Ok(Settings {
            table: f.table.clone(),
            reconcile_interval: Duration::from_secs(f.reconcile_interval_secs.max(1)),
            policy: if f.enabled {
                Some(Policy::from_config(c)?)
            } else {
                None
            },
        })
    }
}

/// An update for the loop, and where to answer once it is applied.
type Update = (Settings, oneshot::Sender<Result<(), String>>);

/// Answered once a handed-over [`Settings`] was applied: Err says why the rules are not (all)
/// in force (no `nft`, no CAP_NET_ADMIN); the rest of the agent keeps working either way.
pub type Applied = oneshot::Receiver<Result<(), String>>;

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
    updates: Option<mpsc::Sender<Update>>,
    status: Arc<Mutex<FirewallStatus>>,
    thread: Option<JoinHandle<()>>,
}

impl FirewallHandle {
    /// Hands new settings to the loop, which applies them at once; the answer comes when
    /// they are applied (or failed to be).
    pub fn update(&self, settings: Settings) -> Applied {
        let (tx, rx) = oneshot::channel();
        if let Some(updates) = &self.updates {
            // A send error means the loop is gone: the answer's sender is dropped with it.
            let _ = updates.send((settings, tx));
        }
        rx
    }

    pub fn status(&self) -> FirewallStatus {
        self.reader().get()
    }

    /// A cheap way to read the status from elsewhere (the handle itself owns the loop).
    pub fn reader(&self) -> StatusReader {
        StatusReader(Arc::clone(&self.status))
    }
}

/// Reads the firewall loop's status; cheap to clone.
#[derive(Debug, Clone)]
pub struct StatusReader(Arc<Mutex<FirewallStatus>>);

impl StatusReader {
    pub fn get(&self) -> FirewallStatus {
        self.0
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

/// Starts the loop, which applies `settings` at once (or, when the firewall is off, does not
/// touch nftables at all). The second value answers once that first apply is done, so Flink's
/// ports are never open before their rules are in force.
pub fn spawn(settings: Settings) -> (FirewallHandle, Applied) {
    let (tx, rx) = mpsc::channel();
    let status = Arc::new(Mutex::new(FirewallStatus::default()));
    let reconciler = Reconciler {
        status: Arc::clone(&status),
        policy: None,
    };
    let interval = settings.reconcile_interval;
    let (applied_tx, applied) = oneshot::channel();
    // The channel is fresh and the receiver alive: the first settings cannot fail to send.
    let _ = tx.send((settings, applied_tx));
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
    let handle = FirewallHandle {
        updates: Some(tx),
        status,
        thread,
    };
    (handle, applied)
}

/// The loop's state: the policy in force (None when disabled or refused).
struct Reconciler {
    status: Arc<Mutex<FirewallStatus>>,
    policy: Option<Policy>,
}

impl Reconciler {
    fn run(mut self, updates: &mpsc::Receiver<Update>, mut interval: Duration) {
        let mut next = Instant::now() + interval;
        loop {
            match updates.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok((settings, applied)) => {
                    interval = settings.reconcile_interval;
                    self.configure(settings);
                    let _ = applied.send(match self.status().last_error {
                        Some(e) => Err(e),
                        None => Ok(()),
                    });
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

    /// Takes new settings: apply the table, or remove it when the firewall was turned off.
    ///
    /// A firewall that is off at start is not touched at all (not even read): an agent with
    /// `enabled = false` never runs `nft`. A table left from an earlier run is removed with
    /// `flink-agent firewall remove`.
    fn configure(&mut self, settings: Settings) {
        let Some(policy) = settings.policy else {
            let result = match self.policy.take() {
                Some(old) => apply::remove(&old.table),
                None => Ok(()),
            };
            self.update(|s| {
                *s = FirewallStatus {
                    enabled: false,
                    table: settings.table.clone(),
                    in_sync: result.is_ok(),
                    repairs: s.repairs,
                    checks: s.checks,
                    last_error: result.err().map(|e| e.to_string()),
                    ..Default::default()
                };
            });
            return;
        };
        self.update(|s| {
            s.enabled = true;
            s.table = policy.table.clone();
        });
        let applied = self.apply(&policy, Swap::InPlace);
        let old = self.policy.replace(policy);
        // A renamed table: the new one is in force before the old one goes.
        if let Some(old) = old.filter(|o| applied && o.table != settings.table) {
            if let Err(e) = apply::remove(&old.table) {
                self.update(|s| s.last_error = Some(e.to_string()));
            }
        }
    }

    fn status(&self) -> FirewallStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
