//! Clearing a Flink process's scratch dir (`flinkconf::scratch_dir`) before it is launched.
//! Flink removes what it put there only on a clean exit; after a crash the RPC system's 23 MiB
//! jar, blob caches and working dirs stay, and a node that crashes often fills its disk.

use std::fs;
use std::io;
use std::path::Path;

/// Removes everything inside `dir` (the dir itself stays, with its owner). Symbolic links are
/// removed, never followed. Logs what was freed when there was anything.
pub fn clear(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // Not made yet (flinkconf makes it): nothing was left.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let (mut count, mut bytes) = (0u64, 0u64);
    for entry in entries {
        let path = entry?.path();
        bytes += size(&path);
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        count += 1;
    }
    if count > 0 {
        log::info!(
            "cleared {count} entries ({} KiB) a previous process left in {}",
            bytes / 1024,
            dir.display()
        );
    }
    Ok(())
}

/// Bytes under `path`, not following links; what cannot be read counts as 0.
fn size(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clears_files_dirs_and_links_but_not_what_links_point_to() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("jobmanager");
        let outside = root.path().join("outside");
        fs::create_dir_all(dir.join("jm_1/blobStorage")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(dir.join("flink-rpc-akka1.jar"), vec![0u8; 4096]).unwrap();
        fs::write(dir.join("jm_1/blobStorage/job.jar"), b"jar").unwrap();
        fs::write(outside.join("keep"), b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

        clear(&dir).unwrap();

        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        assert!(
            outside.join("keep").exists(),
            "a link's target is never touched"
        );
        clear(&root.path().join("never-made")).unwrap();
    }
}
