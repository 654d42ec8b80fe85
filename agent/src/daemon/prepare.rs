//! Turns a validated config into what Flink needs on disk: its directories (owned by the Flink
//! user) and the rendered conf dir. Shared by start-up and reload, so both do exactly the same.

use crate::config::AgentConfig;
use crate::flinkconf::{self, FlinkVersion, RenderedConf};
use crate::supervisor::LaunchSpec;
use std::path::{Path, PathBuf};

/// Why the agent could not prepare Flink's files.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The distribution's version could not be told.
    #[error("flink.home: {0}")]
    Version(#[from] flinkconf::VersionError),
    /// A directory could not be created or handed to the Flink user.
    #[error(
        "cannot prepare directory {path}: {source}; check the parent's permissions and free space"
    )]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The rendered configuration could not be written.
    #[error("cannot write Flink's configuration: {0}")]
    Write(#[from] flinkconf::FlinkConfError),
}

/// The result of preparing: what was rendered and whether it changed on disk.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub version: FlinkVersion,
    pub rendered: RenderedConf,
    pub changed: bool,
}

/// Creates Flink's directories and writes its configuration (atomically, only if changed).
pub fn prepare(config: &AgentConfig) -> Result<Prepared, PrepareError> {
    let version = flinkconf::detect_version(&config.flink.home)?;
    let rendered = flinkconf::render(config, version);
    let owner = flink_owner(config);
    let data = &config.flink.data_dir;
    for dir in [
        data.clone(),
        data.join("checkpoints"),
        data.join("savepoints"),
        data.join("tmp"),
        config.flink.log_dir.clone(),
    ] {
        ensure_dir(&dir, owner)?;
    }
    ensure_dir(&config.agent.state_dir, None)?;
    let conf_dir = flinkconf::conf_dir(config);
    share_conf_dir(&conf_dir, owner)?;
    let changed = flinkconf::write_conf_dir(&conf_dir, &config.flink.home, &rendered)?;
    Ok(Prepared {
        version,
        rendered,
        changed,
    })
}

/// What the supervisor needs to launch Flink under this config.
pub fn launch_spec(config: &AgentConfig) -> LaunchSpec {
    LaunchSpec {
        flink_home: config.flink.home.clone(),
        java_home: config.flink.java_home.clone(),
        conf_dir: flinkconf::conf_dir(config),
        log_dir: config.flink.log_dir.clone(),
        user: config.flink.user.clone(),
        rest_url: format!("http://{}:{}", rest_host(config), config.ports.rest),
        expected_slots: config.advanced.number_of_task_slots,
        settings: config.supervisor.clone(),
    }
}

/// The agent talks to the local REST endpoint: loopback when Flink binds to all addresses.
fn rest_host(config: &AgentConfig) -> String {
    match config.node.bind_address.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        a if a.contains(':') => format!("[{a}]"),
        a => a.to_string(),
    }
}

fn flink_owner(config: &AgentConfig) -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    let name = config.flink.user.as_deref()?;
    let user = nix::unistd::User::from_name(name).ok()??;
    Some((user.uid, user.gid))
}

/// The rendered config is mode 0640 (it may hold secrets) and Flink may run as another user:
/// the conf dir gets that user's group and the setgid bit, so every file the agent writes into
/// it (atomic writes create new files) is born readable by Flink, with no window where it is not.
fn share_conf_dir(
    conf_dir: &Path,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> Result<(), PrepareError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PrepareError::Dir { path, source }
    };
    std::fs::create_dir_all(conf_dir).map_err(err(conf_dir))?;
    let Some((_, gid)) = owner else {
        return Ok(());
    };
    nix::unistd::chown(conf_dir, None, Some(gid)).map_err(|e| err(conf_dir)(e.into()))?;
    std::fs::set_permissions(conf_dir, std::fs::Permissions::from_mode(0o2750))
        .map_err(err(conf_dir))?;
    // Files written before the group was set (an earlier run as another user).
    for entry in std::fs::read_dir(conf_dir)
        .map_err(err(conf_dir))?
        .flatten()
    {
        let path = entry.path();
        nix::unistd::chown(&path, None, Some(gid)).map_err(|e| err(&path)(e.into()))?;
    }
    Ok(())
}

fn ensure_dir(
    path: &Path,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> Result<(), PrepareError> {
    let err = |source| PrepareError::Dir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(path, Some(uid), Some(gid)).map_err(|e| err(e.into()))?;
    }
    Ok(())
}
