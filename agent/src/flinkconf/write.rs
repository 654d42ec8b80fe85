//! The side-effecting edge: the agent-owned conf dir that `FLINK_CONF_DIR` points at.

use super::render::{RenderedConf, CONFIG_YAML, LEGACY_FLINK_CONF};
use crate::config::AgentConfig;
use crate::fsutil::write_atomic_if_changed;
use std::fs;
use std::path::{Path, PathBuf};

/// Mode of the rendered Flink config: it may carry secrets from the pass-through, so it is not
/// world-readable. When Flink runs as another user (`flink.user`), the conf dir's group must be
/// that user's group (the supervisor's job: it knows the user).
pub const CONF_FILE_MODE: u32 = 0o640;
/// Mode of the logging configuration copied from the distribution.
pub const LOG_CONF_MODE: u32 = 0o644;

/// Why the conf dir could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FlinkConfError {
    /// Writing or removing a file in the conf dir failed.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading the distribution's logging configuration failed.
    #[error("cannot read {path}: {source}")]
    ReadDistribution {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `<agent.state_dir>/flink-conf`: the directory `FLINK_CONF_DIR` points at.
pub fn conf_dir(cfg: &AgentConfig) -> PathBuf {
    cfg.agent.state_dir.join("flink-conf")
}

/// Writes `rendered` into `conf_dir` (atomically, only if its content changed), removes a stale
/// file of the other layout (`flink-conf.yaml` vs `config.yaml`, e.g. after a Flink upgrade:
/// Flink 1.19 would still read a leftover `flink-conf.yaml`... and a downgrade must not leave a
/// `config.yaml` behind), and refreshes the distribution's `conf/log4j*.properties` and
/// `conf/logback*.xml` there, because Flink's scripts look for them in `FLINK_CONF_DIR`.
///
/// Returns whether Flink's configuration changed on disk (the config file written or the stale
/// file removed); refreshed logging files do not count (Flink's log4j watches its file).
pub fn write_conf_dir(
    conf_dir: &Path,
    flink_home: &Path,
    rendered: &RenderedConf,
) -> Result<bool, FlinkConfError> {
    let write_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| FlinkConfError::Write { path, source }
    };
    fs::create_dir_all(conf_dir).map_err(write_err(conf_dir))?;

    let target = conf_dir.join(rendered.file_name);
    let mut changed = write_atomic_if_changed(&target, rendered.content.as_bytes(), CONF_FILE_MODE)
        .map_err(write_err(&target))?;

    let other = if rendered.file_name == CONFIG_YAML {
        LEGACY_FLINK_CONF
    } else {
        CONFIG_YAML
    };
    let stale = conf_dir.join(other);
    match fs::remove_file(&stale) {
        Ok(()) => {
            changed = true;
            fs::File::open(conf_dir)
                .and_then(|d| d.sync_all())
                .map_err(write_err(conf_dir))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(&stale)(e)),
    }

    let dist_conf = flink_home.join("conf");
    let read_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| FlinkConfError::ReadDistribution { path, source }
    };
    let mut names: Vec<String> = fs::read_dir(&dist_conf)
        .map_err(read_err(&dist_conf))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_logging_conf(n))
        .collect();
    names.sort();
    for name in names {
        let src = dist_conf.join(&name);
        let bytes = fs::read(&src).map_err(read_err(&src))?;
        let dst = conf_dir.join(&name);
        write_atomic_if_changed(&dst, &bytes, LOG_CONF_MODE).map_err(write_err(&dst))?;
    }
    Ok(changed)
}

fn is_logging_conf(name: &str) -> bool {
    (name.starts_with("log4j") && name.ends_with(".properties"))
        || (name.starts_with("logback") && name.ends_with(".xml"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::flinkconf::{render, FlinkVersion};
    use std::collections::BTreeMap;

    fn fake_home() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let conf = home.path().join("conf");
        fs::create_dir_all(&conf).unwrap();
        for (n, c) in [
            ("log4j-console.properties", "rootLogger.level = INFO\n"),
            ("logback-console.xml", "<configuration/>\n"),
            ("config.yaml", "taskmanager.numberOfTaskSlots: 9\n"),
            ("masters", "localhost:8081\n"),
        ] {
            fs::write(conf.join(n), c).unwrap();
        }
        home
    }

    #[test]
    fn writes_only_on_change_and_copies_logging() {
        let home = fake_home();
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("flink-conf");
        let mut cfg = AgentConfig::default();
        let r = render(&cfg, FlinkVersion::new(2, 3, 0), &BTreeMap::new()).expect("renders");
        assert!(write_conf_dir(&dir, home.path(), &r).unwrap());
        assert!(!write_conf_dir(&dir, home.path(), &r).unwrap());
        assert_eq!(
            fs::read_to_string(dir.join("config.yaml")).unwrap(),
            r.content
        );
        assert!(dir.join("log4j-console.properties").is_file());
        assert!(dir.join("logback-console.xml").is_file());
        assert!(!dir.join("masters").exists());

        cfg.advanced.number_of_task_slots = 2;
        let r2 = render(&cfg, FlinkVersion::new(2, 3, 0), &BTreeMap::new()).expect("renders");
        assert!(write_conf_dir(&dir, home.path(), &r2).unwrap());
        // The distribution is never touched.
        assert_eq!(
            fs::read_to_string(home.path().join("conf/config.yaml")).unwrap(),
            "taskmanager.numberOfTaskSlots: 9\n"
        );
    }

    #[test]
    fn switching_layout_removes_the_stale_file() {
        let home = fake_home();
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("flink-conf");
        let cfg = AgentConfig::default();
        let old = render(&cfg, FlinkVersion::new(1, 18, 1), &BTreeMap::new()).expect("renders");
        assert!(write_conf_dir(&dir, home.path(), &old).unwrap());
        assert!(dir.join("flink-conf.yaml").is_file());
        let new = render(&cfg, FlinkVersion::new(2, 3, 0), &BTreeMap::new()).expect("renders");
        assert!(write_conf_dir(&dir, home.path(), &new).unwrap());
        assert!(dir.join("config.yaml").is_file());
        assert!(!dir.join("flink-conf.yaml").exists());
    }

    #[test]
    fn conf_dir_is_under_the_state_dir() {
        assert_eq!(
            conf_dir(&AgentConfig::default()),
            PathBuf::from("/var/lib/flink-agent/flink-conf")
        );
    }

    #[test]
    fn missing_distribution_conf_is_an_error() {
        let home = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let r = render(
            &AgentConfig::default(),
            FlinkVersion::new(2, 3, 0),
            &BTreeMap::new(),
        )
        .expect("renders");
        let err = write_conf_dir(state.path(), home.path(), &r).unwrap_err();
        assert!(
            matches!(err, FlinkConfError::ReadDistribution { .. }),
            "{err}"
        );
    }
}
