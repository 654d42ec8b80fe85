//! Renders Flink's configuration from the agent config (pure), and writes it atomically into
//! the agent-owned conf dir that `FLINK_CONF_DIR` points at (the distribution is never edited).
//!
//! - [`render`]: agent config + Flink version → [`RenderedConf`] (flat keys + file text);
//! - [`write_conf_dir`]: the only side effect, atomic and change-detecting;
//! - [`affected`]: which processes a reload must restart; [`redacted`]: what the API may show.

mod memory;
mod reload;
mod render;
mod version;
mod write;

pub use memory::{memory_plan, MemoryPlan};
pub use reload::{affected, is_sensitive, redacted, RestartSet, REDACTED};
pub use render::{
    render, RenderedConf, CHECKPOINTS_RETAINED, CONFIG_YAML, JAVA17_OPTS, LEGACY_FLINK_CONF,
};
pub use version::{detect_version, FlinkVersion, VersionError};
pub use write::{conf_dir, write_conf_dir, FlinkConfError, CONF_FILE_MODE, LOG_CONF_MODE};
