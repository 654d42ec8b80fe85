//! What to do about the node's TLS material, decided purely from what is in force, what is
//! desired and the time (passed in). Flink 2.3 loads TLS material only at start, so every step
//! is a JobManager + TaskManager restart (one job restart from the newest checkpoint); the plan
//! says which step, with which trust, and how urgently.
//!
//! A CA change goes in three steps, each applied on every node before the next starts (the
//! caller gates that across nodes): trust old+new → new leaf under the new CA → drop the old CA.
//! Skipping one would make a restarted peer meet a certificate it does not trust. In `files` mode
//! the control plane delivers those steps as files, and material that skips one is refused.

use super::cert::{days_between, Fingerprint};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// Alert and force a restart at least this long before expiry.
pub const MIN_MARGIN: Duration = Duration::from_secs(7 * 86_400);

/// A certificate's validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Window {
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// Renewal point: 2/3 of the lifetime (cert-manager's and step-ca's default).
    pub fn renew_at(&self) -> SystemTime {
        self.not_before + self.lifetime() * 2 / 3
    }

    /// When the alert starts: 7 days or 10% of the lifetime before expiry, whichever is earlier.
    pub fn alert_from(&self) -> SystemTime {
        let margin = (self.lifetime() / 10).max(MIN_MARGIN);
        self.not_after
            .checked_sub(margin)
            .unwrap_or(self.not_before)
    }

    /// The latest time new material must be in force: 90% of the lifetime or 7 days before
    /// expiry, whichever is earlier.
    pub fn deadline(&self) -> SystemTime {
        let ninety = self.not_before + self.lifetime() * 9 / 10;
        let week_before = self
            .not_after
            .checked_sub(MIN_MARGIN)
            .unwrap_or(self.not_before);
        ninety.min(week_before)
    }
}

/// The node certificate Flink runs on (or would run on): identity, anchoring CA, validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafState {
    pub fingerprint: Fingerprint,
    /// The CA of the trust set this leaf chains to.
    pub issuer: Fingerprint,
    pub window: Window,
}

/// What the running JVMs loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InForce {
    pub leaf: LeafState,
    pub trusted: BTreeSet<Fingerprint>,
}

/// What the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// `files` mode: the checked material now on disk.
    Files {
        leaf: LeafState,
        trusted: BTreeSet<Fingerprint>,
    },
    /// `ca` and `self-signed` modes: the CA the agent issues from now.
    Issuer { ca: Fingerprint },
}

/// Why new files are not applied; the cluster keeps running on what is in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the new CA bundle no longer trusts CA {issuer}, which signed the certificate in force; deliver a CA change in three steps: bundle with old and new CA, then the new certificate, then the bundle without the old CA")]
    TrustDropsLeafInForce { issuer: Fingerprint },
    #[error("the new certificate is signed by CA {issuer}, which the trust in force does not hold, so peers would refuse it; first deliver a CA bundle with both CAs")]
    LeafNotYetTrusted { issuer: Fingerprint },
}

/// The step to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// `ca`/`self-signed`: issue a new leaf from the same CA (2/3 of the lifetime passed).
    RenewLeaf,
    /// `files`: a new leaf from the same CA appeared on disk.
    ApplyNewLeaf,
    /// CA rotation 1/3: trust the new CA besides the old; the keystore in force stays.
    TrustNewCa,
    /// CA rotation 2/3: a leaf from the new CA (`ca`: issue it; `files`: the new files).
    LeafUnderNewCa,
    /// CA rotation 3/3: stop trusting the old CA.
    DropOldCa,
    Refuse(Refusal),
}

/// When the restart that applies a step must happen. Each restart is JobManager and
/// TaskManager together: both load the same stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    None,
    /// As soon as allowed (a rotation step; the next one waits for it).
    Soon,
    /// At a maintenance window or natural restart, forced at this time (now, if past).
    By(SystemTime),
    /// At the next restart that happens anyway; nothing breaks meanwhile.
    NextNatural,
}

/// Days to expiry of the leaf in force and whether to alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub not_after: SystemTime,
    pub days_left: i64,
    pub alert: bool,
}

/// For any certificate (leaf or CA): days left, alert from [`Window::alert_from`].
pub fn expiry(window: &Window, now: SystemTime) -> Expiry {
    Expiry {
        not_after: window.not_after,
        days_left: days_between(now, window.not_after),
        alert: now >= window.alert_from(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub step: Step,
    /// The truststore to write with this step (the one in force for `Nothing`/`Refuse`).
    pub trusted: BTreeSet<Fingerprint>,
    pub restart: Restart,
    pub expiry: Expiry,
}

/// Decides the next step. Pure.
pub fn decide(in_force: &InForce, desired: &Desired, now: SystemTime) -> Decision {
    let (step, trusted, restart) = match desired {
        Desired::Issuer { ca } => issuer_step(in_force, ca, now),
        Desired::Files { leaf, trusted } => files_step(in_force, leaf, trusted),
    };
    Decision {
        step,
        trusted,
        restart,
        expiry: expiry(&in_force.leaf.window, now),
    }
}

fn issuer_step(
    f: &InForce,
    ca: &Fingerprint,
    now: SystemTime,
) -> (Step, BTreeSet<Fingerprint>, Restart) {
    let only_new = BTreeSet::from([ca.clone()]);
    if !f.trusted.contains(ca) {
        let mut widened = f.trusted.clone();
        widened.insert(ca.clone());
        return (Step::TrustNewCa, widened, Restart::Soon);
    }
    if &f.leaf.issuer != ca {
        return (Step::LeafUnderNewCa, f.trusted.clone(), Restart::Soon);
    }
    if now >= f.leaf.window.renew_at() {
        // A pending drop of an old CA rides along with the renewal's restart.
        return (
            Step::RenewLeaf,
            only_new,
            Restart::By(f.leaf.window.deadline()),
        );
    }
    if f.trusted != only_new {
        return (Step::DropOldCa, only_new, Restart::NextNatural);
    }
    (Step::Nothing, f.trusted.clone(), Restart::None)
}

fn files_step(
    f: &InForce,
    leaf: &LeafState,
    trusted: &BTreeSet<Fingerprint>,
) -> (Step, BTreeSet<Fingerprint>, Restart) {
    let refuse = |r| (Step::Refuse(r), f.trusted.clone(), Restart::None);
    if trusted != &f.trusted {
        if !trusted.contains(&f.leaf.issuer) {
            return refuse(Refusal::TrustDropsLeafInForce {
                issuer: f.leaf.issuer.clone(),
            });
        }
        // Trust first; a new leaf in the same delivery waits for the next decision.
        return if trusted.is_subset(&f.trusted) {
            (Step::DropOldCa, trusted.clone(), Restart::NextNatural)
        } else {
            (Step::TrustNewCa, trusted.clone(), Restart::Soon)
        };
    }
    if leaf.fingerprint == f.leaf.fingerprint {
        return (Step::Nothing, f.trusted.clone(), Restart::None);
    }
    if !f.trusted.contains(&leaf.issuer) {
        return refuse(Refusal::LeafNotYetTrusted {
            issuer: leaf.issuer.clone(),
        });
    }
    if leaf.issuer != f.leaf.issuer {
        return (Step::LeafUnderNewCa, f.trusted.clone(), Restart::Soon);
    }
    (
        Step::ApplyNewLeaf,
        f.trusted.clone(),
        Restart::By(f.leaf.window.deadline()),
    )
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
