//! Renders Flink's configuration from the agent config (pure), and writes it atomically into
//! the agent-owned conf dir that `FLINK_CONF_DIR` points at (the distribution is never edited).
//!
//! - [`render`]: agent config + Flink version → [`RenderedConf`] (flat keys + file text);
//! - [`prepare`] / [`write_conf_dir`]: the side effects, atomic and change-detecting;
//! - [`redacted`]: what the API may show.

mod ha;
mod memory;
mod prepare;
mod redact;
mod render;
mod version;
mod write;

pub use ha::{taskmanager_entries as ha_taskmanager_entries, FLINK_HA_ROOT};
pub use memory::{memory_plan, MemoryPlan};
pub use prepare::{prepare, scratch_dir, Files, PrepareError, WEB_TMP_DIR_KEY};
pub use redact::{is_sensitive, redacted, REDACTED};
pub use render::{
    render, RenderError, RenderedConf, CHECKPOINTS_RETAINED, CONFIG_YAML, HEARTBEAT_TIMEOUT,
    JAVA17_OPTS, LEGACY_FLINK_CONF, METRICS_QUERY_PORT_KEY, PROMETHEUS_PORT_KEY,
    PROMETHEUS_REPORTER, TMP_DIRS_KEY,
};
pub use version::{detect_version, FlinkVersion, VersionError};
pub use write::{conf_dir, write_conf_dir, FlinkConfError, CONF_FILE_MODE, LOG_CONF_MODE};
