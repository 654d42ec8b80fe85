//! Logging: to the journal when systemd gave us one (structured fields, priorities), plain
//! stderr lines otherwise (a terminal, CI, the local demo).
//!
//! Flink's own output does not pass through the agent (it must outlive the agent): under
//! systemd it goes straight to the journal as `flink-jobmanager` / `flink-taskmanager`,
//! elsewhere to `<flink.log_dir>/<process>.out` (see `supervisor::placement`).

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;

/// Installs the logger. `FLINK_AGENT_LOG` (error|warn|info|debug|trace) sets the level.
pub fn init() {
    let level = std::env::var("FLINK_AGENT_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    let journal = systemd_journal_logger::connected_to_journal()
        .then(|| systemd_journal_logger::JournalLog::new().ok())
        .flatten()
        .map(|j| j.with_syslog_identifier("flink-agent".into()));
    // A second init (tests) keeps the first logger; that is fine.
    let _ = match journal {
        Some(journal) => log::set_boxed_logger(Box::new(Ours(journal))),
        None => log::set_boxed_logger(Box::new(Ours(StderrLog))),
    };
    log::set_max_level(level);
}

/// The agent's own records at the configured level; a dependency's only from warn up. The
/// `notify` crate, for one, logs at info each watch it cannot remove because the directory is
/// gone already — every checkpoint Flink deletes — which is nothing an operator can act on.
struct Ours<L>(L);

impl<L> Ours<L> {
    fn passes(metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("flink_agent") || metadata.level() <= log::Level::Warn
    }
}

impl<L: Log> Log for Ours<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        Self::passes(metadata) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if Self::passes(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// `LEVEL target: message` on stderr, one line per record.
struct StderrLog;

impl Log for StderrLog {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let target = record.target();
        let target = target.strip_prefix("flink_agent::").unwrap_or(target);
        let _ = writeln!(
            std::io::stderr().lock(),
            "{:<5} {}: {}",
            record.level(),
            target,
            record.args()
        );
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependencys_info_is_dropped_and_its_warnings_and_the_agents_info_pass() {
        let passes = |target: &str, level| {
            Ours::<StderrLog>::passes(&Metadata::builder().target(target).level(level).build())
        };
        assert!(!passes("notify::inotify", log::Level::Info));
        assert!(passes("notify::inotify", log::Level::Warn));
        assert!(passes("flink_agent::checkpoints", log::Level::Info));
        assert!(passes("flink_agent", log::Level::Debug));
    }
}
