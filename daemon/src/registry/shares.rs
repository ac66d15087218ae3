//! Shares, the blob-parent index the gate reads, and served-byte counters.

use iroh_blobs::Hash;
use redb::{ReadableMultimapTable, ReadableTable, ReadableTableMetadata};

use super::*;

/// The node's counters (`Tables::counts`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub shares: u64,
    pub served: u64,
    pub transfers: u64,
    /// Transfers not finished (queued, running, paused, ready, failed
    /// before its end was recorded...).
    pub active: u64,
    /// Transfers by state, indexed by `TransferState as usize`.
    pub by_state: [u64; TransferState::ALL.len()],
}

/// The keys of every owner's row of `hash`.
fn rows_of(hash: &Hash) -> std::ops::RangeInclusive<(&[u8; 32], u32)> {
    (hash.as_bytes(), 0)..=(hash.as_bytes(), u32::MAX)
}

impl Tables {
    /// The node's counters, from one read transaction: share rows (none
    /// decoded), bytes served, transfers unfinished and in all.
    pub fn counts(&self) -> Result<Counts> {
        let tx = self.read()?;
        let shares = tx.open_table(SHARES)?.len()?;
        let meta = tx.open_table(META)?;
        let served = meta.get(KEY_SERVED_TOTAL)?.map(|v| v.value()).unwrap_or(0);
        let transfers = tx.open_table(TRANSFERS)?;
        let mut active = 0;
        let mut by_state = [0; TransferState::ALL.len()];
        for item in transfers.iter()? {
            let rec: TransferRecord = decode_row(item?.1.value())?;
            active += u64::from(!rec.state.is_terminal());
            by_state[rec.state as usize] += 1;
        }
        Ok(Counts {
            shares,
            served,
            transfers: transfers.len()?,
            active,
            by_state,
        })
    }

    /// Records a new share (of `rec.owner`), in one commit.
    pub fn insert_share(&self, rec: &ShareRecord) -> Result<()> {
        let tx = self.write()?;
        put_share_in(&tx, rec)?;
        tx.commit()?;
        self.shares_changed();
        Ok(())
    }

    /// Adds `rings` (and `listed`) to `owner`'s share `hash` and takes
    /// `sources` as its sources, in one transaction, so a ring removed
    /// meanwhile is not written back; `None` if there is no such share.
    pub fn widen_share(
        &self,
        owner: u32,
        hash: &Hash,
        rings: &[String],
        listed: bool,
        sources: Vec<Source>,
    ) -> Result<Option<ShareRecord>> {
        let tx = self.write()?;
        let found: Option<ShareRecord> = {
            let shares = tx.open_table(SHARES)?;
            let v = shares.get((hash.as_bytes(), owner))?;
            v.map(|v| decode_row(v.value())).transpose()?
        };
        let Some(mut rec) = found else {
            return Ok(None);
        };
        let before = rec.clone();
        for r in rings {
            if !rec.rings.contains(r) {
                rec.rings.push(r.clone());
            }
        }
        rec.listed |= listed;
        rec.sources = sources;
        if rec != before {
            put_share_in(&tx, &rec)?;
            tx.commit()?;
            self.shares_changed();
        }
        Ok(Some(rec))
    }

    /// Every file the blob `hash` was imported from by reference, as it
    /// was then (kept after unsharing: the store keeps the paths too).
    pub fn blob_sources(&self, hash: &Hash) -> Result<Vec<Source>> {
        let tx = self.read()?;
        let table = tx.open_multimap_table(BLOB_SOURCES)?;
        let mut out = Vec::new();
        for v in table.get(hash.as_bytes())? {
            out.push(decode_row(v?.value())?);
        }
        Ok(out)
    }

    /// `owner`'s share of collection `hash`.
    pub fn share_of(&self, owner: u32, hash: &Hash) -> Result<Option<ShareRecord>> {
        let tx = self.read()?;
        let shares = tx.open_table(SHARES)?;
        match shares.get((hash.as_bytes(), owner))? {
            Some(v) => Ok(Some(decode_row(v.value())?)),
            None => Ok(None),
        }
    }

    /// Every owner's share of collection `hash` (none: not shared).
    pub fn shares_of(&self, hash: &Hash) -> Result<Vec<ShareRecord>> {
        let tx = self.read()?;
        let shares = tx.open_table(SHARES)?;
        let mut out = Vec::new();
        for item in shares.range(rows_of(hash))? {
            let (_, v) = item?;
            out.push(decode_row::<ShareRecord>(v.value())?);
        }
        Ok(out)
    }

    /// All shares, oldest first.
    pub fn shares(&self) -> Result<Vec<ShareRecord>> {
        let tx = self.read()?;
        let shares = tx.open_table(SHARES)?;
        let mut out = Vec::new();
        for item in shares.iter()? {
            let (_, v) = item?;
            out.push(decode_row::<ShareRecord>(v.value())?);
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    /// Removes `owner`'s share `hash` (and index entries nobody else's
    /// share of it needs); returns it if it existed.
    pub fn remove_share(&self, owner: u32, hash: &Hash) -> Result<Option<ShareRecord>> {
        let tx = self.write()?;
        let removed = {
            let mut shares = tx.open_table(SHARES)?;
            let removed = match shares.remove((hash.as_bytes(), owner))? {
                Some(v) => Some(decode_row::<ShareRecord>(v.value())?),
                None => None,
            };
            drop(shares);
            if let Some(rec) = &removed {
                unindex_share_in(&tx, rec)?;
                tx.open_table(NO_RESERVE)?
                    .remove((hash.as_bytes(), owner))?;
            }
            removed
        };
        tx.commit()?;
        self.shares_changed();
        Ok(removed)
    }

    /// Gives share `hash` of `from` to `to`, in one transaction; false if
    /// `from` has no such share or `to` has one already.
    pub fn give_share(&self, hash: &Hash, from: u32, to: u32) -> Result<bool> {
        let tx = self.write()?;
        let given = {
            let mut shares = tx.open_table(SHARES)?;
            if shares.get((hash.as_bytes(), to))?.is_some() {
                false
            } else {
                let row = match shares.remove((hash.as_bytes(), from))? {
                    Some(v) => Some(decode_row::<ShareRecord>(v.value())?),
                    None => None,
                };
                match row {
                    Some(mut rec) => {
                        rec.owner = to;
                        shares.insert((hash.as_bytes(), to), encode_row(&rec)?.as_slice())?;
                        // Its "not re-served" goes with it.
                        let mut off = tx.open_table(NO_RESERVE)?;
                        if off.remove((hash.as_bytes(), from))?.is_some() {
                            off.insert((hash.as_bytes(), to), 1)?;
                        }
                        true
                    }
                    None => false,
                }
            }
        };
        tx.commit()?;
        self.shares_changed();
        Ok(given)
    }

    /// Collection roots that list `child` among their blobs.
    pub fn parents(&self, child: &Hash) -> Result<Vec<Hash>> {
        let tx = self.read()?;
        let parents = tx.open_multimap_table(BLOB_PARENTS)?;
        let mut out = Vec::new();
        for v in parents.get(child.as_bytes())? {
            out.push(Hash::from(*v?.value()));
        }
        Ok(out)
    }

    /// Adds `bytes` served for the share `root` (if any) and to the total.
    pub fn add_served(&self, root: Option<Hash>, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let tx = self.write()?;
        {
            let mut meta = tx.open_table(META)?;
            let total = meta.get(KEY_SERVED_TOTAL)?.map(|v| v.value()).unwrap_or(0);
            meta.insert(KEY_SERVED_TOTAL, total.saturating_add(bytes))?;
            if let Some(root) = root {
                let mut served = tx.open_table(SERVED)?;
                let cur = served.get(root.as_bytes())?.map(|v| v.value()).unwrap_or(0);
                served.insert(root.as_bytes(), cur.saturating_add(bytes))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Payload bytes served in total.
    pub fn served_total(&self) -> Result<u64> {
        let tx = self.read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(KEY_SERVED_TOTAL)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Payload bytes served, by share, from one read (a listing asks for
    /// every share's at once).
    pub fn served_by_share(&self) -> Result<std::collections::HashMap<Hash, u64>> {
        let tx = self.read()?;
        let served = tx.open_table(SERVED)?;
        let mut out = std::collections::HashMap::new();
        for item in served.iter()? {
            let (k, v) = item?;
            out.insert(Hash::from_bytes(*k.value()), v.value());
        }
        Ok(out)
    }

    /// Payload bytes served for one share.
    pub fn served(&self, root: &Hash) -> Result<u64> {
        let tx = self.read()?;
        let served = tx.open_table(SERVED)?;
        Ok(served.get(root.as_bytes())?.map(|v| v.value()).unwrap_or(0))
    }
}

/// Writes a share row and its index entries inside `tx`.
pub(super) fn put_share_in(tx: &redb::WriteTransaction, rec: &ShareRecord) -> Result<()> {
    let mut shares = tx.open_table(SHARES)?;
    shares.insert(
        (rec.hash.as_bytes(), rec.owner),
        encode_row(rec)?.as_slice(),
    )?;
    let mut parents = tx.open_multimap_table(BLOB_PARENTS)?;
    for child in &rec.children {
        parents.insert(child.as_bytes(), rec.hash.as_bytes())?;
    }
    record_sources(&mut tx.open_multimap_table(BLOB_SOURCES)?, rec)
}

/// Drops the index entries of a share row removed inside `tx`, unless
/// another owner's share of the same content still needs them.
pub(super) fn unindex_share_in(tx: &redb::WriteTransaction, rec: &ShareRecord) -> Result<()> {
    let shares = tx.open_table(SHARES)?;
    if shares.range(rows_of(&rec.hash))?.next().is_some() {
        return Ok(());
    }
    let mut parents = tx.open_multimap_table(BLOB_PARENTS)?;
    for child in &rec.children {
        parents.remove(child.as_bytes(), rec.hash.as_bytes())?;
    }
    Ok(())
}

/// Records the sources of `rec`'s files under their blob hashes, one row
/// per path (a newer record of a path replaces the older one). A share's
/// children are its names blob, then its files in the order of its
/// sources.
pub(super) fn record_sources(
    table: &mut redb::MultimapTable<&[u8; 32], &[u8]>,
    rec: &ShareRecord,
) -> Result<()> {
    for (src, child) in rec.sources.iter().zip(rec.children.iter().skip(1)) {
        let mut stale = Vec::new();
        for v in table.get(child.as_bytes())? {
            let bytes = v?.value().to_vec();
            if decode_row::<Source>(&bytes).is_ok_and(|old| old.path == src.path) {
                stale.push(bytes);
            }
        }
        for bytes in stale {
            table.remove(child.as_bytes(), bytes.as_slice())?;
        }
        table.insert(child.as_bytes(), encode_row(src)?.as_slice())?;
    }
    Ok(())
}

impl Tables {
    /// Whether ring members may serve share (`hash`, `owner`) to each other.
    pub fn reserved(&self, hash: &Hash, owner: u32) -> Result<bool> {
        let tx = self.read()?;
        let off = tx
            .open_table(NO_RESERVE)?
            .get((hash.as_bytes(), owner))?
            .is_some();
        Ok(!off)
    }

    /// Lets ring members serve share (`hash`, `owner`) to each other, or not.
    pub fn set_reserve(&self, hash: Hash, owner: u32, on: bool) -> Result<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(NO_RESERVE)?;
            if on {
                t.remove((hash.as_bytes(), owner))?;
            } else {
                t.insert((hash.as_bytes(), owner), 1)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
