//! Sharing: a file or a directory becomes an iroh-blobs collection: its
//! files hashed into the content layer (read in place, their outboards in
//! the data dir), its names and hash sequence in the store, pinned by the
//! tag `share/<hash>`, recorded in the registry.

pub mod handed;
mod scan;

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};
use tokio_util::task::AbortOnDropHandle;

use futures::{StreamExt, TryStreamExt};
use iroh_blobs::{
    api::{Store, TempTag},
    format::collection::Collection,
    Hash,
};
use tokio::sync::mpsc;

pub use crate::registry::source_of;
use crate::{
    authority::Caller,
    content,
    registry::{Owned, Registry, RegistryError, ShareRecord, Source, OPEN_RING},
};
pub use scan::{scan, ScanError, ScannedFile};

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
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Blocking work of the share (the scan) did not finish.
    #[error("the share's file scan failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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
    #[error("ringdropd reads an operator's files only through descriptors that operator's ringdropctl opened and handed over, and none came with this request: use ringdropctl {0} (it does this), or a client that hands files over the same way (proto/src/handoff.rs)")]
    NotHanded(&'static str),
    #[error("the files handed over for this request are gone (older than a minute, or another user's): run the command again")]
    HandoffGone,
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
pub fn share_tag(hash: &Hash, owner: u32) -> String {
    // The daemon's user keeps the name its shares had before shares were
    // keyed by owner; two users sharing the same content pin it apart.
    if owner == crate::registry::daemon_uid() {
        format!("share/{hash}")
    } else {
        format!("share/{hash}/{owner}")
    }
}

/// Hashes a file of the daemon's own walk into the content layer (its
/// outboard in the data dir, with every core), read through a descriptor
/// opened without following links; it must still be what the scan saw.
async fn hash_file(
    layer: &content::Shared,
    file: &ScannedFile,
    hashed: &Arc<AtomicU64>,
) -> Result<Hash, ShareError> {
    let err = |msg: String| ShareError::Import {
        path: file.path.clone(),
        msg,
    };
    let (dir, source, hashed) = (layer.data_dir.clone(), file.source.clone(), hashed.clone());
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let data = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&source.path)?;
        content::add_file(&dir, &data, &source, &hashed)
    })
    .await
    .map_err(|e| err(e.to_string()))?
    .map_err(|e| err(e.to_string()))
}

/// One file to import: found by the daemon's own walk, or handed over by
/// the caller's client.
enum Item {
    Path(ScannedFile),
    Handed {
        name: String,
        file: std::fs::File,
        size: u64,
    },
}

impl Item {
    fn name(&self) -> &str {
        match self {
            Item::Path(f) => &f.name,
            Item::Handed { name, .. } => name,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Item::Path(f) => f.size,
            Item::Handed { size, .. } => *size,
        }
    }
}

/// The daemon's own walk of `path` (off the runtime).
async fn scan_items(
    path: PathBuf,
    data_dir: &Path,
    name: Option<String>,
) -> Result<(PathBuf, Vec<Item>), ShareError> {
    let data_dir = data_dir.to_path_buf();
    let (path, files) =
        tokio::task::spawn_blocking(move || scan(&path, &data_dir, name.as_deref())).await??;
    Ok((path, files.into_iter().map(Item::Path).collect()))
}

/// Checks handed files as a share: an absolute path to name it by (the
/// client named every file, `--name` applied), names unique.
#[allow(clippy::type_complexity)]
fn handed_items(
    path: PathBuf,
    mut held: handed::HandedFiles,
) -> Result<(PathBuf, Vec<Item>, Option<handed::HandedFiles>), ShareError> {
    let handed = std::mem::take(&mut held.files);
    if !path.is_absolute() {
        return Err(ScanError::NotAbsolute(path).into());
    }
    if handed.is_empty() {
        return Err(ScanError::Empty(path).into());
    }
    let mut seen = std::collections::HashSet::new();
    let mut items = Vec::with_capacity(handed.len());
    for h in handed {
        if !seen.insert(h.name.clone()) {
            return Err(ShareError::Import {
                path: path.clone(),
                msg: format!("{:?} was handed over twice", h.name),
            });
        }
        let size = h
            .file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| ShareError::Import {
                path: path.join(&h.name),
                msg: e.to_string(),
            })?;
        items.push(Item::Handed {
            name: h.name,
            file: h.file,
            size,
        });
    }
    Ok((path, items, Some(held)))
}

/// Reads a small handed file whole and adds it in one request.
async fn add_whole(
    store: &Store,
    name: &str,
    file: std::fs::File,
    size: u64,
    hashed: &AtomicU64,
) -> Result<TempTag, ShareError> {
    let err = |msg: String| ShareError::Import {
        path: PathBuf::from(name),
        msg,
    };
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut data = Vec::with_capacity(size as usize);
        (&file)
            .take(SMALL_HANDED + 1)
            .read_to_end(&mut data)
            .map(|_| data)
    })
    .await
    .map_err(|e| err(e.to_string()))?
    .map_err(|e| err(e.to_string()))?;
    if read.len() as u64 != size {
        return Err(err(format!(
            "it changed while being shared ({size} bytes, then {}); share it again",
            read.len()
        )));
    }
    hashed.fetch_add(size, Ordering::Relaxed);
    store
        .add_bytes(read)
        .temp_tag()
        .await
        .map_err(|e| err(e.to_string()))
}

/// Handed files up to this size are read whole and added in one request.
const SMALL_HANDED: u64 = 1 << 20;

/// Imports a handed file by copy, read through its descriptor.
async fn import_handed(
    store: &Store,
    name: String,
    file: std::fs::File,
    size: u64,
    hashed: &AtomicU64,
) -> Result<TempTag, ShareError> {
    use tokio::io::AsyncReadExt;
    let err = |msg: String| ShareError::Import {
        path: PathBuf::from(&name),
        msg,
    };
    // Small files are read whole off the runtime and added in one go
    // (a stream per file costs more than the file).
    if size <= SMALL_HANDED {
        return add_whole(store, &name, file, size, hashed).await;
    }
    let counter = Arc::new(AtomicU64::new(0));
    let seen = counter.clone();
    let file = tokio::fs::File::from_std(file);
    // Reading stops at the end or at the first error (which fails the add).
    let chunks = futures::stream::unfold(Some(file), move |file| {
        let seen = seen.clone();
        async move {
            let mut file = file?;
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    seen.fetch_add(n as u64, Ordering::Relaxed);
                    Some((Ok(bytes::Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    let tt = store
        .add_stream(chunks)
        .await
        .temp_tag()
        .await
        .map_err(|e| err(e.to_string()))?;
    let read = counter.load(Ordering::Relaxed);
    hashed.fetch_add(read, Ordering::Relaxed);
    if read != size {
        return Err(err(format!(
            "it changed while being shared ({size} bytes, then {read}); share it again"
        )));
    }
    Ok(tt)
}

/// What the user asked to share.
#[derive(Debug)]
pub struct ShareRequest {
    pub path: PathBuf,
    pub name: Option<String>,
    /// Rings to add; none: `open` for content never shared before.
    pub rings: Vec<String>,
    /// List it in the catalog to everyone who may fetch it (open shares).
    pub listed: bool,
    /// Members of its rings serve it to each other (`None`: as it was).
    pub reserve: Option<bool>,
    /// Keep the rings and listing of this owner's earlier share of the same
    /// path (`share`); false for an offer, which shares new content with
    /// its own ring only and leaves the path's other shares alone.
    pub inherit: bool,
    /// The files, opened by the caller's own client and handed over
    /// ([`handed`]): read through these descriptors and copied into the
    /// store, never reopened by path. `None`: the daemon walks `path`
    /// itself (its own user and root only).
    pub handed: Option<handed::HandedFiles>,
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
    layer: &content::Shared,
    caller: &Caller,
    req: ShareRequest,
    events: mpsc::Sender<ShareEvent>,
) -> Result<Shared, ShareError> {
    let (rings, listed) = (req.rings, req.listed);
    let registry = &layer.registry;
    check_rings(registry, caller, &rings).await?;
    // Handed descriptors count as held until the import is done.
    let (path, items, _held) = items_of(req.path, req.handed, &layer.data_dir, req.name).await?;
    // No prune takes the outboards hashed here until the row lists them.
    let _adding = layer.adding().await;
    let about = About::of(&items);
    events.send(about.scanned()).await.ok();
    let (hash, meta_hash, tags, collection) =
        import(store, layer, items, caller.uid, &events).await?;

    // Same bytes the caller shares already, maybe touched or copied
    // elsewhere: the files just hashed are the sources now, so the share
    // is served again. Another user's share of the same content is that
    // user's row, untouched.
    let sources = about.sources.clone();
    let widened = registry
        .widen_share(caller.uid, &hash, &rings, listed, sources)
        .await?;
    if let Some(share) = widened {
        return Ok(Shared::again(share));
    }
    let replaced = replaced_by(registry, caller, &path, req.inherit).await?;
    let rec = ShareRecord {
        hash,
        name: about.name,
        path,
        size: about.size,
        files: about.files,
        created_at: ringdrop_proto::clock::now(),
        children: std::iter::once(meta_hash)
            .chain(collection.iter().map(|(_, h)| *h))
            .collect(),
        rings: rings_after(rings, &replaced),
        sources: about.sources,
        listed: listed || replaced.iter().any(|old| old.listed),
        owner: caller.uid,
    };
    registry.insert_share(&rec).await?;
    drop(tags);
    for old in &replaced {
        unshare_replaced(store, registry, old).await?;
    }
    Ok(Shared {
        share: rec,
        created: true,
        replaced,
    })
}

/// The items to import: the files handed over (with what holds their
/// descriptors), or those of a scan of `path`.
async fn items_of(
    path: PathBuf,
    handed: Option<handed::HandedFiles>,
    data_dir: &Path,
    name: Option<String>,
) -> Result<(PathBuf, Vec<Item>, Option<handed::HandedFiles>), ShareError> {
    match handed {
        Some(handed) => handed_items(path, handed),
        None => {
            let (path, items) = scan_items(path, data_dir, name).await?;
            Ok((path, items, None))
        }
    }
}

/// The shares a new share of `path` replaces: `caller`'s shares of that
/// path when it `inherit`s them (none otherwise).
async fn replaced_by(
    registry: &Registry,
    caller: &Caller,
    path: &Path,
    inherit: bool,
) -> Result<Vec<ShareRecord>, ShareError> {
    if !inherit {
        return Ok(Vec::new());
    }
    let all = registry.shares().await?;
    Ok(all
        .into_iter()
        .filter(|s| s.path == path && s.owner == caller.uid)
        .collect())
}

/// A share a new one of its path replaced: its row and its store tag go.
async fn unshare_replaced(
    store: &Store,
    registry: &Registry,
    old: &ShareRecord,
) -> Result<(), ShareError> {
    registry.remove_share(old.owner, &old.hash).await?;
    store
        .tags()
        .delete(share_tag(&old.hash, old.owner))
        .await
        .map_err(|e| ShareError::Store(e.into()))?;
    Ok(())
}

impl Shared {
    /// The caller's existing share of the same content, widened.
    fn again(share: ShareRecord) -> Self {
        Self {
            share,
            created: false,
            replaced: Vec::new(),
        }
    }
}

/// What a share's items add up to.
struct About {
    size: u64,
    files: u64,
    /// The top-level name.
    name: String,
    /// The files on disk to watch (handed files are copies in the store:
    /// nothing to watch).
    sources: Vec<Source>,
}

impl About {
    /// The progress event saying what is to be hashed.
    fn scanned(&self) -> ShareEvent {
        ShareEvent::Scanned {
            files: self.files,
            bytes: self.size,
        }
    }

    fn of(items: &[Item]) -> Self {
        Self {
            size: items.iter().map(Item::size).sum(),
            files: items.len() as u64,
            name: items
                .first()
                .map(|f| f.name().split('/').next().unwrap_or(f.name()).to_string())
                .unwrap_or_default(),
            sources: items
                .iter()
                .filter_map(|i| match i {
                    Item::Path(f) => Some(f.source.clone()),
                    Item::Handed { .. } => None,
                })
                .collect(),
        }
    }
}

/// The rings of a new share: those asked for plus those of the shares it
/// replaces. Only content never shared before becomes `open` by default:
/// a path whose share lost its rings stays reachable by nobody.
fn rings_after(mut rings: Vec<String>, replaced: &[ShareRecord]) -> Vec<String> {
    for old in replaced {
        for r in &old.rings {
            if !rings.contains(r) {
                rings.push(r.clone());
            }
        }
    }
    if rings.is_empty() && replaced.is_empty() {
        rings.push(OPEN_RING.to_string());
    }
    rings
}

/// Every ring exists and is `open` or one `caller` controls.
async fn check_rings(
    registry: &Registry,
    caller: &Caller,
    rings: &[String],
) -> Result<(), ShareError> {
    for r in rings {
        if !registry.ring_exists(r).await? {
            return Err(ShareError::UnknownRing(r.clone()));
        }
        if r != OPEN_RING && !caller.controls(registry.owner(Owned::Ring, r.as_bytes()).await?) {
            return Err(ShareError::ForeignRing(r.clone()));
        }
    }
    Ok(())
}

/// Hashes every file (a walked file into the content layer, a handed one
/// copied into the store) and stores the collection under its share tag.
/// Returns root hash, names-blob hash, the store's temp tags and the
/// collection.
async fn import(
    store: &Store,
    layer: &content::Shared,
    files: Vec<Item>,
    owner: u32,
    events: &mpsc::Sender<ShareEvent>,
) -> Result<(Hash, Hash, Vec<TempTag>, Collection), ShareError> {
    let names: Vec<String> = files.iter().map(|f| f.name().to_string()).collect();
    let hashed = Arc::new(AtomicU64::new(0));
    // A child task, so the import's stream is not polled with its timer.
    let _reporter =
        AbortOnDropHandle::new(tokio::spawn(report_hashed(hashed.clone(), events.clone())));
    let importing = futures::stream::iter(files)
        .map(|f| {
            let (store, hashed) = (store.clone(), hashed.clone());
            async move {
                match f {
                    Item::Path(f) => hash_file(layer, &f, &hashed).await.map(|h| (h, None)),
                    Item::Handed { name, file, size } => {
                        let tt = import_handed(&store, name, file, size, &hashed).await?;
                        Ok((tt.hash(), Some(tt)))
                    }
                }
            }
        })
        .buffered(IMPORT_PARALLELISM)
        .try_collect::<Vec<(Hash, Option<TempTag>)>>();
    let imported = importing.await?;
    // The outboards are durable before the share is recorded.
    let dir = layer.data_dir.clone();
    tokio::task::spawn_blocking(move || content::sync_outboards(&dir))
        .await?
        .map_err(|e| ShareError::Import {
            path: layer.data_dir.join(content::DIR),
            msg: format!("cannot write the outboards durably: {e}"),
        })?;
    events
        .send(ShareEvent::Hashed(hashed.load(Ordering::Relaxed)))
        .await
        .ok();
    let (hashes, tags): (Vec<Hash>, Vec<Option<TempTag>>) = imported.into_iter().unzip();
    let (hash, meta_hash, collection) = store_collection(store, names, &hashes, owner).await?;
    Ok((
        hash,
        meta_hash,
        tags.into_iter().flatten().collect(),
        collection,
    ))
}

/// Tells `events` how many bytes are hashed, every 200 ms, until nobody
/// listens (or its task is aborted).
async fn report_hashed(hashed: Arc<AtomicU64>, events: mpsc::Sender<ShareEvent>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    loop {
        tick.tick().await;
        let now = ShareEvent::Hashed(hashed.load(Ordering::Relaxed));
        if events.send(now).await.is_err() {
            return;
        }
    }
}

/// Stores the collection of `names` and their blobs (`hashes`) under
/// `owner`'s share tag, durably: its root hash, the names blob's hash and
/// the collection.
async fn store_collection(
    store: &Store,
    names: Vec<String>,
    hashes: &[Hash],
    owner: u32,
) -> Result<(Hash, Hash, Collection), ShareError> {
    let collection: Collection = names.into_iter().zip(hashes.iter().copied()).collect();
    let meta_hash = collection
        .to_blobs()
        .next()
        .map(|meta| Hash::new(&meta))
        .unwrap_or(Hash::EMPTY);
    let root = collection
        .clone()
        .store(store)
        .await
        .map_err(|e| ShareError::Store(e.into()))?;
    let hash = root.hash();
    store
        .tags()
        .set(share_tag(&hash, owner), root.hash_and_format())
        .await
        .map_err(|e| ShareError::Store(e.into()))?;
    // The tag must survive a crash right after we answer.
    store
        .sync_db()
        .await
        .map_err(|e| ShareError::Store(e.into()))?;
    Ok((hash, meta_hash, collection))
}

/// Finds the shares `caller` controls by full hash or unique hex prefix
/// (another user's shares are not found): one row for an operator, every
/// owner's row of that content for an admin.
pub async fn resolve(
    registry: &Registry,
    caller: &Caller,
    hash_or_prefix: &str,
) -> Result<Vec<ShareRecord>, ShareError> {
    let needle = hash_or_prefix.trim().to_ascii_lowercase();
    if needle.is_empty() {
        return Err(ShareError::NotFound(needle));
    }
    let found: Vec<ShareRecord> = registry
        .shares()
        .await?
        .into_iter()
        .filter(|s| s.hash.to_string().starts_with(&needle) && caller.controls(s.owner))
        .collect();
    match found.first() {
        None => Err(ShareError::NotFound(needle)),
        Some(first) if found.iter().any(|s| s.hash != first.hash) => {
            Err(ShareError::Ambiguous(needle))
        }
        Some(_) => Ok(found),
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
    let rows = resolve(registry, caller, hash_or_prefix).await?;
    for rec in &rows {
        registry.remove_share(rec.owner, &rec.hash).await?;
        store
            .tags()
            .delete(share_tag(&rec.hash, rec.owner))
            .await
            .map_err(|e| ShareError::Store(e.into()))?;
    }
    rows.into_iter()
        .next()
        .ok_or_else(|| ShareError::NotFound(hash_or_prefix.to_string()))
}
