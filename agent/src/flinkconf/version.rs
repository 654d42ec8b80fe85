//! Which Flink is installed: read from the name of `lib/flink-dist-*.jar`, the one file every
//! distribution has (`flink-dist-2.3.0.jar`, `flink-dist_2.12-1.17.1.jar`).

use std::fmt;
use std::path::Path;

/// A Flink release version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct FlinkVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl FlinkVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Flink 1.19 introduced `conf/config.yaml` (standard YAML); older releases read
    /// `flink-conf.yaml`.
    pub fn uses_config_yaml(self) -> bool {
        self >= FlinkVersion::new(1, 19, 0)
    }

    /// Flink 1.20 renamed the checkpoint options to `execution.checkpointing.*`.
    pub fn uses_new_checkpoint_keys(self) -> bool {
        self >= FlinkVersion::new(1, 20, 0)
    }
}

impl fmt::Display for FlinkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why the version could not be told.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// Reading `lib/` failed.
    #[error("cannot list {dir}: {source}")]
    ReadLib {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    /// No `flink-dist` jar.
    #[error("no lib/flink-dist-*.jar in {home}; is this a complete Flink distribution?")]
    NoDistJar { home: String },
}

/// Detects the version of the distribution at `home`.
pub fn detect_version(home: &Path) -> Result<FlinkVersion, VersionError> {
    let lib = home.join("lib");
    let entries = std::fs::read_dir(&lib).map_err(|source| VersionError::ReadLib {
        dir: lib.display().to_string(),
        source,
    })?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_dist_jar(&e.file_name().to_string_lossy()))
        .max()
        .ok_or_else(|| VersionError::NoDistJar {
            home: home.display().to_string(),
        })
}

/// Parses `flink-dist-2.3.0.jar` or `flink-dist_2.12-1.17.1.jar`.
fn parse_dist_jar(name: &str) -> Option<FlinkVersion> {
    let rest = name.strip_prefix("flink-dist")?.strip_suffix(".jar")?;
    let version = rest.rsplit('-').next()?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some(FlinkVersion::new(
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dist_jar_names() {
        assert_eq!(
            parse_dist_jar("flink-dist-2.3.0.jar"),
            Some(FlinkVersion::new(2, 3, 0))
        );
        assert_eq!(
            parse_dist_jar("flink-dist_2.12-1.17.1.jar"),
            Some(FlinkVersion::new(1, 17, 1))
        );
        assert_eq!(parse_dist_jar("flink-dist-2.3-SNAPSHOT.jar"), None);
        assert_eq!(parse_dist_jar("flink-table-2.3.0.jar"), None);
    }

    #[test]
    fn picks_the_file_layout_by_version() {
        assert!(FlinkVersion::new(2, 3, 0).uses_config_yaml());
        assert!(FlinkVersion::new(1, 19, 1).uses_config_yaml());
        assert!(!FlinkVersion::new(1, 18, 1).uses_config_yaml());
        assert!(!FlinkVersion::new(1, 19, 0).uses_new_checkpoint_keys());
    }
}
