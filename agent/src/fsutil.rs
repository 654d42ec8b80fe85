//! Crash-safe file writes. The agent may die at any line, so a file that matters is never
//! truncated in place: we write a sibling temp file, fsync it, rename it over the target and
//! fsync the directory, so a reader sees the old content or the new, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Atomically replaces `path` with `content` (mode `mode`). Returns `false` without touching the
/// file when it already holds exactly `content`, so unchanged renders cause no restarts.
pub fn write_atomic_if_changed(path: &Path, content: &[u8], mode: u32) -> io::Result<bool> {
    if let Ok(existing) = fs::read(path) {
        if existing == content {
            return Ok(false);
        }
    }
    write_atomic(path, content, mode)?;
    Ok(true)
}

/// Atomically replaces `path` with `content`: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_reports_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/conf.yaml");
        assert!(write_atomic_if_changed(&p, b"a: 1\n", 0o640).unwrap());
        assert!(!write_atomic_if_changed(&p, b"a: 1\n", 0o640).unwrap());
        assert!(write_atomic_if_changed(&p, b"a: 2\n", 0o640).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"a: 2\n");
        // No temp file is left next to the target.
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("conf.yaml")]);
    }

    #[test]
    fn applies_the_requested_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        write_atomic(&p, b"x", 0o600).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
