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
    let installed = if systemd_journal_logger::connected_to_journal() {
        systemd_journal_logger::JournalLog::new()
            .map(|j| j.with_syslog_identifier("flink-agent".into()))
            .and_then(|j| j.install().map_err(std::io::Error::other))
            .is_ok()
    } else {
        false
    };
    if !installed {
        // A second init (tests) keeps the first logger; that is fine.
        let _ = log::set_boxed_logger(Box::new(StderrLog));
    }
    log::set_max_level(level);
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
