//! The HashMap state backend keeps every job's state on the TaskManager's heap: state that
//! outgrows it ends in garbage-collection storms and out-of-memory restarts. This compares the
//! jobs' newest checkpoint sizes with the task heap and names the plan to scale up to
//! ("scale up before scaling out") before that happens.

use super::AgentStatus;
use crate::flinkconf::memory_plan;

/// The plans a VM can be scaled to, in MiB.
pub const PLANS_MIB: [u32; 4] = [4096, 8192, 16384, 32768];

/// State may fill this share of the task heap; the rest is the jobs' working objects and the
/// copy a checkpoint serializes from.
const STATE_SHARE_OF_HEAP: f64 = 0.5;

/// State against heap, and the plan that gives it room.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeapAdvice {
    /// Sum of the declared jobs' newest checkpoint sizes.
    pub state_bytes: u64,
    /// The TaskManager's task heap.
    pub heap_bytes: u64,
    /// The smallest plan (MiB, at least the current one) whose task heap keeps the state under
    /// half of it; the largest plan when none does.
    pub recommended_mib: u32,
    /// The state needs a bigger plan than the current one.
    pub scale_up: bool,
}

impl AgentStatus {
    /// None until the TaskManager reported its heap.
    pub fn heap_advice(&self) -> Option<HeapAdvice> {
        let heap_bytes = self
            .processes
            .iter()
            .find(|p| p.name == "taskmanager")
            .and_then(|p| p.heap_bytes)?;
        let state_bytes: u64 = self.jobs.iter().filter_map(|j| j.state_bytes).sum();
        let current = self.plan.memory_mib;
        // The task heap scales with the TaskManager's process size: the share it has now.
        let tm_now = f64::from(memory_plan(current).taskmanager_mib.max(1)) * 1024.0 * 1024.0;
        let share = heap_bytes as f64 / tm_now;
        let fits = |plan: u32| {
            let heap = share * f64::from(memory_plan(plan).taskmanager_mib) * 1024.0 * 1024.0;
            state_bytes as f64 <= heap * STATE_SHARE_OF_HEAP
        };
        let recommended_mib = if fits(current) {
            current
        } else {
            PLANS_MIB
                .into_iter()
                .filter(|p| *p > current)
                .find(|p| fits(*p))
                .unwrap_or(PLANS_MIB[PLANS_MIB.len() - 1].max(current))
        };
        Some(HeapAdvice {
            state_bytes,
            heap_bytes,
            recommended_mib,
            scale_up: recommended_mib > current,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobStatus;
    use crate::supervisor::{ProcessState, ProcessStatus};

    fn status(state_mib: u64) -> AgentStatus {
        AgentStatus {
            processes: vec![ProcessStatus {
                name: "taskmanager".into(),
                state: ProcessState::Running,
                pid: Some(1),
                restarts: 0,
                started_at: None,
                uptime_secs: None,
                adopted: false,
                last_exit: None,
                reason: None,
                budget_remaining: 5,
                // What Flink 2.3 gives the 4 GiB plan's 2304 MiB TaskManager.
                heap_bytes: Some(864 * 1024 * 1024),
            }],
            jobs: vec![JobStatus {
                name: "counter".into(),
                state_bytes: Some(state_mib * 1024 * 1024),
                ..Default::default()
            }],
            plan: crate::status::PlanStatus {
                memory_mib: 4096,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn small_state_needs_no_bigger_plan() {
        let advice = status(100).heap_advice().expect("heap known");
        assert_eq!(advice.recommended_mib, 4096);
        assert!(!advice.scale_up);
    }

    #[test]
    fn state_over_half_the_heap_names_the_plan_that_gives_it_room() {
        // 500 MiB of state on an 864 MiB heap: the 8 GiB plan's heap is about 2.2 GiB.
        let advice = status(500).heap_advice().expect("heap known");
        assert_eq!(advice.recommended_mib, 8192);
        assert!(advice.scale_up);
        // More than even the largest plan holds: the largest is named.
        assert_eq!(
            status(50_000).heap_advice().map(|a| a.recommended_mib),
            Some(32768)
        );
    }
}
