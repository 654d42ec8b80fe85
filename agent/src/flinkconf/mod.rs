//! Renders Flink's configuration from the agent config (pure), and writes it atomically into
//! the agent-owned conf dir that `FLINK_CONF_DIR` points at (the distribution is never edited).

mod version;

pub use version::{detect_version, FlinkVersion, VersionError};
