//! The supervision state machine of one process, without side effects: it is fed what happened
//! (launched, probe result, exit, time passing, operator requests) and answers what to do
//! (launch, kill the group). Time is passed in, so every rule is unit-tested without processes.

use super::ProcessState;
use crate::config::SupervisorSection;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Consecutive failed health probes of a healthy process before it is restarted. One failed
/// probe is noise (a GC pause, a slow REST handler); three in a row is a hung process.
pub const UNHEALTHY_PROBES: u32 = 3;

/// A process that stayed healthy this long before it failed was not crash-looping: restarting
/// brought it back, so its failure does not spend the budget. Found by the three-node fault
/// runner: standby JobManagers killed, hung or cut off from ZooKeeper six times in five minutes,
/// healthy again after each restart, were parked for 300 s, and the cluster ran without a
/// standby for as long. A crash loop that reaches health (a job that brings its JobManager
/// down as it is recovered) fails within seconds of it and still spends the budget.
pub const PROVEN_HEALTHY: Duration = Duration::from_secs(10);

/// What the driver must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Start the process now.
    Launch,
    /// Kill the process group: it counts as failed (start timeout, hung); the exit that follows
    /// is only recorded.
    Kill,
    /// The budget is exhausted (the state is `Failed` now, with `reason`, until the window
    /// has passed); kill the group.
    GiveUp,
}

/// What a restarted agent must not forget of a process's supervision. An agent restart (a
/// crash, a watchdog abort, `systemctl restart`, an upgrade) is no evidence that the process got
/// better: without this, every agent restart handed a crash-looping process a new budget and
/// un-parked a parked one. Ages, not instants: `Instant`s mean nothing to another process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// How long ago each failure inside the window happened.
    pub failure_ages: Vec<Duration>,
    pub consecutive: u32,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

/// One process's supervision state: where it is, and the failures it has used up.
#[derive(Debug, Clone)]
pub struct Machine {
    name: &'static str,
    settings: SupervisorSection,
    state: ProcessState,
    /// Start timeout (Starting), end of the back-off (BackingOff), or the next try (Failed).
    deadline: Option<Instant>,
    probe_failures: u32,
    /// Failures inside the budget window, oldest first.
    failures: VecDeque<Instant>,
    /// Since when the current process has been healthy.
    healthy_since: Option<Instant>,
    /// Failures since the process was last healthy: the back-off exponent.
    consecutive: u32,
    restarts: u32,
    /// Waiting on the way back from a failure: its launch is a restart.
    restart_waits: bool,
    last_exit: Option<String>,
    reason: Option<String>,
}

impl Machine {
    pub fn new(name: &'static str, settings: SupervisorSection) -> Self {
        Self {
            name,
            settings,
            state: ProcessState::Stopped,
            deadline: None,
            probe_failures: 0,
            healthy_since: None,
            failures: VecDeque::new(),
            consecutive: 0,
            restarts: 0,
            restart_waits: false,
            last_exit: None,
            reason: None,
        }
    }

    pub fn state(&self) -> ProcessState {
        self.state
    }
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
    pub fn last_exit(&self) -> Option<&str> {
        self.last_exit.as_deref()
    }
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    /// The next moment `tick` has something to do, so the driver can sleep until then.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// New settings after a reload; the failure history stays.
    pub fn set_settings(&mut self, settings: SupervisorSection) {
        self.settings = settings;
    }

    /// True while a process of this machine may be alive and is expected to be.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            ProcessState::Starting | ProcessState::Running | ProcessState::Unhealthy
        )
    }

    /// The process was started.
    pub fn launched(&mut self, now: Instant) {
        match self.state {
            ProcessState::BackingOff | ProcessState::Failed => self.restarts += 1,
            // What it waited for is there now.
            ProcessState::Waiting => {
                self.reason = None;
                if self.restart_waits {
                    self.restarts += 1;
                }
            }
            _ => {}
        }
        self.restart_waits = false;
        self.enter_starting(now);
    }

    /// The process was started again on purpose (operator, config change): counts as a restart,
    /// not as a failure.
    pub fn relaunched(&mut self, now: Instant, why: &str) {
        self.restarts += 1;
        self.reason = Some(why.to_string());
        self.enter_starting(now);
    }

    fn enter_starting(&mut self, now: Instant) {
        self.state = ProcessState::Starting;
        self.deadline = Some(now + self.start_timeout());
        self.probe_failures = 0;
        self.healthy_since = None;
    }

    /// The process still runs but has to prove its health again from scratch without it being
    /// a failure (the TaskManager after a JobManager restart must re-register).
    pub fn revalidate(&mut self, now: Instant, why: &str) {
        if self.is_live() {
            self.reason = Some(why.to_string());
            // The same process: how long it has been healthy still counts.
            let since = self.healthy_since;
            self.enter_starting(now);
            self.healthy_since = since;
        }
    }

    /// Keeps a Starting process's start timeout from running out while it cannot become healthy
    /// through no fault of its own (the TaskManager while the JobManager is down).
    pub fn hold(&mut self, now: Instant) {
        if self.state == ProcessState::Starting {
            self.deadline = Some(now + self.start_timeout());
        }
    }

    /// The process cannot start yet (`why`); the driver tries again at its next step. Not a
    /// failure: nothing ran.
    pub fn waiting(&mut self, why: &str) {
        self.restart_waits |= self.state == ProcessState::BackingOff;
        self.state = ProcessState::Waiting;
        self.deadline = None;
        self.reason = Some(why.to_string());
    }

    /// The process has been healthy since `since` (an adopted process, under the agent that
    /// started it): a failure now is judged by that, not by this agent's first probe.
    pub fn healthy_since(&mut self, since: Instant) {
        self.healthy_since = Some(since);
    }

    /// A health probe succeeded.
    pub fn healthy(&mut self, now: Instant) {
        if matches!(self.state, ProcessState::Starting | ProcessState::Unhealthy) {
            self.state = ProcessState::Running;
            self.deadline = None;
            self.consecutive = 0;
            self.healthy_since.get_or_insert(now);
        }
        self.probe_failures = 0;
    }

    /// A health probe failed. Starting processes are judged by their start timeout instead.
    pub fn probe_failed(&mut self, now: Instant, why: &str) -> Action {
        if !matches!(self.state, ProcessState::Running | ProcessState::Unhealthy) {
            return Action::Nothing;
        }
        self.probe_failures += 1;
        self.state = ProcessState::Unhealthy;
        if self.probe_failures < UNHEALTHY_PROBES {
            return Action::Nothing;
        }
        let cause = format!("unhealthy for {} probes: {why}", self.probe_failures);
        self.fail(now, cause)
    }

    /// The process exited (`how`: "exited with status 1", "killed by signal 9").
    pub fn exited(&mut self, now: Instant, how: &str) -> Action {
        self.last_exit = Some(how.to_string());
        match self.state {
            ProcessState::Starting | ProcessState::Running | ProcessState::Unhealthy => {
                match self.fail(now, how.to_string()) {
                    // Already gone: nothing to kill beyond the group sweep the driver always does.
                    Action::Kill => Action::Nothing,
                    other => other,
                }
            }
            ProcessState::Stopping => {
                self.state = ProcessState::Stopped;
                Action::Nothing
            }
            _ => Action::Nothing,
        }
    }

    /// Time passed: start timeouts and back-off ends.
    pub fn tick(&mut self, now: Instant) -> Action {
        let due = self.deadline.is_some_and(|d| now >= d);
        match self.state {
            ProcessState::Starting if due => {
                let cause = format!(
                    "not healthy within the start timeout of {} s",
                    self.settings.start_timeout_secs
                );
                self.fail(now, cause)
            }
            ProcessState::BackingOff | ProcessState::Failed if due => Action::Launch,
            _ => Action::Nothing,
        }
    }

    /// A stop was asked for (shutdown, operator restart, config change).
    pub fn stopping(&mut self) {
        self.deadline = None;
        self.restart_waits = false;
        self.state = if self.is_live() || self.state == ProcessState::Stopping {
            ProcessState::Stopping
        } else {
            ProcessState::Stopped
        };
    }

    /// The process is gone after a stop.
    pub fn stopped(&mut self) {
        self.state = ProcessState::Stopped;
        self.deadline = None;
    }

    /// An operator asked for a restart: forget the failures, so a `failed` process gets a new
    /// budget.
    pub fn reset_budget(&mut self) {
        self.failures.clear();
        self.consecutive = 0;
    }

    /// What a later agent needs to go on where this one stopped (see [`History`]).
    pub fn history(&self, now: Instant) -> History {
        History {
            failure_ages: self
                .failures
                .iter()
                .map(|t| now.duration_since(*t))
                .collect(),
            consecutive: self.consecutive,
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
        }
    }

    /// Takes over an earlier agent's [`History`] of this process. A process that is not
    /// running and had spent its budget stays parked for the rest of its window, as it would
    /// have under the earlier agent; an adopted process keeps its state.
    pub fn resume(&mut self, history: History, now: Instant) {
        let window = Duration::from_secs(self.settings.restart_window_secs);
        let mut failures: Vec<Instant> = history
            .failure_ages
            .iter()
            .filter(|age| **age < window)
            .filter_map(|age| now.checked_sub(*age))
            .collect();
        failures.sort();
        self.failures = failures.into();
        self.consecutive = history.consecutive;
        self.restarts = history.restarts;
        self.last_exit = history.last_exit.or(self.last_exit.take());
        let spent = self.failures.len() > self.settings.max_restarts as usize;
        if let (ProcessState::Stopped, true, Some(newest)) =
            (self.state, spent, self.failures.back().copied())
        {
            let cause = format!(
                "{}, before the agent restarted",
                self.last_exit.as_deref().unwrap_or("failed")
            );
            self.park(newest + window, now, &cause);
        }
    }

    /// Failures it may still have within the window before it is marked `failed`.
    pub fn budget_remaining(&self, now: Instant) -> u32 {
        let window = Duration::from_secs(self.settings.restart_window_secs);
        let recent = self
            .failures
            .iter()
            .filter(|t| now.duration_since(**t) < window)
            .count();
        self.settings
            .max_restarts
            .saturating_sub(u32::try_from(recent).unwrap_or(u32::MAX))
    }

    /// Counts one failure against the budget: back off, or park the process for a window.
    fn fail(&mut self, now: Instant, cause: String) -> Action {
        let window = Duration::from_secs(self.settings.restart_window_secs);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
        let proven = self
            .healthy_since
            .take()
            .is_some_and(|t| now.duration_since(t) >= PROVEN_HEALTHY);
        if !proven {
            self.failures.push_back(now);
        }
        self.consecutive += 1;
        self.probe_failures = 0;
        if !proven && self.failures.len() > self.settings.max_restarts as usize {
            // Parked, not abandoned: a burst of outside faults that hit a process before it
            // is healthy for long (a partition that costs a starting JobManager its ZooKeeper
            // session) spends the budget as surely as a crash loop, and a node must heal from
            // the first by itself. One try per window keeps a real crash loop cheap; the alert
            // says it is parked.
            self.park(now + window, now, &cause);
            return Action::GiveUp;
        }
        let delay = backoff(&self.settings, self.consecutive);
        self.state = ProcessState::BackingOff;
        self.deadline = Some(now + delay);
        self.reason = Some(format!(
            "{cause}; restarting in {:.1} s",
            delay.as_secs_f64()
        ));
        Action::Kill
    }

    /// The budget is spent: `Failed` until `until`, with the reason the alert shows.
    fn park(&mut self, until: Instant, now: Instant, cause: &str) {
        self.state = ProcessState::Failed;
        self.deadline = Some(until);
        self.reason = Some(format!(
            "crashed {} times in {} s, never healthy for {} s (last: {cause}); trying again in {} s, or at once with `flink-agent restart {}` after fixing the cause",
            self.failures.len(),
            self.settings.restart_window_secs,
            PROVEN_HEALTHY.as_secs(),
            until.saturating_duration_since(now).as_secs(),
            self.name
        ));
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.start_timeout_secs)
    }
}

/// Delay before restart number `consecutive` (1 = first failure since the process was last
/// healthy): none for the first, then `backoff_initial_ms` doubling per further consecutive
/// failure, capped at `backoff_max_ms`. A single crash of a healthy JVM is not a loop, and every
/// second before its restart is recovery time the job loses (measured by `benches/rto.py`); the
/// back-off is there for the repeats, and the failure budget for the rest.
pub fn backoff(settings: &SupervisorSection, consecutive: u32) -> Duration {
    if consecutive <= 1 {
        return Duration::ZERO;
    }
    let doublings = consecutive.saturating_sub(2).min(63);
    let ms = settings
        .backoff_initial_ms
        .saturating_mul(1u64 << doublings)
        .min(settings.backoff_max_ms);
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SupervisorSection {
        SupervisorSection {
            start_timeout_secs: 60,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 30_000,
            max_restarts: 5,
            restart_window_secs: 300,
            ..SupervisorSection::default()
        }
    }

    /// A JobManager killed six times at `t0`, each right after it became healthy: parked.
    fn parked_by_six_kills(t0: Instant) -> Machine {
        let mut m = Machine::new("jobmanager", settings());
        for _ in 0..6 {
            m.launched(t0);
            m.healthy(t0);
            m.exited(t0, "killed by signal 9");
        }
        m
    }

    fn running(now: Instant) -> Machine {
        let mut m = Machine::new("taskmanager", settings());
        m.launched(now);
        m.healthy(now);
        m
    }

    #[test]
    fn first_failure_restarts_at_once_then_backoff_doubles_up_to_the_cap() {
        let s = settings();
        let delays: Vec<u64> = (1..=8).map(|n| backoff(&s, n).as_millis() as u64).collect();
        assert_eq!(
            delays,
            [0, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
        assert_eq!(backoff(&s, u32::MAX), Duration::from_millis(30_000));
    }

    #[test]
    fn start_then_healthy_is_running() {
        let t0 = Instant::now();
        let mut m = Machine::new("jobmanager", settings());
        assert_eq!(m.state(), ProcessState::Stopped);
        m.launched(t0);
        assert_eq!(m.state(), ProcessState::Starting);
        m.healthy(t0);
        assert_eq!(m.state(), ProcessState::Running);
        assert_eq!(m.restarts(), 0);
    }

    #[test]
    fn crash_backs_off_then_relaunches_and_counts_a_restart() {
        let t0 = Instant::now();
        let mut m = running(t0);
        assert_eq!(m.exited(t0, "killed by signal 9"), Action::Nothing);
        assert_eq!(m.state(), ProcessState::BackingOff);
        assert_eq!(m.last_exit(), Some("killed by signal 9"));
        // The first crash of a healthy process restarts at once.
        assert_eq!(m.tick(t0), Action::Launch);
        m.launched(t0);
        assert_eq!(m.state(), ProcessState::Starting);
        assert_eq!(m.restarts(), 1);
        // A repeat before it is healthy again waits out the back-off.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(m.exited(t1, "killed by signal 9"), Action::Nothing);
        assert_eq!(m.tick(t1 + Duration::from_millis(999)), Action::Nothing);
        assert_eq!(m.tick(t1 + Duration::from_millis(1_000)), Action::Launch);
    }

    #[test]
    fn a_restart_that_waits_for_its_precondition_still_counts() {
        let t0 = Instant::now();
        let mut m = running(t0);
        m.exited(t0, "killed by signal 9");
        assert_eq!(m.tick(t0), Action::Launch);
        m.waiting("waiting for the JobManager to drop the TaskManager that ended");
        m.waiting("waiting for the JobManager to drop the TaskManager that ended");
        assert_eq!(m.state(), ProcessState::Waiting);
        m.launched(t0 + Duration::from_secs(8));
        assert_eq!(
            (m.state(), m.restarts(), m.reason()),
            (ProcessState::Starting, 1, None)
        );
        // A first start that waited (a three-node cluster's quorum) is not a restart.
        let mut first = Machine::new("taskmanager", settings());
        first.waiting("waiting for the ZooKeeper quorum");
        first.launched(t0);
        assert_eq!(first.restarts(), 0);
    }

    #[test]
    fn back_off_grows_with_consecutive_failures_and_resets_when_healthy() {
        let t0 = Instant::now();
        let mut m = running(t0);
        m.exited(t0, "exited with status 1");
        m.launched(t0);
        m.exited(t0, "exited with status 1");
        m.launched(t0);
        m.exited(t0, "exited with status 1");
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(2)));
        m.launched(t0);
        m.healthy(t0);
        m.exited(t0, "exited with status 1");
        assert_eq!(m.deadline(), Some(t0));
    }

    #[test]
    fn more_than_max_restarts_in_the_window_is_failed_with_the_reason() {
        let t0 = Instant::now();
        let mut m = Machine::new("taskmanager", settings());
        for i in 0..5 {
            m.launched(t0 + Duration::from_secs(i));
            assert_ne!(m.exited(t0, "exited with status 1"), Action::GiveUp);
        }
        m.launched(t0);
        assert_eq!(m.exited(t0, "exited with status 1"), Action::GiveUp);
        assert_eq!(m.state(), ProcessState::Failed);
        assert_eq!(
            m.reason(),
            Some(
                "crashed 6 times in 300 s, never healthy for 10 s (last: exited with status 1); \
                 trying again in 300 s, \
                 or at once with `flink-agent restart taskmanager` after fixing the cause"
            )
        );
        assert_eq!(m.tick(t0 + Duration::from_secs(299)), Action::Nothing);
    }

    /// Found by the three-node fault runner: a JobManager's budget spent by outside faults
    /// (hung, then its ZooKeeper session lost in a partition, then killed) left the node without
    /// one until an operator came. A parked process is tried again once the window has passed,
    /// with the budget that window frees; a restart on the way counts as a restart.
    #[test]
    fn a_failed_process_is_tried_again_after_the_window() {
        let t0 = Instant::now();
        let mut m = parked_by_six_kills(t0);
        assert_eq!(m.state(), ProcessState::Failed);
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(300)));
        let later = t0 + Duration::from_secs(300);
        assert_eq!(m.tick(later), Action::Launch);
        let restarts = m.restarts();
        m.launched(later);
        assert_eq!(
            (m.state(), m.restarts()),
            (ProcessState::Starting, restarts + 1)
        );
        m.healthy(later);
        assert_eq!(m.state(), ProcessState::Running);
        assert_eq!(m.budget_remaining(later), 5);
    }

    #[test]
    fn a_restarted_agent_keeps_the_budget_and_a_parked_process_stays_parked() {
        let t0 = Instant::now();
        let before = parked_by_six_kills(t0);
        let t1 = t0 + Duration::from_secs(100);
        let mut after = Machine::new("jobmanager", settings());
        after.resume(before.history(t1), t1);
        assert_eq!(after.state(), ProcessState::Failed);
        assert_eq!(after.deadline(), Some(t0 + Duration::from_secs(300)));
        assert_eq!(
            (after.budget_remaining(t1), after.restarts()),
            (0, before.restarts())
        );
        assert_eq!(
            after.reason(),
            Some(
                "crashed 6 times in 300 s, never healthy for 10 s (last: killed by signal 9, \
                 before the agent restarted); \
                 trying again in 200 s, or at once with `flink-agent restart jobmanager` after \
                 fixing the cause"
            )
        );
        assert_eq!(after.tick(t0 + Duration::from_secs(300)), Action::Launch);
    }

    #[test]
    fn a_resumed_history_keeps_the_back_off_and_forgets_what_left_the_window() {
        let t0 = Instant::now();
        let mut before = Machine::new("taskmanager", settings());
        for i in 0..3u64 {
            let t = t0 + Duration::from_secs(200 * i);
            before.launched(t);
            before.exited(t, "exited with status 1");
        }
        // At t0 + 450 s the first failure (t0) is out of the 300 s window.
        let t1 = t0 + Duration::from_secs(450);
        let mut after = Machine::new("taskmanager", settings());
        after.resume(before.history(t1), t1);
        assert_eq!(
            after.state(),
            ProcessState::Stopped,
            "not parked: launch it"
        );
        assert_eq!(after.budget_remaining(t1), 3);
        after.launched(t1);
        after.exited(t1, "exited with status 1");
        assert_eq!(
            after.deadline(),
            Some(t1 + backoff(&settings(), 4)),
            "the fourth consecutive failure backs off as the fourth"
        );
        // An adopted process keeps running whatever its history says, and a failure after it
        // had run for a while under the earlier agent does not count.
        let mut adopted = Machine::new("taskmanager", settings());
        adopted.launched(t1);
        adopted.healthy_since(t1 - PROVEN_HEALTHY);
        let mut spent = before.history(t1);
        spent.failure_ages = vec![Duration::from_secs(1); 6];
        adopted.resume(spent, t1);
        assert_eq!(adopted.state(), ProcessState::Starting);
        assert_eq!(adopted.budget_remaining(t1), 0);
        assert_eq!(
            adopted.exited(t1, "killed by signal 9"),
            Action::Nothing,
            "restarted, not parked"
        );
        assert_eq!(adopted.state(), ProcessState::BackingOff);
    }

    /// Found by the three-node fault runner (see [`PROVEN_HEALTHY`]).
    #[test]
    fn a_process_healthy_for_a_while_before_each_failure_keeps_its_budget() {
        let t0 = Instant::now();
        let mut m = Machine::new("jobmanager", settings());
        for i in 0..12u64 {
            let t = t0 + Duration::from_secs(20 * i);
            m.launched(t);
            m.healthy(t);
            let failed = t + PROVEN_HEALTHY;
            assert_ne!(m.probe_failed(failed, "timeout"), Action::GiveUp);
            m.probe_failed(failed, "timeout");
            assert_eq!(m.probe_failed(failed, "timeout"), Action::Kill, "at {i}");
            assert_eq!(m.budget_remaining(failed), 5, "at {i}");
            assert_eq!(m.deadline(), Some(failed), "restarted at once");
        }
        // Healthy for less than that: the failure counts.
        let t = t0 + Duration::from_secs(400);
        m.launched(t);
        m.healthy(t);
        m.exited(
            t + PROVEN_HEALTHY - Duration::from_millis(1),
            "killed by signal 9",
        );
        assert_eq!(m.budget_remaining(t + PROVEN_HEALTHY), 4);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut m = Machine::new("taskmanager", settings());
        for i in 0..20u64 {
            // One failure every 61 s: never more than 5 inside 300 s.
            let t = t0 + Duration::from_secs(61 * i);
            m.launched(t);
            assert_ne!(
                m.exited(t, "exited with status 1"),
                Action::GiveUp,
                "at {i}"
            );
        }
    }

    #[test]
    fn operator_reset_gives_a_failed_process_a_new_budget() {
        let t0 = Instant::now();
        let mut m = Machine::new("taskmanager", settings());
        for _ in 0..6 {
            m.launched(t0);
            m.exited(t0, "exited with status 1");
        }
        assert_eq!(m.state(), ProcessState::Failed);
        m.reset_budget();
        m.relaunched(t0, "restart requested by the operator");
        assert_eq!(m.state(), ProcessState::Starting);
        assert_eq!(m.exited(t0, "exited with status 1"), Action::Nothing);
        assert_eq!(m.state(), ProcessState::BackingOff);
    }

    #[test]
    fn start_timeout_counts_as_a_failure_and_kills() {
        let t0 = Instant::now();
        let mut m = Machine::new("jobmanager", settings());
        m.launched(t0);
        assert_eq!(m.tick(t0 + Duration::from_secs(59)), Action::Nothing);
        assert_eq!(m.tick(t0 + Duration::from_secs(60)), Action::Kill);
        assert_eq!(m.state(), ProcessState::BackingOff);
        assert!(m
            .reason()
            .is_some_and(|r| r.contains("start timeout of 60 s")));
        // The kill's exit is recorded, not counted again.
        assert_eq!(
            m.exited(t0 + Duration::from_secs(60), "killed by signal 9"),
            Action::Nothing
        );
        assert_eq!(m.state(), ProcessState::BackingOff);
    }

    #[test]
    fn three_failed_probes_restart_a_running_process_and_one_good_probe_recovers() {
        let t0 = Instant::now();
        let mut m = running(t0);
        assert_eq!(m.probe_failed(t0, "timeout"), Action::Nothing);
        assert_eq!(m.state(), ProcessState::Unhealthy);
        m.healthy(t0);
        assert_eq!(m.state(), ProcessState::Running);
        assert_eq!(m.probe_failed(t0, "timeout"), Action::Nothing);
        assert_eq!(m.probe_failed(t0, "timeout"), Action::Nothing);
        assert_eq!(m.probe_failed(t0, "timeout"), Action::Kill);
        assert_eq!(m.state(), ProcessState::BackingOff);
    }

    #[test]
    fn failed_probes_while_starting_only_wait_for_the_timeout() {
        let t0 = Instant::now();
        let mut m = Machine::new("taskmanager", settings());
        m.launched(t0);
        for _ in 0..10 {
            assert_eq!(m.probe_failed(t0, "not registered"), Action::Nothing);
        }
        assert_eq!(m.state(), ProcessState::Starting);
    }

    #[test]
    fn hold_postpones_the_start_timeout_and_revalidate_is_not_a_failure() {
        let t0 = Instant::now();
        let mut m = running(t0);
        m.revalidate(t0, "re-registering with the restarted JobManager");
        assert_eq!(m.state(), ProcessState::Starting);
        m.hold(t0 + Duration::from_secs(50));
        assert_eq!(m.tick(t0 + Duration::from_secs(100)), Action::Nothing);
        assert_eq!(m.tick(t0 + Duration::from_secs(110)), Action::Kill);
        // The only failure is the timeout: the first, restarted at once; and the same process
        // had been healthy before it, so it does not spend the budget.
        assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(110)));
        assert_eq!(m.budget_remaining(t0 + Duration::from_secs(110)), 5);
    }

    #[test]
    fn waiting_is_no_failure_and_the_next_launch_starts_it() {
        let t0 = Instant::now();
        let mut m = Machine::new("jobmanager", settings());
        m.waiting("waiting for the ZooKeeper quorum");
        assert_eq!(m.state(), ProcessState::Waiting);
        assert!(!m.is_live());
        assert_eq!(m.tick(t0 + Duration::from_secs(3_600)), Action::Nothing);
        m.launched(t0);
        assert_eq!((m.state(), m.restarts()), (ProcessState::Starting, 0));
        assert_eq!(m.reason(), None, "no longer waiting");
        m.waiting("again");
        m.stopping();
        assert_eq!(m.state(), ProcessState::Stopped);
    }

    #[test]
    fn stop_of_a_live_process_waits_for_its_exit() {
        let t0 = Instant::now();
        let mut m = running(t0);
        m.stopping();
        assert_eq!(m.state(), ProcessState::Stopping);
        assert_eq!(m.exited(t0, "exited with status 143"), Action::Nothing);
        assert_eq!(m.state(), ProcessState::Stopped);
        assert_eq!(m.restarts(), 0);
        let mut failed = Machine::new("taskmanager", settings());
        failed.stopping();
        assert_eq!(failed.state(), ProcessState::Stopped);
    }
}
