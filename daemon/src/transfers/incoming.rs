//! Fetch in place: where a transfer's bytes are written as they arrive.
//!
//! Every verified leaf goes straight into the transfer's file in its
//! private directory ([`PartialDir`]) beneath the destination (or, for a
//! client that places the files itself, in the data dir), written once; the
//! finished files are renamed into place. The parents that prove the leaves
//! go to an outboard per file in the data dir. What is known to be on disk
//! (synced) is recorded in the registry ([`PartialRecord`]) at checkpoints;
//! after a crash, what arrived after the last checkpoint is recovered by
//! checking the files against their outboards (a hash check: after a
//! `kill -9` the page cache still holds it, after a power cut whatever did
//! not reach the disk fails the check and is fetched again).
//!
//! One writer thread per attempt does the file I/O, so the network side
//! never waits for the disk except when the writer falls behind by
//! [`QUEUE`] items.

use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bao_tree::{
    io::{outboard::PreOrderOutboard, sync::OutboardMut, BaoContentItem},
    BaoTree, ChunkNum, ChunkRanges, TreeNode,
};
use iroh_blobs::store::IROH_BLOCK_SIZE;
use ringdrop_proto::place::{ExportError, PartialDir};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::hosted::Host;
use crate::{
    content::ranges::{all_chunks, covered, from_row, to_row},
    registry::{PartialRecord, Registry},
};

/// Items queued between the network and the writer (leaves are at most
/// 16 KiB: about 4 MiB in flight).
const QUEUE: usize = 256;
/// Bytes written between two checkpoints, and the longest wait.
const CHECKPOINT_BYTES: u64 = 64 << 20;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Dirty files synced one by one at a checkpoint; more: one `syncfs`.
const SYNC_EACH_MAX: usize = 16;
/// Bytes written between two starts of writeback.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Starts writeback of everything dirty in `file` without waiting for it.
/// Only a head start for the sync that follows, which reports errors.
fn start_writeback(file: &File) {
    // SAFETY: plain syscall on an open descriptor; 0, 0: the whole file.
    unsafe {
        libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            0,
            0,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// The chunks the leaf at `offset` of `len` bytes covers.
pub fn leaf_chunks(offset: u64, len: usize) -> ChunkRanges {
    ChunkRanges::from(ChunkNum::full_chunks(offset)..ChunkNum::chunks(offset + len as u64))
}

/// Where a transfer's incoming files and outboards are kept.
#[derive(Debug, Clone)]
pub struct Place {
    pub id: u64,
    pub registry: Registry,
    /// The directory the private directory is made in.
    pub root: PathBuf,
    /// Where a client's private directory is, if it may host the files
    /// (the destination's directory, for a client that places them).
    pub hosted_root: Option<PathBuf>,
    /// The data dir's directory for this transfer's outboards.
    pub outboards: PathBuf,
}

/// Why the incoming files cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum IncomingError {
    #[error(transparent)]
    Place(#[from] ExportError),
    #[error("cannot write the incoming data in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

impl IncomingError {
    pub fn no_space(&self) -> bool {
        match self {
            IncomingError::Place(ExportError::NoSpace { .. }) => true,
            IncomingError::Io { source, .. } => source.raw_os_error() == Some(libc::ENOSPC),
            _ => false,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> IncomingError + '_ {
    move |source| IncomingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A transfer's files on disk, opened: the private directory and what is
/// durably known about it.
#[derive(Debug)]
pub struct Incoming {
    pub place: Place,
    pub dir: Files,
    pub rec: PartialRecord,
}

/// Where the incoming files are: a private directory of the daemon's, or
/// one the owner's client made and opens for it ([`Host`]).
#[derive(Debug)]
pub enum Files {
    Own(PartialDir),
    Hosted {
        host: Host,
        path: PathBuf,
        /// Files the client opened, kept (up to [`HOSTED_KEPT`]) so that
        /// writing goes on if the client goes away.
        kept: std::sync::Mutex<HashMap<usize, File>>,
    },
}

/// Descriptors of hosted files kept open per transfer.
const HOSTED_KEPT: usize = 256;

impl Files {
    pub fn path(&self) -> &Path {
        match self {
            Files::Own(dir) => dir.path(),
            Files::Hosted { path, .. } => path,
        }
    }

    /// The directory of the daemon's own, if the files are in one.
    pub fn own(&self) -> Option<&PartialDir> {
        match self {
            Files::Own(dir) => Some(dir),
            Files::Hosted { .. } => None,
        }
    }

    fn file(&self, file: usize) -> std::io::Result<File> {
        match self {
            Files::Own(dir) => dir.file(file),
            Files::Hosted { host, kept, .. } => {
                let mut kept = kept.lock().map_err(|_| std::io::Error::other("poisoned"))?;
                if let Some(f) = kept.get(&file) {
                    return f.try_clone();
                }
                let f = host.open(file, true)?.ok_or_else(|| {
                    std::io::Error::other("the hosting client did not open the file")
                })?;
                if kept.len() < HOSTED_KEPT {
                    kept.insert(file, f.try_clone()?);
                }
                Ok(f)
            }
        }
    }

    fn open_read(&self, file: usize) -> std::io::Result<Option<File>> {
        match self {
            Files::Own(dir) => dir.open_read(file),
            Files::Hosted { host, .. } => host.open(file, false),
        }
    }

    fn sync_fs(&self) -> std::io::Result<()> {
        match self {
            Files::Own(dir) => dir.sync_fs(),
            Files::Hosted { kept, .. } => {
                let kept = kept.lock().map_err(|_| std::io::Error::other("poisoned"))?;
                // Every hosted file is on the one filesystem of the
                // client's directory.
                let Some(f) = kept.values().next() else {
                    return Ok(());
                };
                // SAFETY: an open descriptor.
                if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(f)) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            }
        }
    }
}

/// Why the incoming files cannot be opened yet.
#[derive(Debug)]
pub enum Opened {
    Ready(Box<Incoming>),
    /// The files are the owner's client's (hosted before a restart) and
    /// no client offers them now.
    AwaitsHost,
}

/// Creates `path` (and its parents) private to this user.
pub fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

impl Incoming {
    /// Opens the transfer's files as a previous run left them, or starts a
    /// new private directory for `files` files: the one `host` offers, if
    /// any, else the daemon's own in `place.root`. Files a client hosted
    /// before are opened only through that client again
    /// ([`Opened::AwaitsHost`] without it; `abandon` starts over instead).
    /// Blocking.
    pub fn open(
        place: Place,
        files: usize,
        host: Option<Host>,
        abandon: bool,
    ) -> Result<Opened, IncomingError> {
        private_dir(&place.outboards).map_err(io_at(&place.outboards))?;
        let hosted = |host: Host, root: PathBuf| Files::Hosted {
            path: root.join(&host.dir),
            host,
            kept: Default::default(),
        };
        if let Some(rec) = place.registry.blocking().partial(place.id)? {
            let was_hosted = rec.root != place.root;
            match (rec.sizes.len() == files, was_hosted, host) {
                (true, false, host) => {
                    if let Some(dir) = PartialDir::open(&rec.root, &rec.dir)? {
                        return Ok(Opened::Ready(Box::new(Self {
                            place,
                            dir: Files::Own(dir),
                            rec,
                        })));
                    }
                    debug!(
                        id = place.id,
                        "the incoming directory is gone; starting it again"
                    );
                    return Self::start(place, files, host);
                }
                (true, true, Some(h)) if h.dir == rec.dir => {
                    let dir = hosted(h, rec.root.clone());
                    return Ok(Opened::Ready(Box::new(Self { place, dir, rec })));
                }
                (true, true, None) if !abandon => return Ok(Opened::AwaitsHost),
                (_, _, host) => {
                    // Another directory, or none: what the old one holds
                    // is its client's to remove; outboards start afresh.
                    debug!(id = place.id, "starting the incoming files again");
                    std::fs::remove_dir_all(&place.outboards).ok();
                    private_dir(&place.outboards).map_err(io_at(&place.outboards))?;
                    return Self::start(place, files, host);
                }
            }
        }
        Self::start(place, files, host)
    }

    /// A new record for `files` files: in the hosted directory, or in a
    /// new private directory of the daemon's.
    fn start(place: Place, files: usize, host: Option<Host>) -> Result<Opened, IncomingError> {
        let (dir, root, name) = match (host, place.hosted_root.clone()) {
            (Some(host), Some(root)) => {
                let name = host.dir.clone();
                let dir = Files::Hosted {
                    path: root.join(&name),
                    host,
                    kept: Default::default(),
                };
                (dir, root, name)
            }
            _ => {
                let dir = PartialDir::create(&place.root)?;
                let name = dir.name();
                (Files::Own(dir), place.root.clone(), name)
            }
        };
        let rec = PartialRecord {
            root,
            dir: name,
            sizes: vec![None; files],
            done: vec![Vec::new(); files],
        };
        place.registry.blocking().put_partial(place.id, &rec)?;
        Ok(Opened::Ready(Box::new(Self { place, dir, rec })))
    }

    /// Adds to the record what a previous run wrote after its last
    /// checkpoint and is still intact: each unfinished file is checked
    /// against its outboard, the good chunks are synced and recorded.
    /// Returns the chunks now known of every file. Blocking.
    pub fn recover(&mut self, hashes: &[[u8; 32]]) -> Result<Vec<ChunkRanges>, IncomingError> {
        let mut have: Vec<ChunkRanges> = self.rec.done.iter().map(|r| from_row(r)).collect();
        let mut found = 0u64;
        for (i, hash) in hashes.iter().enumerate() {
            let Some(size) = self.rec.sizes.get(i).copied().flatten() else {
                continue;
            };
            let missing = all_chunks(size) - &have[i];
            if missing.is_empty() {
                continue;
            }
            let Some(data) = self.dir.open_read(i).map_err(io_at(self.dir.path()))? else {
                continue;
            };
            let tree = BaoTree::new(size, IROH_BLOCK_SIZE);
            let root = blake3::Hash::from_bytes(*hash);
            let valid: Vec<_> = if tree.outboard_size() == 0 {
                let outboard = PreOrderOutboard {
                    root,
                    tree,
                    data: Vec::<u8>::new(),
                };
                bao_tree::io::sync::valid_ranges(outboard, &data, &missing)
                    .into_iter()
                    .collect()
            } else {
                let path = self.place.outboards.join(i.to_string());
                let Ok(ob) = File::open(&path) else { continue };
                let outboard = PreOrderOutboard {
                    root,
                    tree,
                    data: ob,
                };
                bao_tree::io::sync::valid_ranges(outboard, &data, &missing)
                    .into_iter()
                    .collect()
            };
            let mut good = ChunkRanges::empty();
            for r in valid.into_iter().map_while(Result::ok) {
                good |= ChunkRanges::from(r);
            }
            if good.is_empty() {
                continue;
            }
            // Intact now (in the page cache, or on disk): durable before
            // it is recorded.
            data.sync_data().map_err(io_at(self.dir.path()))?;
            found += covered(&good, size);
            have[i] |= good;
            self.rec.done[i] = to_row(&have[i]);
        }
        if found > 0 {
            debug!(
                id = self.place.id,
                bytes = found,
                "recovered data written after the last checkpoint"
            );
            self.place
                .registry
                .blocking()
                .put_partial(self.place.id, &self.rec)?;
        }
        Ok(have)
    }

    /// Removes a transfer's incoming files, outboards and record, whatever
    /// state they are in. Blocking.
    pub fn discard(place: &Place) {
        if let Ok(Some(rec)) = place.registry.blocking().partial(place.id) {
            if let Ok(Some(dir)) = PartialDir::open(&rec.root, &rec.dir) {
                if let Err(e) = dir.remove() {
                    warn!(
                        id = place.id,
                        "cannot remove {}: {e}",
                        rec.root.join(&rec.dir).display()
                    );
                }
            }
        }
        if place.outboards.exists() {
            if let Err(e) = std::fs::remove_dir_all(&place.outboards) {
                warn!(
                    id = place.id,
                    "cannot remove {}: {e}",
                    place.outboards.display()
                );
            }
        }
        if let Err(e) = place.registry.blocking().remove_partial(place.id) {
            warn!(id = place.id, "cannot forget the incoming files: {e}");
        }
    }
}

/// What the network side hands the writer.
#[derive(Debug)]
pub enum Item {
    /// The size is proven (the blob's last chunk was verified).
    Size { file: usize, size: u64 },
    /// Record the sizes proven so far now: without them nothing written
    /// later could be recovered after a crash.
    RecordSizes,
    Parent {
        file: usize,
        node: TreeNode,
        pair: (blake3::Hash, blake3::Hash),
    },
    Leaf {
        file: usize,
        offset: u64,
        data: bytes::Bytes,
    },
}

impl Item {
    pub fn from_content(file: usize, item: BaoContentItem) -> Self {
        match item {
            BaoContentItem::Parent(p) => Item::Parent {
                file,
                node: p.node,
                pair: p.pair,
            },
            BaoContentItem::Leaf(l) => Item::Leaf {
                file,
                offset: l.offset,
                data: l.data,
            },
        }
    }
}

/// The network side's handle on a running writer.
#[derive(Debug)]
pub struct Sink {
    tx: mpsc::Sender<Item>,
    done: oneshot::Receiver<Result<Incoming, IncomingError>>,
}

impl Sink {
    /// Queues an item; false once the writer stopped (its error comes
    /// from [`Self::close`]).
    pub async fn send(&self, item: Item) -> bool {
        self.tx.send(item).await.is_ok()
    }

    /// Lets the writer write what is queued, sync it and record it; the
    /// files as they stand then, or why the writer stopped.
    pub async fn close(self) -> Result<Incoming, IncomingError> {
        drop(self.tx);
        match self.done.await {
            Ok(r) => r,
            Err(_) => Err(IncomingError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other("the writer thread ended unexpectedly"),
            }),
        }
    }
}

/// One open file of the writer.
struct Open {
    data: File,
    outboard: Option<PreOrderOutboard<File>>,
}

/// The writer thread's state.
struct Writer {
    incoming: Incoming,
    hashes: std::sync::Arc<Vec<[u8; 32]>>,
    open: HashMap<usize, Open>,
    current: Option<usize>,
    /// Verified, written, not yet synced.
    pending: HashMap<usize, ChunkRanges>,
    dirty: BTreeSet<usize>,
    sizes_changed: bool,
    unsynced: u64,
    /// Bytes written since writeback was last started.
    unkicked: u64,
    last_sync: Instant,
    /// Parents that arrived before their file's size was proven (so
    /// before its outboard could be made): saved once it is.
    early: HashMap<usize, Vec<Parent>>,
    /// What this node holds of the content, kept current for re-serving.
    holding: Option<std::sync::Arc<crate::swarm::Holding>>,
}

/// A parent node of a file's tree and its two children's hashes.
type Parent = (TreeNode, (blake3::Hash, blake3::Hash));

/// Early parents kept per file at most (a first request proves a size
/// with two short ranges: a few dozen).
const EARLY_MAX: usize = 512;

/// Starts the writer of one attempt.
/// `writing` is held until the writer has recorded what it wrote, also
/// when the attempt is dropped half way (a cancel waits for it).
pub fn start(
    incoming: Incoming,
    hashes: std::sync::Arc<Vec<[u8; 32]>>,
    writing: &std::sync::Arc<tokio::sync::Mutex<()>>,
    holding: Option<std::sync::Arc<crate::swarm::Holding>>,
) -> Sink {
    let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
    // Free: one attempt at a time per transfer, and its writer ended
    // before the next attempt starts (`close` waits for it).
    let guard = writing.clone().try_lock_owned().ok();
    let (done_tx, done) = oneshot::channel();
    let id = incoming.place.id;
    let spawned = std::thread::Builder::new()
        .name(format!("rdrop-write-{id}"))
        .spawn(move || {
            let mut w = Writer {
                incoming,
                hashes,
                open: HashMap::new(),
                current: None,
                pending: HashMap::new(),
                dirty: BTreeSet::new(),
                sizes_changed: false,
                unsynced: 0,
                unkicked: 0,
                last_sync: Instant::now(),
                early: HashMap::new(),
                holding,
            };
            let mut result = Ok(());
            while let Some(item) = rx.blocking_recv() {
                if let Err(e) = w.take(item) {
                    result = Err(e);
                    break;
                }
            }
            // Whatever was written is made durable and recorded, even
            // after a failure (a full disk stops new writes, not syncs).
            rx.close();
            let synced = w.checkpoint();
            let result = result.and(synced).map(|()| w.incoming);
            done_tx.send(result).ok();
            drop(guard);
        });
    if let Err(e) = spawned {
        let (tx2, done2) = oneshot::channel();
        tx2.send(Err(IncomingError::Io {
            path: PathBuf::new(),
            source: e,
        }))
        .ok();
        return Sink { tx, done: done2 };
    }
    Sink { tx, done }
}

impl Writer {
    fn take(&mut self, item: Item) -> Result<(), IncomingError> {
        match item {
            Item::Size { file, size } => {
                if let Some(s) = self.incoming.rec.sizes.get_mut(file) {
                    *s = Some(size);
                    self.sizes_changed = true;
                }
                // Reopened with its size and outboard from now on.
                let has_outboard = BaoTree::new(size, IROH_BLOCK_SIZE).outboard_size() > 0;
                if has_outboard && self.open.contains_key(&file) {
                    let open = self.open_file(file)?;
                    self.open.insert(file, open);
                }
                if let Some(early) = self.early.remove(&file).filter(|_| has_outboard) {
                    for (node, pair) in early {
                        self.save_parent(file, node, pair)?;
                    }
                }
                if let Some(h) = &self.holding {
                    h.sized(file, size);
                }
            }
            Item::RecordSizes => {
                // Sizes are facts about the content, not data written: no
                // sync needed before they are recorded.
                let place = &self.incoming.place;
                place
                    .registry
                    .blocking()
                    .put_partial(place.id, &self.incoming.rec)?;
            }
            Item::Parent { file, node, pair } => self.save_parent(file, node, pair)?,
            Item::Leaf { file, offset, data } => {
                let path = self.incoming.dir.path().to_path_buf();
                self.file(file)?
                    .data
                    .write_all_at(&data, offset)
                    .map_err(io_at(&path))?;
                let chunks = leaf_chunks(offset, data.len());
                if let Some(h) = &self.holding {
                    h.wrote(file, &chunks);
                }
                *self.pending.entry(file).or_insert_with(ChunkRanges::empty) |= chunks;
                self.dirty.insert(file);
                self.unsynced += data.len() as u64;
                self.unkicked += data.len() as u64;
                if self.unkicked >= WRITEBACK_EVERY {
                    // Hand what is dirty to writeback now, so that the
                    // checkpoint's sync finds it on its way to the disk.
                    self.unkicked = 0;
                    if let Some(open) = self.open.get(&file) {
                        start_writeback(&open.data);
                    }
                }
                if self.unsynced >= CHECKPOINT_BYTES || self.last_sync.elapsed() >= CHECKPOINT_EVERY
                {
                    self.checkpoint()?;
                }
            }
        }
        Ok(())
    }

    /// Saves a parent into `file`'s outboard, or keeps it until the size
    /// is proven and the outboard exists.
    fn save_parent(
        &mut self,
        file: usize,
        node: TreeNode,
        pair: (blake3::Hash, blake3::Hash),
    ) -> Result<(), IncomingError> {
        let open = self.file(file)?;
        match open.outboard.as_mut() {
            Some(ob) => ob.save(node, &pair).map_err(|e| IncomingError::Io {
                path: PathBuf::from("outboard"),
                source: e,
            }),
            None => {
                let sized = self
                    .incoming
                    .rec
                    .sizes
                    .get(file)
                    .copied()
                    .flatten()
                    .is_some();
                let early = self.early.entry(file).or_default();
                if !sized && early.len() < EARLY_MAX {
                    early.push((node, pair));
                }
                Ok(())
            }
        }
    }

    /// File `file`, opened (and created at its size, once that is proven)
    /// on first use.
    /// Only the file being written and dirty ones (up to
    /// [`SYNC_EACH_MAX`], to sync each) stay open.
    fn file(&mut self, file: usize) -> Result<&mut Open, IncomingError> {
        if self.current != Some(file) {
            if let Some(prev) = self.current {
                if !self.dirty.contains(&prev) || self.dirty.len() > SYNC_EACH_MAX {
                    self.open.remove(&prev);
                }
            }
            self.current = Some(file);
        }
        if !self.open.contains_key(&file) {
            let open = self.open_file(file)?;
            self.open.insert(file, open);
        }
        Ok(self.open.get_mut(&file).expect("inserted above"))
    }

    fn open_file(&self, file: usize) -> Result<Open, IncomingError> {
        let dir = self.incoming.dir.path();
        // A size a header declares is not proven until the blob's last
        // chunk is: nothing is sized by it (a peer could declare exabytes).
        let size = self.incoming.rec.sizes.get(file).copied().flatten();
        let data = self.incoming.dir.file(file).map_err(io_at(dir))?;
        let Some(size) = size else {
            return Ok(Open {
                data,
                outboard: None,
            });
        };
        // Unwritten ranges read as zeros (and fail any check), not as EOF.
        if data.metadata().map_err(io_at(dir))?.len() < size {
            data.set_len(size).map_err(io_at(dir))?;
        }
        let tree = BaoTree::new(size, IROH_BLOCK_SIZE);
        let outboard = if tree.outboard_size() > 0 {
            let path = self.incoming.place.outboards.join(file.to_string());
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_at(&path))?;
            if f.metadata().map_err(io_at(&path))?.len() < tree.outboard_size() {
                f.set_len(tree.outboard_size()).map_err(io_at(&path))?;
            }
            let hash = self.hashes.get(file).copied().unwrap_or_default();
            Some(PreOrderOutboard {
                root: blake3::Hash::from_bytes(hash),
                tree,
                data: f,
            })
        } else {
            None
        };
        Ok(Open { data, outboard })
    }

    /// Makes what was written durable, then records it.
    fn checkpoint(&mut self) -> Result<(), IncomingError> {
        self.last_sync = Instant::now();
        if self.pending.is_empty() && !self.sizes_changed {
            return Ok(());
        }
        let dir = self.incoming.dir.path().to_path_buf();
        let all_open = self.dirty.iter().all(|f| self.open.contains_key(f));
        if self.dirty.len() <= SYNC_EACH_MAX && all_open {
            for f in &self.dirty {
                let open = &self.open[f];
                open.data.sync_data().map_err(io_at(&dir))?;
                if let Some(ob) = &open.outboard {
                    ob.data
                        .sync_data()
                        .map_err(io_at(&self.incoming.place.outboards))?;
                }
            }
        } else {
            self.incoming.dir.sync_fs().map_err(io_at(&dir))?;
            let obs = File::open(&self.incoming.place.outboards)
                .map_err(io_at(&self.incoming.place.outboards))?;
            // SAFETY: an open descriptor.
            if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&obs)) } != 0 {
                return Err(io_at(&self.incoming.place.outboards)(
                    std::io::Error::last_os_error(),
                ));
            }
        }
        let rec = &mut self.incoming.rec;
        for (file, ranges) in self.pending.drain() {
            if let Some(row) = rec.done.get_mut(file) {
                *row = to_row(&(from_row(row) | ranges));
            }
        }
        self.incoming
            .place
            .registry
            .blocking()
            .put_partial(self.incoming.place.id, rec)?;
        self.dirty.clear();
        self.sizes_changed = false;
        self.unsynced = 0;
        let current = self.current;
        self.open.retain(|f, _| Some(*f) == current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_covers_its_chunks() {
        assert_eq!(
            leaf_chunks(16384, 100),
            ChunkRanges::from(ChunkNum(16)..ChunkNum(17))
        );
    }
}
