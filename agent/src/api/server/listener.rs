//! Creating the API socket. Whoever can connect to it can restart Flink, so the socket must
//! never exist with looser permissions than 0660, not even for an instant: it is bound inside a
//! private (0700) staging directory, given its mode and group there, and only then renamed
//! into place. Changing the umask instead would race with every other thread creating files.

use super::Limits;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};

/// Mode of the socket: the agent's user and the socket group may connect, nobody else.
const SOCKET_MODE: u32 = 0o660;

/// How long probing an existing socket may take; a live agent accepts at once.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the API socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("another flink-agent is already serving on {path}{}; stop it first", pid_note(*.pid))]
    AlreadyServing { path: PathBuf, pid: Option<i32> },
    #[error("refusing to replace {path}: it is not a socket; remove it or set agent.socket to another path")]
    NotASocket { path: PathBuf },
    #[error("socket group `{group}` does not exist; create it (groupadd {group}) or change agent.socket_group")]
    UnknownGroup { group: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn pid_note(pid: Option<i32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

/// A bound API socket. Dropping it removes the socket file, unless another process has put its
/// own socket at that path meanwhile.
#[derive(Debug)]
pub struct ApiListener {
    pub(super) listener: UnixListener,
    path: PathBuf,
    /// Device and inode of our socket file, to recognise it at drop time.
    identity: (u64, u64),
    pub(super) limits: Limits,
}

impl ApiListener {
    /// Where clients connect.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the default [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

impl Drop for ApiListener {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == self.identity)
            .unwrap_or(false);
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                log::warn!("cannot remove API socket {}: {e}", self.path.display());
            }
        }
    }
}

/// Binds the API socket at `path` with mode 0660 and, when given, owned by `group`.
///
/// Creates the parent directory if missing. An existing socket is probed: if an agent answers
/// the call fails with [`ApiError::AlreadyServing`]; if nobody listens (left over from a crash)
/// it is replaced. Anything at `path` that is not a socket is left alone and refused.
pub async fn bind(path: &Path, group: Option<&str>) -> Result<ApiListener, ApiError> {
    let gid = group.map(group_id).transpose()?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| ApiError::Io {
        action: "bind the API socket at",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
    })?;
    fs::create_dir_all(dir).map_err(|source| ApiError::Io {
        action: "create the socket directory",
        path: dir.to_path_buf(),
        source,
    })?;
    refuse_if_in_use(path).await?;

    let staging = dir.join(format!(
        ".{}.{}.staging",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = bind_in_staging(&staging, path, gid);
    if let Err(e) = fs::remove_dir_all(&staging) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("cannot remove {}: {e}", staging.display());
        }
    }
    let std_listener = result?;
    let io_error = |action, source| ApiError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::symlink_metadata(path).map_err(|e| io_error("inspect the bound socket", e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| io_error("configure", e))?;
    let listener = UnixListener::from_std(std_listener)
        .map_err(|e| io_error("register with the runtime", e))?;
    Ok(ApiListener {
        listener,
        path: path.to_path_buf(),
        identity: (meta.dev(), meta.ino()),
        limits: Limits::default(),
    })
}

/// Fails if `path` holds a live socket or something that is not a socket; a dead socket passes
/// (the rename in [`bind_in_staging`] replaces it atomically).
async fn refuse_if_in_use(path: &Path) -> Result<(), ApiError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ApiError::Io {
                action: "inspect",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ApiError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    let already = |pid| ApiError::AlreadyServing {
        path: path.to_path_buf(),
        pid,
    };
    match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
        Ok(Ok(stream)) => Err(already(stream.peer_cred().ok().and_then(|c| c.pid()))),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("replacing stale API socket {}", path.display());
            Ok(())
        }
        // A full backlog or a slow accept still means someone is listening.
        Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Err(already(None)),
        Err(_elapsed) => Err(already(None)),
        Ok(Err(source)) => Err(ApiError::Io {
            action: "probe the existing socket",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Binds in a fresh 0700 directory, sets mode and group, then renames onto `path`.
fn bind_in_staging(
    staging: &Path,
    path: &Path,
    gid: Option<nix::unistd::Gid>,
) -> Result<std::os::unix::net::UnixListener, ApiError> {
    let at = |action, at: &Path| {
        let at = at.to_path_buf();
        move |source| ApiError::Io {
            action,
            path: at,
            source,
        }
    };
    // Left behind by a crashed agent that had our pid: its content is ours to discard.
    if staging.exists() {
        fs::remove_dir_all(staging).map_err(at("remove the leftover", staging))?;
    }
    DirBuilder::new()
        .mode(0o700)
        .create(staging)
        .map_err(at("create the staging directory", staging))?;
    let temp = staging.join("s");
    let listener =
        std::os::unix::net::UnixListener::bind(&temp).map_err(at("bind a socket at", &temp))?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(at("set the mode of", &temp))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(&temp, None, Some(gid.as_raw()))
            .map_err(at("give to the socket group", &temp))?;
    }
    fs::rename(&temp, path).map_err(at("move the socket into place at", path))?;
    Ok(listener)
}

fn group_id(name: &str) -> Result<nix::unistd::Gid, ApiError> {
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        Ok(None) => Err(ApiError::UnknownGroup {
            group: name.to_string(),
        }),
        Err(errno) => Err(ApiError::Io {
            action: "look up the socket group",
            path: PathBuf::from(name),
            source: io::Error::from(errno),
        }),
    }
}
