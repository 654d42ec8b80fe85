//! Flink's memory budget, derived from the VM plan.

/// How a VM's memory is split between the OS/agent and Flink's two JVMs, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MemoryPlan {
    /// Left to the OS, page cache, the agent and the shell scripts.
    pub headroom_mib: u32,
    /// `jobmanager.memory.process.size`.
    pub jobmanager_mib: u32,
    /// `taskmanager.memory.process.size`.
    pub taskmanager_mib: u32,
}

/// Smallest headroom kept for the OS and the agent.
pub const MIN_HEADROOM_MIB: u32 = 768;
/// The JobManager's share at the smallest plan (4 GiB) and its cap (reached at 32 GiB).
pub const JOBMANAGER_MIN_MIB: u32 = 1024;
pub const JOBMANAGER_MAX_MIB: u32 = 2048;
/// The TaskManager never gets less than this, even for (invalid) plans below 4 GiB; Flink's
/// own memory model refuses much smaller processes.
pub const TASKMANAGER_FLOOR_MIB: u32 = 1024;

const SMALLEST_PLAN_MIB: u64 = 4096;
const LARGEST_PLAN_MIB: u64 = 32768;
const GRANULE_MIB: u32 = 64;

/// Splits `memory_mib` of VM memory ("scale up before out": the TaskManager takes the bulk).
///
/// ```text
/// headroom    = max(768, floor(15% of memory))
/// jobmanager  = 1024 + (memory - 4096) * 1024 / 28672      clamped to [1024, 2048],
///               rounded down to a multiple of 64            (1 GiB at 4 GiB .. 2 GiB at 32 GiB)
/// taskmanager = memory - headroom - jobmanager,
///               rounded down to a multiple of 64, at least 1024
/// ```
///
/// The 768 MiB floor wins below 5120 MiB (15% of 5120 = 768). Examples: 4 GiB → 768 / 1024 /
/// 2304; 8 GiB → 1228 / 1152 / 5760; 32 GiB → 4915 / 2048 / 25792. The JobManager of a session
/// cluster holds job graphs, the blob server and the REST endpoint; its need grows slowly with
/// the number of jobs, which grows with the plan, hence the gentle slope and the cap.
pub fn memory_plan(memory_mib: u32) -> MemoryPlan {
    let m = u64::from(memory_mib);
    let headroom = (m * 15 / 100).max(u64::from(MIN_HEADROOM_MIB));
    let jm_linear = u64::from(JOBMANAGER_MIN_MIB)
        + m.saturating_sub(SMALLEST_PLAN_MIB) * u64::from(JOBMANAGER_MAX_MIB - JOBMANAGER_MIN_MIB)
            / (LARGEST_PLAN_MIB - SMALLEST_PLAN_MIB);
    let jm =
        round_down(jm_linear.clamp(u64::from(JOBMANAGER_MIN_MIB), u64::from(JOBMANAGER_MAX_MIB)));
    let tm = round_down(m.saturating_sub(headroom).saturating_sub(jm))
        .max(u64::from(TASKMANAGER_FLOOR_MIB));
    MemoryPlan {
        headroom_mib: u32::try_from(headroom).unwrap_or(u32::MAX),
        jobmanager_mib: u32::try_from(jm).unwrap_or(u32::MAX),
        taskmanager_mib: u32::try_from(tm).unwrap_or(u32::MAX),
    }
}

fn round_down(mib: u64) -> u64 {
    mib / u64::from(GRANULE_MIB) * u64::from(GRANULE_MIB)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan(m: u32) -> (u32, u32, u32) {
        let p = memory_plan(m);
        (p.headroom_mib, p.jobmanager_mib, p.taskmanager_mib)
    }

    #[test]
    fn smallest_and_largest_plans() {
        assert_eq!(plan(4096), (768, 1024, 2304));
        assert_eq!(plan(32768), (4915, 2048, 25792));
    }

    #[test]
    fn headroom_floor_holds_until_5120_mib() {
        assert_eq!(memory_plan(5119).headroom_mib, 768);
        assert_eq!(memory_plan(5120).headroom_mib, 768);
        assert_eq!(memory_plan(5127).headroom_mib, 769);
        assert_eq!(plan(8192), (1228, 1152, 5760));
    }

    #[test]
    fn jobmanager_grows_gently_and_is_capped() {
        let mut last = 0;
        for m in (4096..=32768).step_by(512) {
            let p = memory_plan(m);
            assert!(
                p.jobmanager_mib >= last,
                "JobManager share never shrinks ({m} MiB)"
            );
            assert!((1024..=2048).contains(&p.jobmanager_mib));
            assert_eq!(p.jobmanager_mib % 64, 0);
            assert_eq!(p.taskmanager_mib % 64, 0);
            assert!(
                p.taskmanager_mib > p.jobmanager_mib,
                "the TaskManager takes the bulk"
            );
            assert!(
                p.headroom_mib + p.jobmanager_mib + p.taskmanager_mib <= m,
                "never over-commits the VM ({m} MiB)"
            );
            last = p.jobmanager_mib;
        }
        assert_eq!(memory_plan(65536).jobmanager_mib, 2048);
    }

    #[test]
    fn out_of_range_plans_do_not_underflow() {
        assert_eq!(memory_plan(0).taskmanager_mib, TASKMANAGER_FLOOR_MIB);
        assert_eq!(memory_plan(0).jobmanager_mib, JOBMANAGER_MIN_MIB);
        assert_eq!(memory_plan(u32::MAX).jobmanager_mib, JOBMANAGER_MAX_MIB);
    }
}
