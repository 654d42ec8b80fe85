//! A large file of a restore: fetched as ranges, several at once, each written at its own offset
//! as its bytes arrive and hashed on its own as a subtree of the file's BLAKE3 (`Subtree`); a
//! second thread follows the complete prefix of the file to flush it to disk as it grows.
//!
//! Why not in order: the store serves each stream at its own pace (s3s-fs about 50 MiB/s per
//! connection on the benchmark machine), so the throughput is the number of ranges actually in
//! flight. Ranges taken in order held finished ones, with their 8 MiB bodies collected in
//! memory, behind the slowest, and started no new one meanwhile: 0.55× s5cmd on a 1 GiB file
//! against 0.72× this way, side by side (s5cmd writes ranges at their offsets and never
//! hashes). Only the SHA-256 of an older agent's manifest needs the bytes in order: that thread
//! then reads back from the page cache what is complete and hashes it, a copy of every byte the
//! BLAKE3 ranges do without. What that read-back checks beyond the hash of the bytes received,
//! that each landed at its offset, is this module's arithmetic (one `write_all_at` per piece, at
//! the range's start plus what came before it), which the tests check by reading files back;
//! neither way sees the disk rather than the page cache, and the file is `fsync`ed before the
//! restore returns either way.

use super::super::digest::{Subtree, Subtrees};
use super::{read_error, Check, Unusable, LARGEST_RANGE, RANGE_SIZE};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};
use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes of a range gathered before they go to the writer: one message per MiB rather than
/// per network read of a few KiB (each a wake-up of the writer's thread).
const BATCH: usize = 1 << 20;

/// Batches queued for the writer: what a slow disk lets pile up in memory before the ranges
/// wait for it.
const QUEUED: usize = 16;

/// What the follower reads back at once to hash in order.
const READ_BACK: usize = 1 << 20;

/// The follower flushes the file to disk every this many bytes complete, so the writer's final
/// `fsync` finds little left: an `fsync` of 1 GiB just written took 0.44 s on the benchmark
/// machine, and at the end it waits after every byte has arrived (RocksDB's `bytes_per_sync`
/// does the same for its files).
const FLUSH_EVERY: u64 = 64 << 20;

/// What the writer's thread is sent.
enum Write {
    /// Bytes of the file from an offset on.
    At(u64, Vec<Bytes>),
    /// Every byte of this range was sent before this message; its subtree when it was hashed.
    Done(Range<u64>, Option<Subtree>),
}

/// Fetches the object `key` of `size` bytes into a new file `target`, as ranges of
/// [`range_len`], `ranges` at once; its size as written and how its content differs from
/// `check`'s.
pub(super) async fn fetch(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    name: &str,
    size: u64,
    ranges: usize,
    target: &Path,
    check: Check,
) -> Result<(u64, Option<String>), Unusable> {
    let local = |e: std::io::Error| Unusable::Unreadable(format!("{}: {e}", target.display()));
    let file = tokio::fs::File::create(target).await.map_err(local)?;
    let file = file.into_std().await;
    let reader = tokio::fs::File::open(target).await.map_err(local)?;
    let reader = reader.into_std().await;
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUED);
    let (complete_tx, complete_rx) = std::sync::mpsc::channel();
    let hash_ranges = !check.in_order();
    let len = range_len(size, ranges);
    let writer = tokio::task::spawn_blocking(move || write_ranges(&file, len, rx, &complete_tx));
    let follower = tokio::task::spawn_blocking(move || follow(&reader, &complete_rx, check));
    let fetched = futures::stream::iter((0..size).step_by(len as usize))
        .map(|start| {
            let range = start..(start + len).min(size);
            fetch_range(store, key, name, range, hash_ranges, &tx)
        })
        .buffer_unordered(ranges.max(1))
        .try_collect::<Vec<()>>()
        .await;
    drop(tx);
    let joined = |e: tokio::task::JoinError| local(std::io::Error::other(e));
    // A failed writer ends the ranges (they cannot send): its error is the one to report.
    let subtrees = writer.await.map_err(joined)?.map_err(local)?;
    fetched?;
    let (complete, check) = follower.await.map_err(joined)?.map_err(local)?;
    let mismatch = check
        .mismatch_in_ranges(&subtrees, complete)
        .map_err(|e| Unusable::Unreadable(format!("{name}: {e}")))?;
    Ok((complete, mismatch))
}

/// The length of the ranges of a file of `size` bytes (more than [`RANGE_SIZE`]) fetched
/// `ranges` at once: the longest that still gives each range in flight one, from [`RANGE_SIZE`]
/// up to [`LARGEST_RANGE`], and a power of two (each range is then a subtree of the file's
/// BLAKE3). Always two ranges at least, even one at a time: the subtrees of one range alone do
/// not make the file's hash.
fn range_len(size: u64, ranges: usize) -> u64 {
    let share = (size / ranges.max(2) as u64).max(1);
    (1u64 << share.ilog2()).clamp(RANGE_SIZE, LARGEST_RANGE)
}

/// Fetches `range` of `key`, handing its bytes to the writer as they arrive, and hashing them
/// as the range's subtree when `hash_ranges`.
async fn fetch_range(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    name: &str,
    range: Range<u64>,
    hash_ranges: bool,
    writer: &tokio::sync::mpsc::Sender<Write>,
) -> Result<(), Unusable> {
    let failed = |e| Unusable::Unreadable(format!("{name} download failed: {e}"));
    // The writer is gone only when it failed, and it reports why.
    let stopped = || Unusable::Unreadable(format!("{name}: the writer stopped"));
    let options = GetOptions {
        range: Some(GetRange::Bounded(range.clone())),
        ..Default::default()
    };
    let mut body = store
        .get_opts(key, options)
        .await
        .map_err(|e| read_error(name, e))?
        .into_stream();
    let len = range.end - range.start;
    let mut subtree = hash_ranges.then(|| Subtree::at(range.start));
    let mut received = 0;
    let mut batch = Vec::new();
    let mut batched = 0;
    while let Some(chunk) = body.try_next().await.map_err(failed)? {
        received += chunk.len() as u64;
        if received > len {
            break;
        }
        if let Some(s) = &mut subtree {
            s.update(&chunk);
        }
        batched += chunk.len();
        batch.push(chunk);
        if batched >= BATCH {
            let at = range.start + received - batched as u64;
            let chunks = std::mem::take(&mut batch);
            writer
                .send(Write::At(at, chunks))
                .await
                .map_err(|_| stopped())?;
            batched = 0;
        }
    }
    if received != len {
        let answered = match received > len {
            true => format!("more than {len}"),
            false => received.to_string(),
        };
        return Err(Unusable::Unreadable(format!(
            "{name}: the store answered bytes {}..{} with {answered} bytes",
            range.start, range.end
        )));
    }
    if !batch.is_empty() {
        let at = range.start + received - batched as u64;
        writer
            .send(Write::At(at, batch))
            .await
            .map_err(|_| stopped())?;
    }
    writer
        .send(Write::Done(range, subtree))
        .await
        .map_err(|_| stopped())
}

/// The writer's thread: writes each batch at its offset and tells the follower, each time a
/// range completes, up to where the file is now complete; then flushes the file to disk. The
/// subtrees of the ranges (of `range_len`) hashed.
fn write_ranges(
    file: &std::fs::File,
    range_len: u64,
    mut batches: tokio::sync::mpsc::Receiver<Write>,
    complete: &std::sync::mpsc::Sender<u64>,
) -> std::io::Result<Subtrees> {
    let mut subtrees = Subtrees::new(range_len);
    // Ranges done beyond the complete prefix, by start.
    let mut done: HashMap<u64, u64> = HashMap::new();
    let mut prefix = 0;
    while let Some(write) = batches.blocking_recv() {
        match write {
            Write::At(mut offset, chunks) => {
                for chunk in chunks {
                    file.write_all_at(&chunk, offset)?;
                    offset += chunk.len() as u64;
                }
            }
            Write::Done(range, subtree) => {
                if let Some(s) = subtree {
                    subtrees.insert(range.start, range.end - range.start, &s);
                }
                done.insert(range.start, range.end);
                while let Some(end) = done.remove(&prefix) {
                    prefix = end;
                }
                // A gone follower has failed, and says why.
                let _ = complete.send(prefix);
            }
        }
    }
    file.sync_all()?;
    Ok(subtrees)
}

/// The follower's thread: flushes the file to disk behind each complete prefix it is told of
/// (every `FLUSH_EVERY`), and when `check` needs the content in order, reads back from the page
/// cache and hashes each new prefix first. The size of the complete file, and `check`.
fn follow(
    file: &std::fs::File,
    complete: &std::sync::mpsc::Receiver<u64>,
    mut check: Check,
) -> std::io::Result<(u64, Check)> {
    let in_order = check.in_order();
    let mut hashed = 0;
    let mut flushed = 0;
    let mut buf = if in_order {
        vec![0u8; READ_BACK]
    } else {
        Vec::new()
    };
    let mut whole = 0;
    for prefix in complete {
        whole = prefix;
        while in_order && hashed < prefix {
            let n = (prefix - hashed).min(READ_BACK as u64) as usize;
            file.read_exact_at(&mut buf[..n], hashed)?;
            check.update(&buf[..n]);
            hashed += n as u64;
        }
        if prefix - flushed >= FLUSH_EVERY {
            file.sync_data()?;
            flushed = prefix;
        }
    }
    Ok((whole, check))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Every range in flight gets one, as long as it can, within 16 to 64 MiB, and a file is
    /// two ranges at least.
    #[test]
    fn ranges_grow_with_the_file_up_to_64_mib() {
        for (size, ranges, len) in [
            (16 * MIB + 1, 8, 16),
            (200 * MIB, 8, 16),
            (300 * MIB, 8, 32),
            (1024 * MIB, 8, 64),
            (10 * 1024 * MIB, 8, 64),
            (64 * MIB + 12345, 1, 32),
            (32 * MIB, 1, 16),
            (100 * MIB, 0, 32),
            (1024 * MIB, 1, 64),
        ] {
            assert_eq!(
                range_len(size, ranges),
                len * MIB,
                "{size} bytes, {ranges} at once"
            );
        }
    }
}
