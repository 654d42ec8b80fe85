//! What this machine offers Flink, for `[plan] memory_mib = "auto"` and `vcpus = "auto"`: the
//! memory (the smaller of `MemTotal` and every cgroup v2 `memory.max` from the agent's cgroup up
//! to the root) and the CPUs this process may use (affinity and cgroup quota, as the standard
//! library counts them). Read once when the agent starts, so a VM scaled up ("scale up before
//! scaling out") gets its Flink memory re-derived at the next start, never under running jobs.

use serde::Serialize;
use std::path::Path;

/// The machine as the agent found it at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    pub memory_mib: u32,
    /// Where `memory_mib` comes from, e.g. `MemTotal` or `cgroup /system.slice memory.max`.
    pub memory_source: String,
    pub vcpus: u32,
}

impl Machine {
    /// Reads `/proc/meminfo`, `/proc/self/cgroup` and the cgroup tree under `/sys/fs/cgroup`.
    pub fn detect() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let vcpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        detect_in(&meminfo, &cgroup, Path::new("/sys/fs/cgroup"), vcpus)
    }
}

/// [`Machine::detect`] on given inputs (tests hand in their own files).
fn detect_in(meminfo: &str, self_cgroup: &str, cgroup_root: &Path, vcpus: usize) -> Machine {
    let total_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut memory = total_kib * 1024;
    let mut source = "MemTotal".to_string();
    // cgroup v2: one line `0::/path`; every level's memory.max limits it.
    if let Some(path) = self_cgroup.lines().find_map(|l| l.strip_prefix("0::")) {
        let mut dir = Some(Path::new(path.trim()));
        while let Some(d) = dir {
            let file = cgroup_root
                .join(d.strip_prefix("/").unwrap_or(d))
                .join("memory.max");
            let limit = std::fs::read_to_string(&file)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(limit) = limit.filter(|l| *l < memory) {
                memory = limit;
                source = format!("cgroup {} memory.max", d.display());
            }
            dir = d.parent();
        }
    }
    Machine {
        memory_mib: u32::try_from(memory / (1024 * 1024)).unwrap_or(u32::MAX),
        memory_source: source,
        vcpus: u32::try_from(vcpus).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16384000 kB\nMemFree:         1000 kB\n";

    #[test]
    fn memory_is_memtotal_without_a_smaller_cgroup_limit() {
        let root = tempfile::tempdir().unwrap();
        let m = detect_in(MEMINFO, "0::/system.slice/x.service\n", root.path(), 4);
        assert_eq!(m.memory_mib, 16000);
        assert_eq!(m.memory_source, "MemTotal");
        assert_eq!(m.vcpus, 4);
    }

    #[test]
    fn the_smallest_cgroup_limit_on_the_way_to_the_root_wins() {
        let root = tempfile::tempdir().unwrap();
        let service = root.path().join("system.slice/x.service");
        std::fs::create_dir_all(&service).unwrap();
        std::fs::write(service.join("memory.max"), "max\n").unwrap();
        std::fs::write(
            root.path().join("system.slice/memory.max"),
            format!("{}\n", 8192u64 * 1024 * 1024),
        )
        .unwrap();
        let m = detect_in(MEMINFO, "0::/system.slice/x.service\n", root.path(), 2);
        assert_eq!(m.memory_mib, 8192);
        assert_eq!(m.memory_source, "cgroup /system.slice memory.max");
    }
}
