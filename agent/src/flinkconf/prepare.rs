//! The flinkconf concern's side effects: Flink's directories (owned by the Flink user) and the
//! rendered conf dir. The same code runs at start-up and on every reload, so both do exactly the
//! same; what to write was decided purely (see [`Files`]).

use super::{write_conf_dir, FlinkConfError, FlinkVersion, RenderedConf};
use std::path::{Path, PathBuf};

/// Everything Flink needs on disk; derived from the config by `crate::desired` (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub version: FlinkVersion,
    pub rendered: RenderedConf,
    /// `FLINK_CONF_DIR`: `<agent.state_dir>/flink-conf`.
    pub conf_dir: PathBuf,
    /// The distribution, whose logging configuration is copied into the conf dir.
    pub flink_home: PathBuf,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The Flink user: owns the data and log dirs and may read the conf dir.
    pub user: Option<String>,
}

/// Why the agent could not prepare Flink's files.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
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
    Write(#[from] FlinkConfError),
}

/// Creates Flink's directories and writes its configuration (atomically, only if changed).
/// Returns whether Flink's configuration changed on disk.
pub fn prepare(files: &Files) -> Result<bool, PrepareError> {
    let owner = flink_owner(files.user.as_deref());
    let data = &files.data_dir;
    for dir in [
        data.clone(),
        data.join("checkpoints"),
        data.join("savepoints"),
        data.join("tmp"),
        scratch_dir(data, "jobmanager"),
        scratch_dir(data, "taskmanager"),
        files.log_dir.clone(),
    ] {
        ensure_dir(&dir, owner)?;
    }
    share_conf_dir(&files.conf_dir, owner)?;
    Ok(write_conf_dir(
        &files.conf_dir,
        &files.flink_home,
        &files.rendered,
    )?)
}

/// The `io.tmp.dirs` of one Flink process (`jobmanager`, `taskmanager`), given on its command
/// line. Flink extracts its RPC system (a 23 MiB jar) and keeps its blob caches and working dirs
/// there, and deletes them only on a clean exit: in the one dir shared before, every crash left
/// them behind until the disk was full and no JobManager could start any more (the chaos runner
/// found it: nine JobManager kills filled 96 MiB). One dir per process lets the supervisor clear
/// what a dead predecessor left before it launches the next.
pub fn scratch_dir(data_dir: &Path, process: &str) -> PathBuf {
    data_dir.join("tmp").join(process)
}

/// Where the JobManager's REST server keeps its uploads: given on its command line, in its
/// [`scratch_dir`], for the same reason.
pub const WEB_TMP_DIR_KEY: &str = "web.tmpdir";

fn flink_owner(user: Option<&str>) -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    let user = nix::unistd::User::from_name(user?).ok()??;
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
