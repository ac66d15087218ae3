//! Sharing: a file or a directory becomes an iroh-blobs collection,
//! imported by reference, pinned by the tag `share/<hash>` and recorded in
//! the registry.

mod scan;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use futures::{StreamExt, TryStreamExt};
use iroh_blobs::{
    api::{
        blobs::{AddPathOptions, AddProgressItem, ImportMode},
        Store, TempTag,
    },
    format::collection::Collection,
    BlobFormat, Hash,
};
use tokio::sync::mpsc;

use crate::{
    authority::Caller,
    registry::{Owned, Registry, RegistryError, ShareRecord, Source, OPEN_RING},
};
pub use scan::{mtime_ns, scan, source_of, ScanError, ScannedFile};

/// Files hashed at once while importing a directory.
const IMPORT_PARALLELISM: usize = 4;

/// Errors sharing or unsharing.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("cannot import {path}: {msg}")]
    Import { path: PathBuf, msg: String },
    #[error("the blob store failed: {0}")]
    Store(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("no share matches '{0}': see `ringdropctl shares ls`")]
    NotFound(String),
    #[error("'{0}' matches several shares: give more of the hash")]
    Ambiguous(String),
    #[error("no ring named '{0}': create it with `ringdropctl ring create {0}`")]
    UnknownRing(String),
    #[error("ring '{0}' belongs to another user: share with rings of your own (`ringdropctl ring create NAME`) or `open`")]
    ForeignRing(String),
    #[error("this content is already shared on this node by another user; it stays as they shared it: ask them, or an admin, to add your ring")]
    SharedByAnother,
}

/// The outcome of a share request.
#[derive(Debug)]
pub struct Shared {
    pub share: ShareRecord,
    /// False when the same content was already shared.
    pub created: bool,
    /// Older shares of the same path that this one replaced (their files changed).
    pub replaced: Vec<ShareRecord>,
}

/// Whether any source file of `share` changed or vanished since it was
/// shared: size, mtime, change time or inode differ. `touch -r`, `cp -p`
/// and `rsync -t` can set size and mtime back; nothing but the clock sets
/// the change time, and a replaced file has another inode.
pub fn sources_changed(share: &ShareRecord) -> bool {
    share
        .sources
        .iter()
        .any(|s| match std::fs::symlink_metadata(&s.path) {
            Ok(m) => source_of(&s.path, &m) != *s,
            Err(_) => true,
        })
}

/// Progress of a share, sent while it is imported.
#[derive(Debug, Clone)]
pub enum ShareEvent {
    Scanned { files: u64, bytes: u64 },
    Hashed(u64),
}

/// The tag that pins a share's collection.
pub fn share_tag(hash: &Hash) -> String {
    format!("share/{hash}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Files from this size on have their hashing progress read in naps.
const NAP_FROM: u64 = 4 << 20;
/// How long `import_file` leaves the store's progress reports alone.
const PROGRESS_NAP: std::time::Duration = std::time::Duration::from_millis(5);

async fn import_file(
    store: &Store,
    file: &ScannedFile,
    hashed: &AtomicU64,
) -> Result<TempTag, ShareError> {
    let err = |msg: String| ShareError::Import {
        path: file.path.clone(),
        msg,
    };
    let mut stream = store
        .add_path_with_opts(AddPathOptions {
            path: file.path.clone(),
            format: BlobFormat::Raw,
            mode: ImportMode::TryReference,
        })
        .stream()
        .await;
    let mut last = 0u64;
    while let Some(item) = stream.next().await {
        match item {
            AddProgressItem::OutboardProgress(offset) => {
                hashed.fetch_add(offset.saturating_sub(last), Ordering::Relaxed);
                last = offset;
                // The store reports every 16 KiB block and drops a report
                // that finds the channel full. Taking them a nap apart
                // spares a wake-up per block (~30 % of a core while the
                // store hashed a GiB at ~1.7 GB/s).
                if file.size >= NAP_FROM {
                    tokio::time::sleep(PROGRESS_NAP).await;
                }
            }
            AddProgressItem::Done(tt) => {
                hashed.fetch_add(file.size.saturating_sub(last), Ordering::Relaxed);
                return Ok(tt);
            }
            AddProgressItem::Error(e) => return Err(err(e.to_string())),
            _ => {}
        }
    }
    Err(err("the store ended the import without a result".into()))
}

/// What the user asked to share.
#[derive(Debug, Clone)]
pub struct ShareRequest {
    pub path: PathBuf,
    pub name: Option<String>,
    /// Rings to add; none: `open` for content never shared before.
    pub rings: Vec<String>,
    /// List it in the catalog to everyone who may fetch it (open shares).
    pub listed: bool,
    /// Keep the rings and listing of this owner's earlier share of the same
    /// path (`share`); false for an offer, which shares new content with
    /// its own ring only and leaves the path's other shares alone.
    pub inherit: bool,
}

/// Shares `path` under `name`, restricted to `rings`.
///
/// Access is only ever widened by asking: content never shared before and
/// given no ring is `open`; the same content again keeps its share and
/// adds `rings`; a path whose files changed since it was shared replaces
/// the old share and keeps exactly its rings (none left: reachable by
/// nobody) plus `rings`.
///
/// Shares belong to the caller: an operator may use only its own rings and
/// `open`, may not change another user's share of the same content, and
/// replaces only its own shares of a path.
pub async fn share(
    store: &Store,
    registry: &Registry,
    data_dir: &Path,
    caller: &Caller,
    req: ShareRequest,
    events: mpsc::Sender<ShareEvent>,
) -> Result<Shared, ShareError> {
    let ShareRequest {
        path,
        name,
        rings,
        listed,
        inherit,
    } = req;
    for r in &rings {
        if !registry.ring_exists(r)? {
            return Err(ShareError::UnknownRing(r.clone()));
        }
        if r != OPEN_RING && !caller.controls(registry.owner(Owned::Ring, r.as_bytes())?) {
            return Err(ShareError::ForeignRing(r.clone()));
        }
    }
    let (path, files) = {
        let data_dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || scan(&path, &data_dir, name.as_deref()))
            .await
            .map_err(|e| ShareError::Store(e.to_string()))??
    };
    let total: u64 = files.iter().map(|f| f.size).sum();
    events
        .send(ShareEvent::Scanned {
            files: files.len() as u64,
            bytes: total,
        })
        .await
        .ok();
    let (hash, meta_hash, tags, collection) = import(store, &files, &events).await?;

    let sources: Vec<Source> = files.iter().map(|f| f.source.clone()).collect();
    if registry.share(&hash)?.is_some() {
        if !caller.controls(registry.owner(Owned::Share, hash.as_bytes())?) {
            return Err(ShareError::SharedByAnother);
        }
        // Same bytes, maybe touched or copied elsewhere: the files just
        // hashed are the sources now, so the share is served again.
        if let Some(existing) = registry.widen_share(&hash, &rings, listed, sources.clone())? {
            return Ok(Shared {
                share: existing,
                created: false,
                replaced: Vec::new(),
            });
        }
    }
    let owners = registry.owners(Owned::Share)?;
    let owner_of = |s: &ShareRecord| {
        owners
            .get(s.hash.as_bytes().as_slice())
            .copied()
            .unwrap_or_else(crate::registry::daemon_uid)
    };
    let replaced: Vec<ShareRecord> = if inherit {
        registry
            .shares()?
            .into_iter()
            .filter(|s| s.path == path && owner_of(s) == caller.uid)
            .collect()
    } else {
        Vec::new()
    };
    let mut all_rings = rings;
    for old in &replaced {
        for r in &old.rings {
            if !all_rings.contains(r) {
                all_rings.push(r.clone());
            }
        }
    }
    // Only content never shared before becomes `open` by default: a path
    // whose share lost its rings stays reachable by nobody.
    if all_rings.is_empty() && replaced.is_empty() {
        all_rings.push(OPEN_RING.to_string());
    }
    let display = files
        .first()
        .map(|f| f.name.split('/').next().unwrap_or(&f.name).to_string())
        .unwrap_or_default();
    let rec = ShareRecord {
        hash,
        name: display,
        path,
        size: total,
        files: files.len() as u64,
        created_at: now(),
        children: std::iter::once(meta_hash)
            .chain(collection.iter().map(|(_, h)| *h))
            .collect(),
        rings: all_rings,
        sources,
        listed: listed || replaced.iter().any(|old| old.listed),
    };
    registry.insert_share(&rec, caller.uid)?;
    drop(tags);
    for old in &replaced {
        registry.remove_share(&old.hash)?;
        store
            .tags()
            .delete(share_tag(&old.hash))
            .await
            .map_err(|e| ShareError::Store(e.to_string()))?;
    }
    Ok(Shared {
        share: rec,
        created: true,
        replaced,
    })
}

/// Hashes every file (by reference) and stores the collection under its
/// share tag. Returns root hash, names-blob hash, the files' temp tags and
/// the collection.
async fn import(
    store: &Store,
    files: &[ScannedFile],
    events: &mpsc::Sender<ShareEvent>,
) -> Result<(Hash, Hash, Vec<TempTag>, Collection), ShareError> {
    let hashed = Arc::new(AtomicU64::new(0));
    let reporter = {
        let (hashed, events) = (hashed.clone(), events.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
            loop {
                tick.tick().await;
                if events
                    .send(ShareEvent::Hashed(hashed.load(Ordering::Relaxed)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let imported: Result<Vec<TempTag>, ShareError> = futures::stream::iter(files.to_vec())
        .map(|f| {
            let (store, hashed) = (store.clone(), hashed.clone());
            async move { import_file(&store, &f, &hashed).await }
        })
        .buffered(IMPORT_PARALLELISM)
        .try_collect()
        .await;
    reporter.abort();
    let tags = imported?;
    events
        .send(ShareEvent::Hashed(hashed.load(Ordering::Relaxed)))
        .await
        .ok();

    let collection: Collection = files
        .iter()
        .zip(&tags)
        .map(|(f, tt)| (f.name.clone(), tt.hash()))
        .collect();
    let meta_hash = collection
        .to_blobs()
        .next()
        .map(|meta| Hash::new(&meta))
        .unwrap_or(Hash::EMPTY);
    let root = collection
        .clone()
        .store(store)
        .await
        .map_err(|e| ShareError::Store(e.to_string()))?;
    let hash = root.hash();
    store
        .tags()
        .set(share_tag(&hash), root.hash_and_format())
        .await
        .map_err(|e| ShareError::Store(e.to_string()))?;
    // The tag must survive a crash right after we answer.
    store
        .sync_db()
        .await
        .map_err(|e| ShareError::Store(e.to_string()))?;
    Ok((hash, meta_hash, tags, collection))
}

/// Finds a share `caller` controls by full hash or unique hex prefix
/// (another user's shares are not found).
pub fn resolve(
    registry: &Registry,
    caller: &Caller,
    hash_or_prefix: &str,
) -> Result<ShareRecord, ShareError> {
    let needle = hash_or_prefix.trim().to_ascii_lowercase();
    if needle.is_empty() {
        return Err(ShareError::NotFound(needle));
    }
    let owners = registry.owners(Owned::Share)?;
    let mut found = registry.shares()?.into_iter().filter(|s| {
        let owner = owners
            .get(s.hash.as_bytes().as_slice())
            .copied()
            .unwrap_or_else(crate::registry::daemon_uid);
        s.hash.to_string().starts_with(&needle) && caller.controls(owner)
    });
    match (found.next(), found.next()) {
        (Some(s), None) => Ok(s),
        (Some(_), Some(_)) => Err(ShareError::Ambiguous(needle)),
        (None, _) => Err(ShareError::NotFound(needle)),
    }
}

/// Stops sharing: the registry forgets it and its tag goes, so garbage
/// collection may reclaim what nothing else pins.
pub async fn unshare(
    store: &Store,
    registry: &Registry,
    caller: &Caller,
    hash_or_prefix: &str,
) -> Result<ShareRecord, ShareError> {
    let rec = resolve(registry, caller, hash_or_prefix)?;
    registry.remove_share(&rec.hash)?;
    store
        .tags()
        .delete(share_tag(&rec.hash))
        .await
        .map_err(|e| ShareError::Store(e.to_string()))?;
    Ok(rec)
}
