//! Delivery to a client that places the files itself (the system service
//! fetching for an operator whose home it may not write): the files of a
//! `ready` transfer are listed and streamed from the daemon's incoming files
//! (or, for a transfer an older ringdropd fetched, from the store) to the
//! user who started it, and the transfer completes when that client says it placed
//! them. The client writes with the same staged export as the daemon
//! (`ringdrop_proto::place`) and checks every file's hash as it arrives.

use futures::StreamExt;
use iroh_blobs::{format::collection::Collection, BlobFormat, Hash};
use tokio::sync::mpsc;

use std::path::Path;

use super::*;
use crate::transfers::plan::{Entry, PartialDir};

/// Bytes per message on the control socket: large enough to keep the
/// socket busy, well under tonic's 4 MiB message limit.
const CHUNK: usize = 1 << 20;
/// Messages buffered ahead of a slow client.
const CHUNKS_AHEAD: usize = 4;

/// One piece of a file on its way to the client.
#[derive(Debug)]
pub struct FileChunk {
    pub file: u32,
    pub offset: u64,
    pub data: Vec<u8>,
}

impl TransferManager {
    /// The row of a `ready` transfer that `caller` may receive.
    async fn ready_for(&self, id: u64, caller: &Caller) -> Result<TransferRecord, TransferError> {
        let rec = self.stored_for(caller, id).await?;
        if !caller.handles_files_of(rec.owner_uid) {
            return Err(TransferError::NotOwner {
                id,
                owner: ringdrop_proto::place::user_name(rec.owner_uid),
            });
        }
        if rec.placement != Placement::Client {
            return Err(TransferError::PlacedByDaemon(id));
        }
        if rec.state != TransferState::Ready {
            return Err(TransferError::InvalidState {
                id,
                state: rec.state.name(),
                action: "received (it is not ready)",
            });
        }
        Ok(rec)
    }

    /// The files of a `ready` transfer, in collection order.
    pub async fn ready_files(&self, id: u64, caller: &Caller) -> Result<Vec<Entry>, TransferError> {
        let rec = self.ready_for(id, caller).await?;
        self.entries_of(&rec).await
    }

    /// The files of the `ready` transfer `rec`, in collection order.
    async fn entries_of(&self, rec: &TransferRecord) -> Result<Vec<Entry>, TransferError> {
        let id = rec.id;
        let ticket: Ticket = rec.ticket.parse()?;
        let store = &self.inner.store;
        let failed = |msg: String| TransferError::Content { id, msg };
        let named: Vec<(String, Hash)> = if ticket.content.format == BlobFormat::Raw {
            let name = Some(rec.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| rec.hash.to_string());
            vec![(name, rec.hash)]
        } else {
            let collection = Collection::load(rec.hash, store)
                .await
                .map_err(|e| failed(e.to_string()))?;
            collection.into_iter().collect()
        };
        let sizes = match self.inner.registry.partial(id).await? {
            Some(p) if p.sizes.len() == named.len() => p.sizes,
            _ => vec![None; named.len()],
        };
        let mut out = Vec::with_capacity(named.len());
        for ((name, hash), size) in named.into_iter().zip(sizes) {
            let size = match size {
                Some(size) => size,
                None => match store.blobs().status(hash).await {
                    Ok(iroh_blobs::api::proto::BlobStatus::Complete { size }) => size,
                    Ok(_) => return Err(failed(format!("{name:?} is not complete"))),
                    Err(e) => return Err(failed(e.to_string())),
                },
            };
            out.push(Entry {
                name,
                hash: *hash.as_bytes(),
                size,
            });
        }
        Ok(out)
    }

    /// The name of the owner's private directory the files of transfer
    /// `id` were written into (beside its destination), if a client hosted
    /// them.
    pub async fn hosted_dir(&self, id: u64) -> Result<Option<String>, TransferError> {
        let incoming = self.inner.data_dir.join(super::worker::CLIENT_INCOMING);
        Ok(self
            .inner
            .registry
            .partial(id)
            .await?
            .filter(|p| p.root != incoming)
            .map(|p| p.dir))
    }

    /// Where a ready transfer's bytes are: its incoming files, or the store
    /// for a transfer fetched by an older ringdropd.
    async fn ready_source(&self, id: u64) -> Result<Option<Arc<PartialDir>>, TransferError> {
        let Some(rec) = self.inner.registry.partial(id).await? else {
            return Ok(None);
        };
        if let Some(dir) = self.hosted_dir(id).await? {
            return Err(TransferError::Content {
                id,
                msg: format!(
                    "its files are in {}, its owner's own directory: they are placed from there",
                    rec.root.join(dir).display()
                ),
            });
        }
        match PartialDir::open(&rec.root, &rec.dir) {
            Ok(Some(dir)) => Ok(Some(Arc::new(dir))),
            Ok(None) => Err(TransferError::Content {
                id,
                msg: format!(
                    "its files in {} are gone",
                    rec.root.join(&rec.dir).display()
                ),
            }),
            Err(e) => Err(TransferError::Content {
                id,
                msg: e.to_string(),
            }),
        }
    }

    /// Streams the bytes of the files `wanted` (indexes into
    /// [`Self::ready_files`]) of a `ready` transfer, one file after another.
    pub async fn read_ready(
        &self,
        id: u64,
        caller: &Caller,
        wanted: Vec<u32>,
    ) -> Result<mpsc::Receiver<Result<FileChunk, TransferError>>, TransferError> {
        let files = self.ready_files(id, caller).await?;
        // Its client is here: `keep_ready` counts from now.
        self.inner
            .registry
            .settle_ready(id, move |rec| rec.updated_at = ringdrop_proto::clock::now())
            .await?;
        for &i in &wanted {
            if i as usize >= files.len() {
                return Err(TransferError::Content {
                    id,
                    msg: format!("no file {i}: the transfer has {} files", files.len()),
                });
            }
        }
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        if let Some(dir) = self.ready_source(id).await? {
            tokio::task::spawn_blocking(move || {
                for i in wanted {
                    let entry = &files[i as usize];
                    if let Err(msg) = send_from_file(&dir, i, entry, &tx) {
                        tx.blocking_send(Err(TransferError::Content { id, msg }))
                            .ok();
                        return;
                    }
                }
            });
            return Ok(rx);
        }
        let store = self.inner.store.clone();
        let stop = self.inner.shutdown.clone();
        self.inner.tasks.spawn(async move {
            for i in wanted {
                let entry = &files[i as usize];
                let sent = tokio::select! {
                    r = send_file(&store, i, entry, &tx) => r,
                    _ = stop.cancelled() => return,
                };
                if let Err(msg) = sent {
                    tx.send(Err(TransferError::Content { id, msg })).await.ok();
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// A read-only descriptor of file `index` of `ready` transfer `id`'s
    /// verified incoming files, for its owner (`None`: a file of no
    /// bytes), so the client copies it in the kernel. Opens files: run it
    /// on a blocking thread (`Handle::block_on`).
    pub async fn ready_file(
        &self,
        caller: &Caller,
        id: u64,
        index: u32,
    ) -> Result<Option<std::fs::File>, TransferError> {
        self.ready_for(id, caller).await?;
        let Some(dir) = self.ready_source(id).await? else {
            return Err(TransferError::Content {
                id,
                msg: "its files are in the store (fetched by an older ringdropd): read them over the control socket".into(),
            });
        };
        // Its client is here: `keep_ready` counts from now.
        if index == 0 {
            self.inner
                .registry
                .settle_ready(id, move |rec| rec.updated_at = ringdrop_proto::clock::now())
                .await?;
        }
        let file = dir
            .open_read(index as usize)
            .map_err(|e| TransferError::Content {
                id,
                msg: e.to_string(),
            })?;
        Ok(file.filter(|f| f.metadata().is_ok_and(|m| m.len() > 0)))
    }

    /// The owner's client placed the files: the transfer completes and its
    /// data is released.
    pub async fn finish_ready(
        &self,
        id: u64,
        caller: &Caller,
        files: Vec<PathBuf>,
    ) -> Result<TransferView, TransferError> {
        let rec = self.ready_for(id, caller).await?;
        let entries = self.entries_of(&rec).await?;
        placed_as_planned(&rec.dest, &entries, &files).map_err(TransferError::BadFinish)?;
        let settled = self
            .inner
            .registry
            .settle_ready(id, move |rec| {
                rec.state = TransferState::Completed;
                rec.files = files;
                rec.updated_at = ringdrop_proto::clock::now();
            })
            .await?;
        let Some(rec) = settled else {
            return Err(TransferError::InvalidState {
                id,
                state: self
                    .stored(id)
                    .await
                    .map(|r| r.state)
                    .unwrap_or(rec.state)
                    .name(),
                action: "completed (it is no longer ready)",
            });
        };
        self.release_settled(&rec).await;
        self.touch();
        Ok(TransferView::at_rest(rec))
    }

    /// A transfer that left `ready` (placed, or expired): its store data
    /// and incoming files are released and event readers told.
    async fn release_settled(&self, rec: &TransferRecord) {
        if let Err(e) = self.inner.store.tags().delete(transfer_tag(rec.id)).await {
            warn!(id = rec.id, "cannot release transfer data: {e}");
        }
        self.discard_incoming(rec.id).await;
        self.ended(rec);
    }

    /// Fails the `ready` transfers no client came for within `keep` (or
    /// since it last asked for their files): their files leave the data
    /// dir, and `transfers resume ID` fetches them again.
    pub async fn expire_ready(&self, keep: std::time::Duration) -> Result<(), TransferError> {
        let cutoff = ringdrop_proto::clock::now()
            .saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        let all = self.inner.registry.transfers().await?;
        let stale = all
            .into_iter()
            .filter(|r| r.state == TransferState::Ready && r.updated_at <= cutoff);
        let mut any = false;
        for rec in stale {
            let id = rec.id;
            let msg = format!(
                "its owner's client did not collect it within {} (keep_ready): the fetched files were removed; `ringdropctl transfers resume {id}` fetches them again",
                humantime::format_duration(keep)
            );
            let error = msg.clone();
            let settled = self
                .inner
                .registry
                .settle_ready(id, move |rec| {
                    rec.state = TransferState::Failed;
                    rec.last_error = Some(error);
                    rec.updated_at = ringdrop_proto::clock::now();
                })
                .await?;
            let Some(rec) = settled else { continue };
            warn!(id, "transfer {msg}");
            self.release_settled(&rec).await;
            any = true;
        }
        if any {
            self.touch();
        }
        Ok(())
    }
}

/// Whether the paths a client says it placed are what a plan of `entries`
/// into `dest` can produce: at most one path a file, each `dest` itself (a
/// single file given a new name) or beneath it ending in that file's name,
/// with no `.` or `..`. They reach `on_complete` and the transfer row, so
/// no client's word names a file it did not place (`/etc/shadow`).
fn placed_as_planned(dest: &Path, entries: &[Entry], files: &[PathBuf]) -> Result<(), String> {
    use std::path::Component;
    let refuse = |p: &Path, why: &str| {
        Err(format!(
            "the client reported {} as placed, which {why}: nothing was recorded",
            p.display()
        ))
    };
    if files.len() > entries.len() {
        return Err(format!(
            "the client reported {} placed files for a transfer of {}: nothing was recorded",
            files.len(),
            entries.len()
        ));
    }
    for p in files {
        if p.components()
            .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
        {
            return refuse(p, "has . or .. in it");
        }
        if p == dest {
            if entries.len() != 1 {
                return refuse(
                    p,
                    "is the destination itself, but the transfer has several files",
                );
            }
            continue;
        }
        let Ok(rel) = p.strip_prefix(dest) else {
            return refuse(p, "is not beneath the transfer's destination");
        };
        // The top name may be replaced by `dest` (a new entry).
        let named = entries.iter().any(|e| {
            let name = Path::new(&e.name);
            let below_top: PathBuf = name.iter().skip(1).collect();
            rel.ends_with(name) || (!below_top.as_os_str().is_empty() && rel == below_top)
        });
        if !named {
            return refuse(p, "is not a file of the transfer");
        }
    }
    Ok(())
}

/// Sends one whole file from the incoming files, in [`CHUNK`]-sized
/// messages (a client that went away ends it). Blocking.
fn send_from_file(
    dir: &PartialDir,
    index: u32,
    entry: &Entry,
    tx: &mpsc::Sender<Result<FileChunk, TransferError>>,
) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let file = match dir.open_read(index as usize) {
        Ok(Some(f)) => Some(f),
        Ok(None) if entry.size == 0 => None,
        Ok(None) => return Err(format!("{:?}: its incoming file is gone", entry.name)),
        Err(e) => return Err(format!("{:?}: {e}", entry.name)),
    };
    let mut offset = 0u64;
    loop {
        let len = (entry.size - offset).min(CHUNK as u64) as usize;
        let mut data = vec![0u8; len];
        if let Some(f) = &file {
            f.read_exact_at(&mut data, offset)
                .map_err(|e| format!("{:?}: {e}", entry.name))?;
        }
        let chunk = FileChunk {
            file: index,
            offset,
            data,
        };
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Ok(()); // the client went away
        }
        offset += len as u64;
        // One message at least: an empty file is created too.
        if offset >= entry.size {
            return Ok(());
        }
    }
}

/// Sends one whole file, read from the store in its own leaves and
/// batched into [`CHUNK`]-sized messages; an error says what went wrong.
async fn send_file(
    store: &Store,
    index: u32,
    entry: &Entry,
    tx: &mpsc::Sender<Result<FileChunk, TransferError>>,
) -> Result<(), String> {
    use iroh_blobs::api::proto::ExportRangesItem;
    let mut leaves = store
        .export_ranges(Hash::from_bytes(entry.hash), 0..entry.size)
        .stream();
    let mut pending = FileChunk {
        file: index,
        offset: 0,
        data: Vec::with_capacity(CHUNK),
    };
    let mut sent_any = false;
    while let Some(item) = leaves.next().await {
        match item {
            ExportRangesItem::Size(_) => {}
            ExportRangesItem::Data(leaf) => {
                if leaf.offset != pending.offset + pending.data.len() as u64 {
                    return Err(format!("{:?}: the store skipped bytes", entry.name));
                }
                pending.data.extend_from_slice(&leaf.data);
                if pending.data.len() >= CHUNK {
                    let next = pending.offset + pending.data.len() as u64;
                    let full = std::mem::replace(
                        &mut pending,
                        FileChunk {
                            file: index,
                            offset: next,
                            data: Vec::with_capacity(CHUNK),
                        },
                    );
                    sent_any = true;
                    if tx.send(Ok(full)).await.is_err() {
                        return Ok(()); // the client went away
                    }
                }
            }
            ExportRangesItem::Error(e) => return Err(format!("{:?}: {e}", entry.name)),
        }
    }
    if pending.offset + pending.data.len() as u64 != entry.size {
        return Err(format!("{:?}: the store ended the file early", entry.name));
    }
    // The tail, or one empty message for an empty file so the client
    // creates it.
    if !pending.data.is_empty() || !sent_any {
        tx.send(Ok(pending)).await.ok();
    }
    Ok(())
}
