//! The content layer: what this node serves of shared and fetched files
//! alike is a file on disk (reached by a descriptor opened without
//! following links and checked against its recorded size, times, device
//! and inode) plus its pre-order outboard in the data dir, read through
//! bao-tree's validated encoder (every leaf and parent is hashed against
//! the root as it is read, so an edit stops the response before a wrong
//! byte is sent).
//!
//! Shared files are hashed here with every core ([`hash`]); their
//! outboards live under `content/` in the data dir, named by hash (one per
//! content, whichever share or path it came from). Fetched files keep
//! theirs beside the transfer (`swarm::holdings`).

pub mod hash;
pub mod ranges;

use std::{
    collections::HashMap,
    fs::File,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::atomic::AtomicU64,
};

use bao_tree::{io::outboard::PreOrderOutboard, BaoTree, ChunkRanges};
use iroh_blobs::{store::IROH_BLOCK_SIZE, Hash};
use tokio::sync::mpsc;

use crate::registry::{source_of, Registry, ShareRecord, Source};

/// Where shared files' outboards are kept, under the data dir.
pub const DIR: &str = "content";

/// One file as the content layer serves it.
#[derive(Debug, Clone)]
pub struct ContentFile {
    pub hash: [u8; 32],
    pub size: u64,
    /// Where its bytes are.
    pub data: PathBuf,
    pub outboard: PathBuf,
    /// What the file must still be to be served (`None`: a file in the
    /// daemon's own private directory, being fetched).
    pub source: Option<Source>,
}

/// Why a file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum NotServed {
    #[error("not held")]
    NotHeld,
    #[error("the file changed since it was hashed")]
    Changed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ContentFile {
    /// Encodes `ranges` of this file as a response carries it (size, then
    /// the pre-order encoding) into `out`, validating every byte against
    /// the hash as it is read. Blocking.
    pub fn encode(&self, ranges: &ChunkRanges, mut out: impl Write) -> Result<(), NotServed> {
        let data = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.data)?;
        if let Some(source) = &self.source {
            if source_of(&self.data, &data.metadata()?) != *source {
                return Err(NotServed::Changed);
            }
        }
        let tree = BaoTree::new(self.size, IROH_BLOCK_SIZE);
        let root = blake3::Hash::from_bytes(self.hash);
        out.write_all(&self.size.to_le_bytes())?;
        let encoded = if tree.outboard_size() == 0 {
            let outboard = PreOrderOutboard {
                root,
                tree,
                data: Vec::<u8>::new(),
            };
            bao_tree::io::sync::encode_ranges_validated(&data, outboard, ranges, &mut out)
        } else {
            let ob = File::open(&self.outboard)?;
            let outboard = PreOrderOutboard {
                root,
                tree,
                data: ob,
            };
            bao_tree::io::sync::encode_ranges_validated(&data, outboard, ranges, &mut out)
        };
        encoded.map_err(|e| match e {
            bao_tree::io::EncodeError::Io(e) => NotServed::Io(e),
            _ => NotServed::Changed,
        })
    }

    /// Encodes `ranges` on a blocking thread: the pieces as they are made
    /// (at most a few ahead of the reader) and the encoding's end. Dropping
    /// the receiver stops the encoding.
    pub fn stream(
        self,
        ranges: ChunkRanges,
    ) -> (
        mpsc::Receiver<bytes::Bytes>,
        tokio::task::JoinHandle<Result<(), NotServed>>,
    ) {
        let (tx, rx) = mpsc::channel::<bytes::Bytes>(8);
        let encoding = tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter {
                tx,
                buf: Vec::with_capacity(PIECE),
            };
            self.encode(&ranges, &mut out)
                .and_then(|()| out.flush().map_err(NotServed::Io))
        });
        (rx, encoding)
    }
}

/// Bytes handed from the encoding thread to the stream at once.
const PIECE: usize = 64 * 1024;

/// A `Write` that hands full pieces to the async side.
struct ChannelWriter {
    tx: mpsc::Sender<bytes::Bytes>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(bytes::Bytes::from(piece))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the peer went away"))
    }
}

/// Where the outboard of shared content `hash` is.
pub fn outboard_path(data_dir: &Path, hash: &Hash) -> PathBuf {
    data_dir.join(DIR).join(hash.to_hex().as_str())
}

/// Hashes a shared file into the layer: its hash, its outboard written
/// under `data_dir` (durable after [`sync_outboards`]). `file` was opened without following links;
/// it must still be `source` after hashing, or the share would record
/// bytes that are not the file's. Blocking.
pub fn add_file(
    data_dir: &Path,
    file: &File,
    source: &Source,
    progress: &AtomicU64,
) -> std::io::Result<Hash> {
    let unchanged = || -> std::io::Result<()> {
        if source_of(&source.path, &file.metadata()?) == *source {
            return Ok(());
        }
        Err(std::io::Error::other(
            "it changed while being shared; share it again when it is written",
        ))
    };
    unchanged()?;
    if source.size <= hash::BLOCK {
        let hash = hash::hash_block(file, source.size, progress)?;
        unchanged()?;
        return Ok(Hash::from(hash));
    }
    let dir = data_dir.join(DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let tmp = dir.join(format!(".new-{:016x}", rand::random::<u64>()));
    let outboard = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hashed = hash::hash_file(file, source.size, &outboard, threads, progress)
        .and_then(|h| unchanged().map(|()| Hash::from(h)));
    let hash = match hashed {
        Ok(hash) => hash,
        Err(e) => {
            std::fs::remove_file(&tmp).ok();
            return Err(e);
        }
    };
    std::fs::rename(&tmp, outboard_path(data_dir, &hash))?;
    Ok(hash)
}

/// Makes the outboards written by [`add_file`] durable, all at once (one
/// `syncfs` of their filesystem, not a sync per file: a share of a
/// thousand files would wait for a thousand). Blocking.
pub fn sync_outboards(data_dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(dir) = File::open(data_dir.join(DIR)) else {
        return Ok(());
    };
    // SAFETY: syncfs takes a descriptor we own for the whole call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Shared files in the layer: finding them, and pruning outboards no
/// share lists.
#[derive(Debug, Clone)]
pub struct Shared {
    pub registry: Registry,
    pub data_dir: PathBuf,
    /// Held (read) from a share's hashing until its row is in the
    /// registry, (write) while pruning: a prune never takes an outboard a
    /// share is about to list.
    adding: std::sync::Arc<tokio::sync::RwLock<()>>,
}

impl Shared {
    pub fn new(registry: Registry, data_dir: PathBuf) -> Self {
        Self {
            registry,
            data_dir,
            adding: Default::default(),
        }
    }

    /// Held while a share is hashed and recorded.
    pub async fn adding(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.adding.read().await
    }

    /// Removes the outboards no share lists any more (and what an
    /// interrupted share left).
    pub async fn prune(&self) {
        self.prune_with(None).await;
    }

    /// [`Self::prune`] at start-up, with the share rows the caller read
    /// (no share can be under way before the daemon serves requests).
    pub async fn prune_at_start(&self, shares: Vec<ShareRecord>) {
        self.prune_with(Some(shares)).await;
    }

    async fn prune_with(&self, shares: Option<Vec<ShareRecord>>) {
        let _alone = self.adding.write().await;
        let this = self.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            let shares = match shares {
                Some(shares) => shares,
                None => this
                    .registry
                    .blocking()
                    .shares()
                    .map_err(std::io::Error::other)?,
            };
            this.remove_unlisted(&shares)
        });
        match pruned.await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(n, "outboards of unshared content removed"),
            Ok(Err(e)) => tracing::warn!("cannot prune outboards: {e}"),
            _ => {}
        }
    }

    /// The shares a request for `roots` is served from, read once per
    /// request: the shares of each root, or, for a raw blob, the shares
    /// that contain it. Blocking.
    pub fn listed(&self, roots: &[Hash]) -> Listed {
        let reg = self.registry.blocking();
        let mut collections: Vec<Hash> = Vec::new();
        let mut rows = Vec::new();
        for root in roots {
            if collections.contains(root) {
                continue;
            }
            let own = reg.shares_of(root).unwrap_or_default();
            if !own.is_empty() {
                collections.push(*root);
                rows.extend(own);
                continue;
            }
            for c in reg.parents(root).unwrap_or_default() {
                if !collections.contains(&c) {
                    collections.push(c);
                    rows.extend(reg.shares_of(&c).unwrap_or_default());
                }
            }
        }
        // Rows of walked shares only: handed copies have no sources.
        rows.retain(|r| r.sources.len() + 1 == r.children.len());
        let mut files: HashMap<Hash, Vec<Source>> = HashMap::new();
        for row in rows {
            for (child, source) in row.children.into_iter().skip(1).zip(row.sources) {
                files.entry(child).or_default().push(source);
            }
        }
        Listed {
            files,
            data_dir: self.data_dir.clone(),
        }
    }

    /// A listing of no share (every blob is the store's).
    pub fn nothing(&self) -> Listed {
        Listed {
            files: HashMap::new(),
            data_dir: self.data_dir.clone(),
        }
    }

    fn remove_unlisted(&self, shares: &[ShareRecord]) -> std::io::Result<usize> {
        let dir = self.data_dir.join(DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(0);
        };
        let live: std::collections::HashSet<String> = shares
            .iter()
            .flat_map(|s| s.children.iter().map(|h| h.to_hex().to_string()))
            .collect();
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale_tmp = name.starts_with(".new-");
            if (stale_tmp || !live.contains(&name)) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The files of the shares one request is served from.
#[derive(Debug)]
pub struct Listed {
    files: HashMap<Hash, Vec<Source>>,
    data_dir: PathBuf,
}

impl Listed {
    /// Blob `hash` as the content layer has it: a source still as it was
    /// shared, and its outboard (none is needed for one block). None: the
    /// blob is the store's (hash sequences and names, handed copies,
    /// shares made before the layer). Blocking.
    pub fn file(&self, hash: &Hash) -> Option<ContentFile> {
        let sources = self.files.get(hash)?;
        let outboard = outboard_path(&self.data_dir, hash);
        let has_outboard = outboard.exists();
        sources
            .iter()
            .filter(|s| s.size <= hash::BLOCK || has_outboard)
            .find(|s| {
                std::fs::symlink_metadata(&s.path).is_ok_and(|m| source_of(&s.path, &m) == **s)
            })
            .map(|source| ContentFile {
                hash: *hash.as_bytes(),
                size: source.size,
                data: source.path.clone(),
                outboard,
                source: Some(source.clone()),
            })
    }
}
