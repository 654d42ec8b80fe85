//! The periodic TLS check: every `tls.check_interval_secs` (and after each reload) the material
//! of the revision in force is checked again — a renewal due at 2/3 of the node certificate's
//! life, new files from the control plane, the next step of a CA rotation — and a new
//! generation goes through the concerns like a reload of the same file. A CA rotation step
//! follows the previous one only once Flink is healthy again and `rotation_step_pause_secs`
//! passed, so each step is one restart the jobs have recovered from.

use super::reload::Trigger;
use super::Daemon;
use crate::config::FieldError;
use crate::desired::Loaded;
use crate::tls::{Checks, TlsStatus};
use std::time::{Duration, Instant, SystemTime};

/// How long to wait before trying again when a reload holds the concerns.
const BUSY_RETRY: Duration = Duration::from_secs(5);
/// Wake-up while TLS is off (nothing to do; a reload turning it on resets the schedule).
const IDLE: Duration = Duration::from_secs(3600);

/// When the next check runs, and what the last one found.
#[derive(Debug)]
pub(super) struct TlsChecks {
    enabled: bool,
    interval: Duration,
    pause: Duration,
    last: Option<SystemTime>,
    next_periodic: Instant,
    refused: Vec<FieldError>,
    /// When a rotation step was applied that another one follows.
    step_applied: Option<Instant>,
    /// Since when both processes are healthy (None while they are not).
    ready_since: Option<Instant>,
    /// A check runs now.
    in_flight: bool,
    /// No check before this (the concerns were busy).
    not_before: Instant,
}

impl TlsChecks {
    /// After the start, which prepared the generation in force (that was the first check).
    pub(super) fn started(loaded: &Loaded) -> Self {
        let mut checks = TlsChecks {
            enabled: false,
            interval: IDLE,
            pause: Duration::ZERO,
            last: None,
            next_periodic: Instant::now(),
            refused: Vec::new(),
            step_applied: None,
            ready_since: None,
            in_flight: false,
            not_before: Instant::now(),
        };
        checks.checked(loaded, true);
        checks
    }

    /// A check (or a reload, which checks too) produced `loaded`; `applied` when its
    /// generation is now in force.
    pub(super) fn checked(&mut self, loaded: &Loaded, applied: bool) {
        let s = &loaded.desired.tls.settings;
        self.in_flight = false;
        self.enabled = s.enabled;
        self.interval = s.check_interval;
        self.pause = s.step_pause;
        self.last = Some(SystemTime::now());
        self.next_periodic = Instant::now() + if s.enabled { s.check_interval } else { IDLE };
        self.refused = loaded.tls_refused.clone();
        let follows = loaded
            .desired
            .tls
            .generation
            .as_ref()
            .and_then(|g| g.facts.as_ref())
            .is_some_and(|f| f.next_step.is_some());
        self.step_applied = match (follows, applied) {
            (false, _) => None,
            (true, true) => Some(Instant::now()),
            (true, false) => self.step_applied,
        };
    }

    /// A check could not run or was refused outright.
    pub(super) fn failed(&mut self, errors: Vec<FieldError>) {
        self.in_flight = false;
        self.last = Some(SystemTime::now());
        self.next_periodic = Instant::now() + self.interval;
        self.refused = errors;
    }

    /// A check starts.
    pub(super) fn begin(&mut self) {
        self.in_flight = true;
    }

    /// The concerns were busy: try again shortly.
    pub(super) fn postpone(&mut self) {
        self.in_flight = false;
        self.not_before = Instant::now() + BUSY_RETRY;
    }

    pub(super) fn on_ready(&mut self, ready: bool) {
        self.ready_since = ready.then(Instant::now);
    }

    /// When the next rotation step may run: Flink healthy again for `pause`.
    fn step_due(&self) -> Option<Instant> {
        let applied = self.step_applied?;
        let ready = self.ready_since?;
        Some(applied.max(ready) + self.pause)
    }

    /// Whether a rotation step must wait: one was applied and Flink is not healthy again for
    /// the pause yet (a reload or a check meanwhile keeps the node's material).
    pub(super) fn holding(&self) -> bool {
        self.step_applied.is_some() && self.step_due().is_none_or(|due| due > Instant::now())
    }

    /// When the loop must wake up for the next check.
    pub(super) fn wake(&self) -> Instant {
        if !self.enabled {
            return Instant::now() + IDLE;
        }
        if self.in_flight {
            return Instant::now() + BUSY_RETRY;
        }
        let due = match self.step_due() {
            Some(step) => step.min(self.next_periodic),
            None => self.next_periodic,
        };
        due.max(self.not_before)
    }

    fn due(&self, now: Instant) -> bool {
        self.enabled && !self.in_flight && self.wake() <= now
    }

    fn status(&self) -> Checks {
        let next = self
            .wake()
            .checked_duration_since(Instant::now())
            .unwrap_or_default();
        Checks {
            last: self.last,
            next: self.enabled.then(|| SystemTime::now() + next),
            refused: self.refused.clone(),
        }
    }
}

impl Daemon {
    /// The loop woke up for TLS: run the check if it is due.
    pub(super) fn tls_tick(&mut self) {
        let now = Instant::now();
        if self.tls.due(now) {
            self.begin_reload(Trigger::TlsCheck, None);
        }
    }

    pub(super) fn tls_status(&self) -> TlsStatus {
        let d = &self.in_force.desired;
        TlsStatus::of(
            &d.tls.settings,
            d.tls.generation.as_ref(),
            &self.tls.status(),
            SystemTime::now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks() -> TlsChecks {
        TlsChecks {
            enabled: true,
            interval: Duration::from_secs(3600),
            pause: Duration::from_secs(30),
            last: None,
            next_periodic: Instant::now() + Duration::from_secs(3600),
            refused: Vec::new(),
            step_applied: None,
            ready_since: None,
            in_flight: false,
            not_before: Instant::now(),
        }
    }

    #[test]
    fn a_rotation_step_waits_for_flink_healthy_again_and_the_pause() {
        let mut c = checks();
        let applied = Instant::now();
        c.step_applied = Some(applied);
        c.on_ready(false);
        assert!(
            c.wake() > applied + Duration::from_secs(3000),
            "not while restarting"
        );
        c.on_ready(true);
        let due = c.wake();
        assert!(due >= applied + Duration::from_secs(30));
        assert!(due < applied + Duration::from_secs(40));
        assert!(!c.due(Instant::now()));
        assert!(c.holding(), "a reload now keeps the step for later");
        assert!(c.due(due));
    }

    #[test]
    fn without_a_step_the_check_is_periodic_and_off_means_never_due() {
        let mut c = checks();
        c.on_ready(true);
        assert_eq!(c.wake(), c.next_periodic);
        c.begin();
        assert!(
            !c.due(c.next_periodic + Duration::from_secs(1)),
            "one at a time"
        );
        c.postpone();
        assert!(c.wake() >= Instant::now() + Duration::from_secs(4));
        c.enabled = false;
        assert!(!c.due(c.next_periodic + Duration::from_secs(1)));
    }
}
