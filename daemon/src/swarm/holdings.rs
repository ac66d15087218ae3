//! What this node holds of ring shares it fetched, served through the
//! content layer ([`crate::content`]): a file on disk (in the transfer's
//! private directory while it is fetched, at its destination after) plus
//! its pre-order outboard in the data dir. A placed file is checked
//! against what it was when it was placed (size, times, device, inode):
//! an edited file is not served.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
};

use bao_tree::ChunkRanges;
use iroh::EndpointAddr;
use iroh_blobs::Hash;

pub use crate::content::NotServed;
use crate::{
    content::ContentFile,
    registry::{HeldRecord, Source},
};

/// One file of a holding.
#[derive(Debug, Clone)]
pub struct HeldFile {
    pub hash: [u8; 32],
    /// Proven size (`None`: not proven yet, nothing served).
    pub size: Option<u64>,
    /// Where its bytes are.
    pub data: PathBuf,
    pub outboard: PathBuf,
    /// Chunks written and verified.
    pub have: ChunkRanges,
    /// A placed file as it was when placed; it is served only while it
    /// still is.
    pub placed: Option<Source>,
}

/// The content of one transfer of a collection, as this node holds it.
#[derive(Debug)]
pub struct Holding {
    pub transfer: u64,
    pub root: Hash,
    /// The ring owner the content came from (the ticket's provider): only
    /// its rosters let this node serve it.
    pub owner: EndpointAddr,
    /// Collection position -> file of the transfer.
    positions: HashMap<u64, usize>,
    files: RwLock<Vec<HeldFile>>,
    /// Chunks the owner is sending now, by collection position (each ask
    /// counted, so two asks of one range end apart).
    coming: Mutex<HashMap<u64, Vec<ChunkRanges>>>,
}

impl Holding {
    pub fn new(
        transfer: u64,
        root: Hash,
        owner: EndpointAddr,
        positions: &[u64],
        files: Vec<HeldFile>,
    ) -> Self {
        Self {
            transfer,
            root,
            owner,
            positions: positions.iter().enumerate().map(|(i, p)| (*p, i)).collect(),
            files: RwLock::new(files),
            coming: Default::default(),
        }
    }

    /// A completed transfer's holding, as recorded.
    pub fn from_record(transfer: u64, rec: HeldRecord) -> Option<Self> {
        let owner = iroh::PublicKey::from_bytes(&rec.owner).ok()?;
        let owner = EndpointAddr::from_parts(
            owner,
            rec.owner_addrs.iter().copied().map(iroh::TransportAddr::Ip),
        );
        let positions: Vec<u64> = rec.files.iter().map(|f| f.0).collect();
        let files = rec
            .files
            .into_iter()
            .map(|(_, hash, size, placed, outboard)| HeldFile {
                hash,
                size: Some(size),
                data: placed.path.clone(),
                outboard,
                have: crate::content::ranges::all_chunks(size),
                placed: Some(placed),
            })
            .collect();
        Some(Self::new(transfer, rec.root, owner, &positions, files))
    }

    /// The writer wrote (and the decoder verified) `ranges` of `file`.
    pub fn wrote(&self, file: usize, ranges: &ChunkRanges) {
        if let Ok(mut files) = self.files.write() {
            if let Some(f) = files.get_mut(file) {
                f.have |= ranges.clone();
            }
        }
    }

    /// `file`'s size is proven.
    pub fn sized(&self, file: usize, size: u64) {
        if let Ok(mut files) = self.files.write() {
            if let Some(f) = files.get_mut(file) {
                f.size = Some(size);
            }
        }
    }

    /// The files now at their destination: served from there, checked
    /// against `placed` first, their outboards at `outboards`.
    pub fn placed(&self, placed: Vec<(usize, Source)>, outboards: &std::path::Path) {
        if let Ok(mut files) = self.files.write() {
            for (file, source) in placed {
                if let Some(f) = files.get_mut(file) {
                    f.data = source.path.clone();
                    f.outboard = outboards.join(file.to_string());
                    f.placed = Some(source);
                }
            }
        }
    }

    /// The record of a completed holding (every file placed).
    pub fn record(&self) -> Option<HeldRecord> {
        let files = self.files.read().ok()?;
        let mut out = Vec::with_capacity(files.len());
        for (position, file) in &self.positions {
            let f = files.get(*file)?;
            out.push((
                *position,
                f.hash,
                f.size?,
                f.placed.clone()?,
                f.outboard.clone(),
            ));
        }
        out.sort_by_key(|f| f.0);
        Some(HeldRecord {
            root: self.root,
            owner: *self.owner.id.as_bytes(),
            owner_addrs: self.owner.ip_addrs().copied().collect(),
            files: out,
        })
    }

    /// The highest collection position held (bounds requests).
    pub fn last_position(&self) -> u64 {
        self.positions.keys().copied().max().unwrap_or(0)
    }

    /// What is held of each position: (position, chunk ranges as a row).
    pub fn have_rows(&self) -> Vec<(u64, Vec<u64>)> {
        let Ok(files) = self.files.read() else {
            return Vec::new();
        };
        let mut rows: Vec<(u64, Vec<u64>)> = self
            .positions
            .iter()
            .filter_map(|(p, i)| {
                let f = files.get(*i)?;
                f.size?;
                (!f.have.is_empty()).then(|| (*p, crate::content::ranges::to_row(&f.have)))
            })
            .collect();
        rows.sort_by_key(|r| r.0);
        rows
    }

    /// The owner is now sending `ranges` of `position` (`on`), or no
    /// longer is.
    pub fn coming(&self, position: u64, ranges: &ChunkRanges, on: bool) {
        let Ok(mut coming) = self.coming.lock() else {
            return;
        };
        let list = coming.entry(position).or_default();
        if on {
            list.push(ranges.clone());
        } else if let Some(i) = list.iter().position(|r| r == ranges) {
            list.swap_remove(i);
        }
        if list.is_empty() {
            coming.remove(&position);
        }
    }

    /// What the owner is sending now: (position, chunk ranges as a row).
    pub fn coming_rows(&self) -> Vec<(u64, Vec<u64>)> {
        let Ok(coming) = self.coming.lock() else {
            return Vec::new();
        };
        coming
            .iter()
            .map(|(p, list)| {
                let all = list
                    .iter()
                    .fold(ChunkRanges::empty(), |acc, r| acc | r.clone());
                (*p, crate::content::ranges::to_row(&all))
            })
            .collect()
    }

    /// The file at `position` if every chunk of `ranges` is held.
    pub fn file_for(&self, position: u64, ranges: &ChunkRanges) -> Result<HeldFile, NotServed> {
        let file = *self.positions.get(&position).ok_or(NotServed::NotHeld)?;
        let files = self.files.read().map_err(|_| NotServed::NotHeld)?;
        let f = files.get(file).ok_or(NotServed::NotHeld)?;
        let size = f.size.ok_or(NotServed::NotHeld)?;
        let wanted = ranges.clone() & crate::content::ranges::all_chunks(size);
        if !(wanted - &f.have).is_empty() {
            return Err(NotServed::NotHeld);
        }
        Ok(f.clone())
    }
}

impl HeldFile {
    /// This file as the content layer serves it (its size proven).
    pub fn content(&self) -> Result<ContentFile, NotServed> {
        Ok(ContentFile {
            hash: self.hash,
            size: self.size.ok_or(NotServed::NotHeld)?,
            data: self.data.clone(),
            outboard: self.outboard.clone(),
            source: self.placed.clone(),
        })
    }
}

/// Everything held, by collection.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    by_root: Arc<RwLock<HashMap<Hash, Vec<Arc<Holding>>>>>,
    /// Why a transfer's content is not re-served, for `transfers show`.
    why_not: Arc<Mutex<HashMap<u64, String>>>,
}

impl Holdings {
    pub fn add(&self, holding: Holding) -> Arc<Holding> {
        let holding = Arc::new(holding);
        if let Ok(mut by_root) = self.by_root.write() {
            let list = by_root.entry(holding.root).or_default();
            list.retain(|h| h.transfer != holding.transfer);
            list.push(holding.clone());
        }
        holding
    }

    /// Forgets what transfer `id` held.
    pub fn remove(&self, id: u64) {
        if let Ok(mut by_root) = self.by_root.write() {
            by_root.retain(|_, list| {
                list.retain(|h| h.transfer != id);
                !list.is_empty()
            });
        }
        if let Ok(mut w) = self.why_not.lock() {
            w.remove(&id);
        }
    }

    pub fn of(&self, root: &Hash) -> Vec<Arc<Holding>> {
        self.by_root
            .read()
            .map(|m| m.get(root).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<Arc<Holding>> {
        self.by_root
            .read()
            .map(|m| m.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    pub fn set_why_not(&self, id: u64, why: String) {
        if let Ok(mut w) = self.why_not.lock() {
            w.insert(id, why);
        }
    }

    /// What `transfers show` says of transfer `id`'s re-serving.
    pub fn describe(&self, id: u64) -> String {
        let held = self
            .by_root
            .read()
            .map(|m| m.values().flatten().any(|h| h.transfer == id))
            .unwrap_or(false);
        if held {
            return "re-served to the members of its ring".into();
        }
        self.why_not
            .lock()
            .ok()
            .and_then(|w| w.get(&id).cloned())
            .unwrap_or_default()
    }
}
