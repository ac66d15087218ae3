//! The redb registry, one table per noun (see the definitions below):
//! shares (`owned_shares`) with the blob-parent and blob-source indexes
//! the gate and policy read, served-byte counters; transfers with their
//! incoming-file records (`partials`), expected sizes and `--only`
//! selections (`selected`); rings, members,
//! invites and joined rings; the address book (`peers`); sent offers, the
//! inbox, trust rules and their daily totals; who owns each row
//! (`owners`); node settings changed at run time (`settings`: the
//! bandwidth limits) and transfers' own limits; and `meta` (schema
//! version, totals). One write transaction
//! per user action; no transaction is ever held across an `.await`.

mod actor;
mod api;
mod invites;
mod offers;
mod owners;
mod records;
mod rings;
mod settings;
mod shares;
mod transfers;

use std::path::Path;

use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

pub use actor::Registry;
pub use invites::{InviteRecord, Redeemed, Refusal};
pub use offers::{
    InboxOffer, InboxState, Receipt, SentOffer, SentState, Stored, TrustRecord,
    DEFAULT_TRUST_PER_DAY, MAX_INBOX, MAX_PENDING_PER_PEER,
};
pub use owners::{daemon_uid, Owned, Owners};
pub use records::{
    decode_row, encode_row, mtime_ns, source_of, HeldRecord, PartialRecord, PeerRecord, Placement,
    ShareRecord, Source, Terms, TransferRecord, TransferState,
};
pub use rings::{Member, RingInfo, OPEN_RING};
pub use shares::Counts;

/// Schema version this build writes; older ones are migrated, newer refused.
/// 2: transfers record their owner's uid and who places the files; shares
/// record whether they are listed and their sources' inode and change time.
pub const SCHEMA_VERSION: u64 = 3;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Share rows, one per (content hash, owner uid).
const SHARES: TableDefinition<(&[u8; 32], u32), &[u8]> = TableDefinition::new("owned_shares");
/// Schemas 1 and 2: one share row per content hash (its owner, if any, in
/// `owners`); moved into [`SHARES`] when opened.
const SHARES_V2: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("shares");
/// child hash -> collection roots that contain it (the gate's index).
const BLOB_PARENTS: MultimapTableDefinition<&[u8; 32], &[u8; 32]> =
    MultimapTableDefinition::new("blob_parents");
/// blob hash -> every source file it was imported from by reference (one
/// row per path, the latest): the store reads whichever of them opens, so
/// all of them must be unchanged for the blob to be served.
const BLOB_SOURCES: MultimapTableDefinition<&[u8; 32], &[u8]> =
    MultimapTableDefinition::new("blob_sources");
/// A table of postcard records keyed by number.
type IdTable = TableDefinition<'static, u64, &'static [u8]>;

const TRANSFERS: TableDefinition<u64, &[u8]> = TableDefinition::new("transfers");
/// transfer id -> what is on disk of its incoming files ([`PartialRecord`]).
const PARTIALS: TableDefinition<u64, &[u8]> = TableDefinition::new("partials");
/// transfer id -> what this node holds of its content to re-serve to
/// ring members once it completed ([`HeldRecord`]).
const HELD: TableDefinition<u64, &[u8]> = TableDefinition::new("held");
/// (collection, owner uid) of shares whose ring members may not serve it
/// to each other (`share --no-reserve`); none: they may.
const NO_RESERVE: TableDefinition<(&[u8; 32], u32), u8> = TableDefinition::new("no_reserve");
/// transfer id -> 1: what it holds is not served to its ring
/// (`fetch --no-reserve`).
const NOT_RESERVED: TableDefinition<u64, u8> = TableDefinition::new("not_reserved");
/// transfer id -> the size its content must have (an offer's), checked
/// before its data moves, after a restart too.
const EXPECTED: TableDefinition<u64, u64> = TableDefinition::new("expected");
/// transfer id -> the `--only` patterns it fetches (postcard `Vec<String>`;
/// none: every file).
const SELECTED: TableDefinition<u64, &[u8]> = TableDefinition::new("selected");
/// transfer id -> its own download limit, bytes per second.
const TRANSFER_LIMITS: TableDefinition<u64, u64> = TableDefinition::new("transfer_limits");
/// setting name -> postcard value (`limits`: [`crate::limits::Limits`]).
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
/// collection root -> payload bytes served for it.
const SERVED: TableDefinition<&[u8; 32], u64> = TableDefinition::new("served");

const RINGS: TableDefinition<&str, i64> = TableDefinition::new("rings");
/// (ring, endpoint id) -> expiry in unix seconds (0: never).
const RING_MEMBERS: TableDefinition<(&str, &[u8; 32]), i64> = TableDefinition::new("ring_members");
const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");
/// invite id -> [`InviteRecord`] (the inviter's side).
const INVITES: TableDefinition<&[u8; 16], &[u8]> = TableDefinition::new("invites");
/// (ring owner's endpoint id, ring) -> joined at, unix seconds (the joiner's side).
const JOINED: TableDefinition<(&[u8; 32], &str), i64> = TableDefinition::new("joined");
/// offer id -> [`SentOffer`] (files this node sent).
const SENT: TableDefinition<u64, &[u8]> = TableDefinition::new("sent");
/// inbox id -> [`InboxOffer`] (files offered to this node).
const INBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("inbox");
/// sender endpoint id -> [`TrustRecord`].
const TRUST: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("trust");
/// sender endpoint id -> most bytes of its offers accepted by themselves
/// in 24 hours (beside [`TrustRecord`], whose encoding stays as it was).
const TRUST_DAILY: TableDefinition<&[u8; 32], u64> = TableDefinition::new("trust_daily");
/// (kind, key) -> the uid that owns that row ([`Owned`]); none: the daemon's.
const OWNERS: TableDefinition<(&str, &[u8]), u32> = TableDefinition::new("owners");

const KEY_SCHEMA: &str = "schema_version";
const KEY_NEXT_TRANSFER: &str = "next_transfer_id";
const KEY_SERVED_TOTAL: &str = "bytes_served_total";

/// Errors of the registry database.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry database: {0}")]
    Db(#[source] redb::Error),
    #[error("registry record is corrupt: {0}")]
    Corrupt(#[from] postcard::Error),
    /// The registry's thread, or blocking work over its rows, could not
    /// run (out of threads, or it panicked).
    #[error("registry task: {0}")]
    Task(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the registry is closed (the daemon is shutting down)")]
    Closed,
    #[error("the registry lost this request (its thread failed it: see the log)")]
    Lost,
    #[error("the registry was written by a newer ringdropd (schema {found}, this build knows {SCHEMA_VERSION}): upgrade ringdropd or use another --data-dir")]
    NewerSchema { found: u64 },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for RegistryError {
            fn from(e: $t) -> Self { RegistryError::Db(e.into()) }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

type Result<T> = std::result::Result<T, RegistryError>;

/// The registry's tables: the redb `Database` and the code that reads and
/// writes it. Only the registry thread holds one (see [`actor`]); the rest
/// of the daemon reaches it through a [`Registry`] handle.
pub struct Tables {
    db: Database,
    /// Bumped after every committed change of a share row, so readers may
    /// cache decoded shares and know when to read again.
    shares_gen: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Address-book names by endpoint id, kept until the book changes.
    names: std::sync::Mutex<NameIndex>,
}

/// Address-book names by endpoint id, and how many times the book changed.
#[derive(Default)]
pub(crate) struct NameIndex {
    /// Changes of the book so far: a read that began before one is not kept.
    changes: u64,
    /// `None` after the book changed (rebuilt when next asked).
    names: Option<std::collections::HashMap<[u8; 32], String>>,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables").finish_non_exhaustive()
    }
}

impl Tables {
    /// Opens (or creates) the registry at `path`, creating tables and
    /// checking the schema version.
    fn open(path: &Path, shares_gen: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Result<Self> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get(KEY_SCHEMA)?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(RegistryError::NewerSchema { found: v })
                }
                Some(1) => {
                    migrate_transfers_v1(&mut tx.open_table(TRANSFERS)?)?;
                    migrate_shares_v1(&tx)?;
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)?;
                }
                Some(2) => {
                    migrate_shares_v2(&tx)?;
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)?;
                }
                Some(_) => {}
                None => {
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)?;
                }
            }
            tx.open_table(SHARES)?;
            tx.open_multimap_table(BLOB_PARENTS)?;
            tx.open_multimap_table(BLOB_SOURCES)?;
            tx.open_table(TRANSFERS)?;
            tx.open_table(PARTIALS)?;
            tx.open_table(HELD)?;
            tx.open_table(NO_RESERVE)?;
            tx.open_table(NOT_RESERVED)?;
            tx.open_table(SERVED)?;
            tx.open_table(RINGS)?;
            tx.open_table(RING_MEMBERS)?;
            tx.open_table(PEERS)?;
            tx.open_table(INVITES)?;
            tx.open_table(JOINED)?;
            tx.open_table(SENT)?;
            tx.open_table(INBOX)?;
            tx.open_table(TRUST)?;
            tx.open_table(OWNERS)?;
            tx.open_table(EXPECTED)?;
            tx.open_table(SELECTED)?;
            tx.open_table(TRANSFER_LIMITS)?;
            tx.open_table(SETTINGS)?;
            tx.open_table(TRUST_DAILY)?;
        }
        tx.commit()?;
        Ok(Self {
            db,
            shares_gen,
            names: Default::default(),
        })
    }

    /// Tables of their own at `path`, for the registry's unit tests.
    #[cfg(test)]
    pub(crate) fn open_for_test(path: &Path) -> Result<Self> {
        Self::open(path, Default::default())
    }

    fn write(&self) -> Result<redb::WriteTransaction> {
        Ok(self.db.begin_write()?)
    }

    fn read(&self) -> Result<redb::ReadTransaction> {
        Ok(self.db.begin_read()?)
    }

    fn shares_changed(&self) {
        self.shares_gen
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The row `id` of a table of postcard records keyed by number.
    fn row<T: serde::de::DeserializeOwned>(&self, table: IdTable, id: u64) -> Result<Option<T>> {
        let tx = self.read()?;
        let found = tx
            .open_table(table)?
            .get(id)?
            .map(|v| decode_row(v.value()))
            .transpose()?;
        Ok(found)
    }

    /// Every row of such a table, by id.
    fn rows<T: serde::de::DeserializeOwned>(&self, table: IdTable) -> Result<Vec<T>> {
        let tx = self.read()?;
        let table = tx.open_table(table)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            out.push(decode_row(item?.1.value())?);
        }
        Ok(out)
    }

    /// Writes row `id` (one commit).
    fn put_row<T: serde::Serialize>(&self, table: IdTable, id: u64, rec: &T) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(table)?
            .insert(id, encode_row(rec)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Changes row `id` in one transaction (nothing written meanwhile is
    /// lost); the row after the change, if it exists.
    fn update_row<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        table: IdTable,
        id: u64,
        change: impl FnOnce(&mut T),
    ) -> Result<Option<T>> {
        self.update_row_if(table, id, |_| true, change)
    }

    /// Changes row `id` in one transaction if it exists and `when` holds
    /// for it; the row after the change, or `None`.
    fn update_row_if<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        table: IdTable,
        id: u64,
        when: impl FnOnce(&T) -> bool,
        change: impl FnOnce(&mut T),
    ) -> Result<Option<T>> {
        let tx = self.write()?;
        let updated = {
            let mut t = tx.open_table(table)?;
            let found: Option<T> = t.get(id)?.map(|v| decode_row(v.value())).transpose()?;
            match found {
                Some(mut rec) if when(&rec) => {
                    change(&mut rec);
                    t.insert(id, encode_row(&rec)?.as_slice())?;
                    Some(rec)
                }
                _ => None,
            }
        };
        tx.commit()?;
        Ok(updated)
    }

    /// Removes row `id` in one transaction if it exists and `when` holds
    /// for it; the row removed, or `None`.
    fn remove_row_if<T: serde::de::DeserializeOwned>(
        &self,
        table: IdTable,
        id: u64,
        when: impl FnOnce(&T) -> bool,
    ) -> Result<Option<T>> {
        let tx = self.write()?;
        let removed = {
            let mut t = tx.open_table(table)?;
            let found: Option<T> = t.get(id)?.map(|v| decode_row(v.value())).transpose()?;
            match found {
                Some(rec) if when(&rec) => {
                    t.remove(id)?;
                    Some(rec)
                }
                _ => None,
            }
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Removes, in one transaction, every row of `table` for which `old`
    /// holds; how many went.
    fn prune_rows<T: serde::de::DeserializeOwned>(
        &self,
        table: IdTable,
        old: impl Fn(&T) -> bool,
    ) -> Result<Vec<u64>> {
        let tx = self.write()?;
        let gone = {
            let mut t = tx.open_table(table)?;
            let mut gone = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                // A row that does not decode is left for a person to see.
                if decode_row::<T>(v.value()).is_ok_and(|rec| old(&rec)) {
                    gone.push(k.value());
                }
            }
            for id in &gone {
                t.remove(*id)?;
            }
            gone
        };
        tx.commit()?;
        Ok(gone)
    }
}

/// Changes, in an open write transaction's table `t`, every row `pick`
/// holds for; how many changed.
fn change_rows<T: serde::Serialize + serde::de::DeserializeOwned>(
    t: &mut redb::Table<u64, &[u8]>,
    pick: impl Fn(&T) -> bool,
    change: impl Fn(&mut T),
) -> Result<usize> {
    let mut picked = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        let rec: T = decode_row(v.value())?;
        if pick(&rec) {
            picked.push((k.value(), rec));
        }
    }
    for (id, rec) in &mut picked {
        change(rec);
        t.insert(*id, encode_row(rec)?.as_slice())?;
    }
    Ok(picked.len())
}

/// Takes the next number of the counter `key` (from 1).
fn next_id(meta: &mut redb::Table<&str, u64>, key: &str) -> Result<u64> {
    let id = meta.get(key)?.map(|v| v.value()).unwrap_or(1);
    meta.insert(key, id + 1)?;
    Ok(id)
}

/// Schema 1 -> 2: every transfer row gains its owner (the daemon's own
/// user: schema 1 served no one else who could fetch) and placement.
fn migrate_transfers_v1(transfers: &mut redb::Table<u64, &[u8]>) -> Result<()> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    let mut rows = Vec::new();
    for item in transfers.iter()? {
        let (k, v) = item?;
        rows.push((
            k.value(),
            decode_row::<records::TransferRecordV1>(v.value())?,
        ));
    }
    for (id, old) in rows {
        transfers.insert(id, encode_row(&old.upgrade(me))?.as_slice())?;
    }
    Ok(())
}

/// Schema 1 -> 3: shares become unlisted and the daemon user's, and their
/// sources take today's inode and change time where size and mtime still
/// match.
fn migrate_shares_v1(tx: &redb::WriteTransaction) -> Result<()> {
    let old = tx.open_table(SHARES_V2)?;
    let mut shares = tx.open_table(SHARES)?;
    let mut blob_sources = tx.open_multimap_table(BLOB_SOURCES)?;
    let stat = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(p).ok()?;
        let s = records::source_of(p, &m);
        Some((s.size, s.mtime_ns, s.ctime_ns, m.dev(), m.ino()))
    };
    let mut rows = Vec::new();
    for item in old.iter()? {
        let (k, v) = item?;
        rows.push((*k.value(), decode_row::<records::ShareRecordV1>(v.value())?));
    }
    drop(old);
    for (k, old) in rows {
        let rec = old.upgrade(stat);
        shares.insert((&k, rec.owner), encode_row(&rec)?.as_slice())?;
        shares::record_sources(&mut blob_sources, &rec)?;
    }
    drop(shares);
    tx.delete_table(SHARES_V2)?;
    Ok(())
}

/// Schema 2 -> 3: each share row moves to its (hash, owner) key, its owner
/// taken from `owners` (none: the daemon's user), and leaves `owners`.
fn migrate_shares_v2(tx: &redb::WriteTransaction) -> Result<()> {
    let old = tx.open_table(SHARES_V2)?;
    let mut owners = tx.open_table(OWNERS)?;
    let mut shares = tx.open_table(SHARES)?;
    let mut rows = Vec::new();
    for item in old.iter()? {
        let (k, v) = item?;
        rows.push((*k.value(), decode_row::<records::ShareRecordV2>(v.value())?));
    }
    drop(old);
    for (k, old) in rows {
        let owner = owners::owner_in(&owners, Owned::Share, &k)?;
        owners.remove((Owned::Share.tag(), k.as_slice()))?;
        let rec = old.with_owner(owner);
        shares.insert((&k, owner), encode_row(&rec)?.as_slice())?;
    }
    drop(shares);
    tx.delete_table(SHARES_V2)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile_dir();
        let path = dir.join("r.redb");
        Tables::open_for_test(&path).unwrap();
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(KEY_SCHEMA, 99).unwrap();
            tx.commit().unwrap();
        }
        let err = Tables::open_for_test(&path).unwrap_err();
        assert!(err.to_string().contains("newer ringdropd"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn schema_1_transfers_are_migrated() {
        use records::TransferRecordV1;
        let dir = tempfile_dir();
        let path = dir.join("r.redb");
        let old = TransferRecordV1 {
            id: 7,
            ticket: "rdrop...".into(),
            provider: "ab".repeat(32),
            dest: "/tmp/x".into(),
            force: false,
            name: "x".into(),
            hash: iroh_blobs::Hash::EMPTY,
            state: TransferState::Running,
            bytes_total: 10,
            bytes_done: 5,
            bytes_received: 5,
            attempts: 1,
            last_error: None,
            created_at: 1,
            updated_at: 2,
            files: vec![],
        };
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(KEY_SCHEMA, 1).unwrap();
            tx.open_table(TRANSFERS)
                .unwrap()
                .insert(7, encode_row(&old).unwrap().as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        let reg = Tables::open_for_test(&path).unwrap();
        let rec = reg.transfer(7).unwrap().unwrap();
        assert_eq!(rec, old.clone().upgrade(unsafe { libc::getuid() }));
        assert_eq!(rec.placement, Placement::Daemon);
        assert_eq!(rec.bytes_done, 5);
        drop(reg);
        // Migrated once: the schema now says 2.
        let db = Database::create(&path).unwrap();
        let tx = db.begin_read().unwrap();
        let v = tx
            .open_table(META)
            .unwrap()
            .get(KEY_SCHEMA)
            .unwrap()
            .unwrap()
            .value();
        assert_eq!(v, SCHEMA_VERSION);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Schema 2 kept one share row per content hash and its owner in
    /// `owners`: each row moves to its (hash, owner) key, keeping its
    /// owner (none recorded: the daemon's user), and the old table goes.
    #[test]
    fn schema_2_shares_move_to_their_owners_key() {
        let dir = tempfile_dir();
        let path = dir.join("r.redb");
        let row = |hash: iroh_blobs::Hash, ring: &str| records::ShareRecordV2 {
            hash,
            name: "n".into(),
            path: "/x".into(),
            size: 1,
            files: 1,
            created_at: 3,
            children: vec![],
            rings: vec![ring.to_string()],
            sources: vec![],
            listed: true,
        };
        let (theirs, legacy) = (iroh_blobs::Hash::new(b"a"), iroh_blobs::Hash::new(b"b"));
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(KEY_SCHEMA, 2).unwrap();
            {
                let mut old = tx.open_table(SHARES_V2).unwrap();
                for (h, ring) in [(theirs, "team"), (legacy, "open")] {
                    old.insert(h.as_bytes(), encode_row(&row(h, ring)).unwrap().as_slice())
                        .unwrap();
                }
                tx.open_table(OWNERS)
                    .unwrap()
                    .insert((Owned::Share.tag(), theirs.as_bytes().as_slice()), 1234)
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let reg = Tables::open_for_test(&path).unwrap();
        let got = reg.shares_of(&theirs).unwrap();
        assert_eq!(got, vec![row(theirs, "team").with_owner(1234)]);
        let got = reg.shares_of(&legacy).unwrap();
        assert_eq!(got, vec![row(legacy, "open").with_owner(daemon_uid())]);
        assert_eq!(reg.owners(Owned::Share).unwrap().iter().count(), 0);
        drop(reg);
        let db = Database::create(&path).unwrap();
        let tx = db.begin_read().unwrap();
        assert!(tx.open_table(SHARES_V2).is_err(), "the old table stays");
        std::fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rdrop-reg-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
