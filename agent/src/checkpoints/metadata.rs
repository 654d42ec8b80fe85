//! Reading the checkpoint id out of Flink's `_metadata` file. Savepoints live in directories
//! named `savepoint-<job>-<random>`, so their id is only in the file: a header of magic number
//! (`0x4960672d`) and format version, then the checkpoint id, all big-endian. Reading it also
//! proves the directory holds a finished checkpoint or savepoint, not a stray file.

use std::io::Read;
use std::path::Path;

/// Flink's `Checkpoints.HEADER_MAGIC_NUMBER`.
const MAGIC: u32 = 0x4960_672d;

/// The directory of a location Flink reports (`file:/path` for the local filesystem).
pub fn local_dir(location: &str) -> &Path {
    Path::new(location.strip_prefix("file:").unwrap_or(location))
}

/// The id of the checkpoint or savepoint in `dir` (which holds `_metadata`).
pub fn checkpoint_id(dir: &Path) -> std::io::Result<u64> {
    let mut header = [0u8; 16];
    std::fs::File::open(dir.join("_metadata"))?.read_exact(&mut header)?;
    parse_header(&header).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is not a Flink checkpoint metadata file",
                dir.join("_metadata").display()
            ),
        )
    })
}

fn parse_header(header: &[u8; 16]) -> Option<u64> {
    let word = |at: usize| {
        header
            .get(at..at + 4)?
            .try_into()
            .ok()
            .map(u32::from_be_bytes)
    };
    if word(0)? != MAGIC {
        return None;
    }
    let id: [u8; 8] = header.get(8..16)?.try_into().ok()?;
    Some(u64::from_be_bytes(id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_id_after_magic_and_version() {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&5u32.to_be_bytes());
        h[8..].copy_from_slice(&42u64.to_be_bytes());
        assert_eq!(parse_header(&h), Some(42));
        h[0] ^= 1;
        assert_eq!(parse_header(&h), None);
    }

    #[test]
    fn a_short_or_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(checkpoint_id(dir.path()).is_err());
        std::fs::write(dir.path().join("_metadata"), b"short").unwrap();
        assert!(checkpoint_id(dir.path()).is_err());
    }
}
