//! The edge: runs `nft` to apply a planned transaction, read the live table, or remove it.
//!
//! The JSON comes from the `nftables` crate's schema types, but `nft` is run here rather than
//! through `nftables::helper`, because the helper lets `nft`'s stderr go to ours: the reason
//! for a failure ("Operation not permitted", which element was refused) would be lost, and
//! the status could not say plainly that the agent lacks CAP_NET_ADMIN.
//!
//! `nft` runs as a child of the calling thread, so it acts on that thread's network namespace.

use super::compare::Snapshot;
use super::plan::{self, Swap};
use super::Policy;
use nftables::schema::Nftables;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// Why `nft` could not do its job. Every message says what it means for the node.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("`nft` is not installed (not found in PATH); install the nftables package. The firewall is NOT enforced; the rest of the agent keeps working")]
    NftMissing,
    #[error("`nft` was refused ({message}): the agent lacks CAP_NET_ADMIN; run it as root or grant AmbientCapabilities=CAP_NET_ADMIN in its systemd unit. The firewall is NOT enforced; the rest of the agent keeps working")]
    NotPermitted { message: String },
    #[error("could not run `nft` while {action}: {source}")]
    Run {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`nft` failed while {action}: {stderr}")]
    Failed {
        action: &'static str,
        stderr: String,
    },
    #[error("`nft` printed JSON the agent cannot read while {action}: {source}")]
    BadJson {
        action: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Desired against live, for `firewall show|apply` and the reconcile loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub table: String,
    pub in_sync: bool,
    /// One sentence per difference; empty when in sync.
    pub differences: Vec<String>,
    /// The transaction the agent applies (in place).
    pub desired: Value,
    /// `nft -j list table inet <table>`; None when the table does not exist.
    pub live: Option<Value>,
    /// The live table holds objects the plan does not (an in-place swap would leave them).
    pub foreign_objects: bool,
}

impl Comparison {
    /// The swap that brings this live table to the desired one.
    pub fn swap(&self) -> Swap {
        if self.foreign_objects {
            Swap::Replace
        } else {
            Swap::InPlace
        }
    }

    /// `firewall show`: whether the live table matches, and each difference.
    pub fn render_human(&self) -> String {
        if self.in_sync {
            return format!("table inet {}: in force, matches the config\n", self.table);
        }
        let mut out = format!("table inet {}: differs from the config:\n", self.table);
        for d in &self.differences {
            out.push_str(&format!("  - {d}\n"));
        }
        out
    }
}

/// Applies the desired ruleset for `policy` in one atomic transaction. An in-place swap that
/// `nft` refuses (say, a set re-created by hand with another type) falls back to replacing
/// the table. The caller picks the swap from what it knows of the live table
/// ([`Comparison::swap`]); reading it here would double the cost of an apply, since listing a
/// table with a thousand set elements takes `nft` longer than changing it.
pub fn apply(policy: &Policy, swap: Swap) -> Result<(), FirewallError> {
    let action = "applying the agent's table";
    if swap == Swap::InPlace {
        match run_transaction(&plan::plan(policy, Swap::InPlace), action) {
            Err(FirewallError::Failed { stderr, .. }) => {
                log::warn!("firewall: in-place update refused ({stderr}); replacing the table")
            }
            other => return other,
        }
    }
    run_transaction(&plan::plan(policy, Swap::Replace), action)
}

/// Deletes the agent's table `table` (and nothing else). Succeeds when there is none, also
/// when `nft` is not installed: then there can be no table.
pub fn remove(table: &str) -> Result<(), FirewallError> {
    match run_transaction(&plan::removal(table), "removing the agent's table") {
        Err(FirewallError::NftMissing) => Ok(()),
        other => other,
    }
}

/// Reads the live table `table`, or None when it does not exist.
pub fn live_table(table: &str) -> Result<Option<Value>, FirewallError> {
    let action = "reading the agent's table";
    let out = nft(&["-j", "list", "table", "inet", table], None, action);
    match out {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| FirewallError::BadJson { action, source }),
        Err(FirewallError::Failed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Compares the live table with what `policy` wants.
pub fn compare(policy: &Policy) -> Result<Comparison, FirewallError> {
    let live = live_table(&policy.table)?;
    let desired = desired_snapshot(policy);
    let (differences, foreign_objects) = match &live {
        Some(listing) => {
            let snapshot = Snapshot::from_listing(listing);
            (
                snapshot.differences_from(&desired),
                snapshot.has_objects_beyond(&desired),
            )
        }
        None => (
            vec![format!("table inet {} does not exist", policy.table)],
            false,
        ),
    };
    Ok(Comparison {
        table: policy.table.clone(),
        in_sync: differences.is_empty(),
        differences,
        desired: to_value(&plan::plan(policy, Swap::InPlace)),
        live,
        foreign_objects,
    })
}

fn desired_snapshot(policy: &Policy) -> Snapshot {
    let values: Vec<Value> = plan::objects(policy).iter().map(to_value).collect();
    Snapshot::from_objects(&values)
}

fn to_value<T: Serialize>(v: &T) -> Value {
    // The crate's schema types are plain data; serializing them cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn run_transaction(ruleset: &Nftables<'_>, action: &'static str) -> Result<(), FirewallError> {
    let payload = to_value(ruleset).to_string();
    nft(&["-j", "-f", "-"], Some(&payload), action).map(drop)
}

/// Runs `nft args...`, feeding `stdin`, and classifies failures.
fn nft(args: &[&str], stdin: Option<&str>, action: &'static str) -> Result<String, FirewallError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => FirewallError::NftMissing,
            _ => FirewallError::Run { action, source },
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|source| FirewallError::Run { action, source })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| FirewallError::Run { action, source })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else if stderr.contains("Operation not permitted") {
        Err(FirewallError::NotPermitted {
            message: first_line(&stderr),
        })
    } else {
        Err(FirewallError::Failed { action, stderr })
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}
