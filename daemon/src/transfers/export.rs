//! Export by the daemon: places a verified collection at the destination,
//! as planned by [`super::plan`], with the shared staged write
//! ([`ringdrop_proto::place::Staging`]): temporary names, durable, renamed
//! without overwrite, all or nothing.
//!
//! Staging is a copy read from the store and written through a descriptor
//! the staging opened beneath the destination: the store's own export
//! takes a path, which it would resolve itself (following whatever symlink
//! a local user put there). A hard link to the store's file (tried: no
//! second write) leaves the store sharing an inode with the user's file
//! until its next GC, and overwriting the download in place (`>` in a
//! shell) then corrupts the store's copy of that hash; `TryReference`
//! records the temporary name in the store, which is gone after the rename.
//!
//! Data the store did not download itself (it may refer to a shared file)
//! is re-hashed before it is renamed into place.

use std::{path::PathBuf, sync::Mutex};

use futures::{StreamExt, TryStreamExt};
use iroh_blobs::{api::Store, Hash};
use ringdrop_proto::place::{
    stage::{start_writeback, WRITEBACK_EVERY},
    Entry, ExportError, Plan, Staging,
};

/// Files staged at once: the store answers many small exports faster side
/// by side than one after another.
const STAGE_AT_ONCE: usize = 16;

/// Bytes gathered before one write to the staged file.
const WRITE_CHUNK: usize = 1 << 20;

/// Puts one file's data into its staged file: read from the store's own
/// leaves and written through the descriptor the staging opened beneath
/// the destination (never a path the store resolves), handed to writeback
/// as it goes.
async fn stage(store: &Store, entry: &Entry, file: std::fs::File) -> Result<(), ExportError> {
    use iroh_blobs::api::proto::ExportRangesItem;
    use tokio::io::AsyncWriteExt;
    let failed = |msg: String| ExportError::Source {
        name: entry.name.clone(),
        msg,
    };
    let written_err = |e: std::io::Error| ExportError::Source {
        name: entry.name.clone(),
        msg: format!("cannot write it: {e}"),
    };
    let writeback = file.try_clone().map_err(written_err)?;
    let mut out = tokio::fs::File::from_std(file);
    let mut leaves = store
        .export_ranges(Hash::from_bytes(entry.hash), 0..entry.size)
        .stream();
    let mut buf = Vec::with_capacity(WRITE_CHUNK);
    let (mut written, mut flushed) = (0u64, 0u64);
    while let Some(item) = leaves.next().await {
        match item {
            ExportRangesItem::Size(_) => {}
            ExportRangesItem::Data(leaf) => {
                if leaf.offset != written + buf.len() as u64 {
                    return Err(failed("the store skipped bytes".into()));
                }
                buf.extend_from_slice(&leaf.data);
                if buf.len() >= WRITE_CHUNK {
                    out.write_all(&buf).await.map_err(written_err)?;
                    written += buf.len() as u64;
                    buf.clear();
                    if written >= flushed + WRITEBACK_EVERY {
                        start_writeback(&writeback, flushed, written);
                        flushed = written;
                    }
                }
            }
            ExportRangesItem::Error(e) => return Err(failed(e.to_string())),
        }
    }
    out.write_all(&buf).await.map_err(written_err)?;
    written += buf.len() as u64;
    out.flush().await.map_err(written_err)?;
    if written != entry.size {
        return Err(failed(format!(
            "the store ended it at {written} of {} bytes",
            entry.size
        )));
    }
    Ok(())
}

/// Writes every planned file; all or nothing. Returns every file of the
/// content at the destination (written now or already present). `verify`
/// re-hashes each file before it is renamed into place: data the store did
/// not download itself may be a reference to a file someone changed since,
/// and no unverified byte may reach a destination.
pub async fn export(store: &Store, plan: Plan, verify: bool) -> Result<Vec<PathBuf>, ExportError> {
    let staging = tokio::task::spawn_blocking(move || Staging::prepare(plan))
        .await
        .map_err(task_failed)??;
    // Every copy runs to its end, failed or not, before the undo log may
    // remove temporary files: none is written after it ran.
    let failed: Mutex<Option<ExportError>> = Mutex::new(None);
    let staging_ref = &staging;
    futures::stream::iter(staging.items().map(Ok))
        .try_for_each_concurrent(STAGE_AT_ONCE, |(i, entry)| {
            let failed = &failed;
            async move {
                let staged = match staging_ref.create(i) {
                    Ok(file) => stage(store, entry, file).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = staged {
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
                Ok::<(), ExportError>(())
            }
        })
        .await?;
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // fsync, re-hash, rename and directory sync block: off the runtime.
    tokio::task::spawn_blocking(move || staging.finish(verify))
        .await
        .map_err(task_failed)?
}

fn task_failed(e: tokio::task::JoinError) -> ExportError {
    ExportError::Io {
        path: PathBuf::from("/"),
        msg: format!("export task failed: {e}"),
    }
}
