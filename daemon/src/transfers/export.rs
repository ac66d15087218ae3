//! Export by the daemon: places a verified collection at the destination,
//! as planned by [`super::plan`], with the shared staged write
//! ([`ringdrop_proto::place::Staging`]): temporary names, durable, renamed
//! without overwrite, all or nothing.
//!
//! Staging is a copy by the store (`ExportMode::Copy`, a reflink where the
//! filesystem has them). A hard link to the store's file (tried: no second
//! write) leaves the store sharing an inode with the user's file until its
//! next GC, and overwriting the download in place (`>` in a shell) then
//! corrupts the store's copy of that hash; `TryReference` records the
//! temporary name in the store, which is gone after the rename.
//!
//! Data the store did not download itself (it may refer to a shared file)
//! is re-hashed before it is renamed into place.

use std::{fs, path::Path, path::PathBuf, sync::Mutex};

use futures::{StreamExt, TryStreamExt};
use iroh_blobs::{api::Store, Hash};
use ringdrop_proto::place::{
    stage::{start_writeback, WRITEBACK_EVERY},
    Entry, ExportError, Plan, Staging,
};

/// Files staged at once: the store answers many small exports faster side
/// by side than one after another.
const STAGE_AT_ONCE: usize = 16;

/// Puts one file's data under its temporary name `tmp`: a copy by the
/// store (a reflink where the filesystem has them), handed to writeback
/// as the store reports its progress.
async fn stage(store: &Store, entry: &Entry, tmp: &Path) -> Result<(), ExportError> {
    use iroh_blobs::api::proto::ExportProgressItem;
    let failed = |msg: String| ExportError::Source {
        name: entry.name.clone(),
        msg,
    };
    let mut progress = store
        .export_with_opts(iroh_blobs::api::blobs::ExportOptions {
            hash: Hash::from_bytes(entry.hash),
            mode: iroh_blobs::api::blobs::ExportMode::Copy,
            target: tmp.to_path_buf(),
        })
        .stream()
        .await;
    // Our own handle on `tmp`, opened at the first progress report (the
    // store has created the file by then), and how far it was handed on.
    let mut written: Option<(fs::File, u64)> = None;
    while let Some(item) = progress.next().await {
        match item {
            // The bytes before `offset` are written.
            ExportProgressItem::CopyProgress(offset) => {
                if written.is_none() {
                    written = fs::OpenOptions::new()
                        .write(true)
                        .open(tmp)
                        .ok()
                        .map(|f| (f, 0));
                }
                if let Some((file, flushed)) = &mut written {
                    if offset >= *flushed + WRITEBACK_EVERY {
                        start_writeback(file, *flushed, offset);
                        *flushed = offset;
                    }
                }
            }
            ExportProgressItem::Done => return Ok(()),
            ExportProgressItem::Error(e) => return Err(failed(e.to_string())),
            ExportProgressItem::Size(_) => {}
        }
    }
    Err(failed("the store ended the export without a result".into()))
}

/// Writes every planned file; all or nothing. Returns every file of the
/// content at the destination (written now or already present). `verify`
/// re-hashes each file before it is renamed into place: data the store did
/// not download itself may be a reference to a file someone changed since,
/// and no unverified byte may reach a destination.
pub async fn export(
    store: &Store,
    plan: Plan,
    tag: u64,
    verify: bool,
) -> Result<Vec<PathBuf>, ExportError> {
    let staging = tokio::task::spawn_blocking(move || Staging::prepare(plan, tag))
        .await
        .map_err(task_failed)??;
    // Every copy runs to its end, failed or not, before the undo log may
    // remove temporary files: none is written after it ran.
    let failed: Mutex<Option<ExportError>> = Mutex::new(None);
    futures::stream::iter(staging.items().map(Ok))
        .try_for_each_concurrent(STAGE_AT_ONCE, |(entry, tmp)| {
            let failed = &failed;
            async move {
                if let Err(e) = stage(store, entry, tmp).await {
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
