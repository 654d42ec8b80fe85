//! A large file of a restore: fetched as ranges, several at once, each written at its own offset
//! as its bytes arrive, and hashed in order by a second thread that reads back what is complete.
//!
//! Why not in order: the store serves each stream at its own pace (s3s-fs about 50 MiB/s per
//! connection on the benchmark machine), so the throughput is the number of ranges actually in
//! flight. Ranges taken in order held finished ones, with their 8 MiB bodies collected in
//! memory, behind the slowest, and started no new one meanwhile: 0.55× s5cmd on a 1 GiB file
//! against 0.72× this way, side by side (s5cmd writes ranges at their offsets and never
//! hashes). The hash needs the bytes in order: reading back from the page cache what the writer
//! just wrote costs a copy, and checks the file as the kernel holds it rather than the bytes
//! meant for it.

use super::{read_error, Check, Unusable, RANGE_SIZE};
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

/// What the hasher reads back at once.
const READ_BACK: usize = 1 << 20;

/// The hasher flushes the file to disk every this many bytes hashed, so the writer's final
/// `fsync` finds little left: an `fsync` of 1 GiB just written took 0.44 s on the benchmark
/// machine, and at the end it waits after every byte has arrived (RocksDB's `bytes_per_sync`
/// does the same for its files).
const FLUSH_EVERY: u64 = 64 << 20;

/// What the writer's thread is sent.
enum Write {
    /// Bytes of the file from an offset on.
    At(u64, Vec<Bytes>),
    /// Every byte of this range was sent before this message.
    Done(Range<u64>),
}

/// Fetches the object `key` of `size` bytes into a new file `target`, as ranges of
/// [`RANGE_SIZE`], `ranges` at once; its size as written and how its content differs from
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
    let writer = tokio::task::spawn_blocking(move || write_ranges(&file, rx, &complete_tx));
    let hasher = tokio::task::spawn_blocking(move || hash_behind(&reader, &complete_rx, check));
    let fetched = futures::stream::iter((0..size).step_by(RANGE_SIZE as usize))
        .map(|start| fetch_range(store, key, name, start..(start + RANGE_SIZE).min(size), &tx))
        .buffer_unordered(ranges.max(1))
        .try_collect::<Vec<()>>()
        .await;
    drop(tx);
    let joined = |e: tokio::task::JoinError| local(std::io::Error::other(e));
    // A failed writer ends the ranges (they cannot send): its error is the one to report.
    writer.await.map_err(joined)?.map_err(local)?;
    fetched?;
    hasher.await.map_err(joined)?.map_err(local)
}

/// Fetches `range` of `key`, handing its bytes to the writer as they arrive.
async fn fetch_range(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    name: &str,
    range: Range<u64>,
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
    let mut received = 0;
    let mut batch = Vec::new();
    let mut batched = 0;
    while let Some(chunk) = body.try_next().await.map_err(failed)? {
        received += chunk.len() as u64;
        if received > len {
            break;
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
    writer.send(Write::Done(range)).await.map_err(|_| stopped())
}

/// The writer's thread: writes each batch at its offset and tells the hasher, each time a
/// range completes, up to where the file is now complete; then flushes the file to disk.
fn write_ranges(
    file: &std::fs::File,
    mut batches: tokio::sync::mpsc::Receiver<Write>,
    complete: &std::sync::mpsc::Sender<u64>,
) -> std::io::Result<()> {
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
            Write::Done(range) => {
                done.insert(range.start, range.end);
                while let Some(end) = done.remove(&prefix) {
                    prefix = end;
                }
                // A gone hasher has failed, and says why.
                let _ = complete.send(prefix);
            }
        }
    }
    file.sync_all()
}

/// The hasher's thread: hashes the file in order up to each complete prefix it is told of, read
/// back from the page cache, flushing it to disk as it goes (`FLUSH_EVERY`); the bytes hashed
/// and how they differ from `check`'s.
fn hash_behind(
    file: &std::fs::File,
    complete: &std::sync::mpsc::Receiver<u64>,
    mut check: Check,
) -> std::io::Result<(u64, Option<String>)> {
    let mut hashed = 0;
    let mut flushed = 0;
    let mut buf = vec![0u8; READ_BACK];
    for prefix in complete {
        while hashed < prefix {
            let n = (prefix - hashed).min(READ_BACK as u64) as usize;
            file.read_exact_at(&mut buf[..n], hashed)?;
            check.update(&buf[..n]);
            hashed += n as u64;
        }
        if hashed - flushed >= FLUSH_EVERY {
            file.sync_data()?;
            flushed = hashed;
        }
    }
    Ok((hashed, check.mismatch()))
}
