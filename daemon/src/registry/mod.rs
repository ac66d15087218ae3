//! The redb registry: shares, the blob-parent index the gate reads, transfers
//! and served-byte counters. One write transaction per user action; no
//! transaction is ever held across an `.await`.

mod records;

use std::path::Path;

use iroh_blobs::Hash;
use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

pub use records::{ShareRecord, TransferRecord, TransferState};

/// Schema version this build writes; older ones are migrated, newer refused.
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SHARES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("shares");
/// child hash -> collection roots that contain it (the gate's index).
const BLOB_PARENTS: MultimapTableDefinition<&[u8; 32], &[u8; 32]> =
    MultimapTableDefinition::new("blob_parents");
const TRANSFERS: TableDefinition<u64, &[u8]> = TableDefinition::new("transfers");
/// collection root -> payload bytes served for it.
const SERVED: TableDefinition<&[u8; 32], u64> = TableDefinition::new("served");

const KEY_SCHEMA: &str = "schema_version";
const KEY_NEXT_TRANSFER: &str = "next_transfer_id";
const KEY_SERVED_TOTAL: &str = "bytes_served_total";

/// Errors of the registry database.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry database: {0}")]
    Db(String),
    #[error("registry record is corrupt: {0}")]
    Corrupt(String),
    #[error("the registry was written by a newer ringdropd (schema {found}, this build knows {SCHEMA_VERSION}): upgrade ringdropd or use another --data-dir")]
    NewerSchema { found: u64 },
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for RegistryError {
            fn from(e: $t) -> Self { RegistryError::Db(e.to_string()) }
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

impl From<postcard::Error> for RegistryError {
    fn from(e: postcard::Error) -> Self {
        RegistryError::Corrupt(e.to_string())
    }
}

type Result<T> = std::result::Result<T, RegistryError>;

/// Handle to the registry; cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    db: std::sync::Arc<Database>,
}

impl Registry {
    /// Opens (or creates) the registry at `path`, creating tables and
    /// checking the schema version.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get(KEY_SCHEMA)?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(RegistryError::NewerSchema { found: v })
                }
                Some(_) => {}
                None => {
                    meta.insert(KEY_SCHEMA, SCHEMA_VERSION)?;
                }
            }
            tx.open_table(SHARES)?;
            tx.open_multimap_table(BLOB_PARENTS)?;
            tx.open_table(TRANSFERS)?;
            tx.open_table(SERVED)?;
        }
        tx.commit()?;
        Ok(Self {
            db: std::sync::Arc::new(db),
        })
    }

    // ---- shares ----

    /// Records a share and indexes its children (the meta blob and every file).
    pub fn put_share(&self, rec: &ShareRecord) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut shares = tx.open_table(SHARES)?;
            shares.insert(rec.hash.as_bytes(), postcard::to_stdvec(rec)?.as_slice())?;
            let mut parents = tx.open_multimap_table(BLOB_PARENTS)?;
            for child in &rec.children {
                parents.insert(child.as_bytes(), rec.hash.as_bytes())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The share with collection hash `hash`.
    pub fn share(&self, hash: &Hash) -> Result<Option<ShareRecord>> {
        let tx = self.db.begin_read()?;
        let shares = tx.open_table(SHARES)?;
        match shares.get(hash.as_bytes())? {
            Some(v) => Ok(Some(postcard::from_bytes(v.value())?)),
            None => Ok(None),
        }
    }

    /// All shares, oldest first.
    pub fn shares(&self) -> Result<Vec<ShareRecord>> {
        let tx = self.db.begin_read()?;
        let shares = tx.open_table(SHARES)?;
        let mut out = Vec::new();
        for item in shares.iter()? {
            let (_, v) = item?;
            out.push(postcard::from_bytes::<ShareRecord>(v.value())?);
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    /// Removes a share and its index entries; returns it if it existed.
    pub fn remove_share(&self, hash: &Hash) -> Result<Option<ShareRecord>> {
        let tx = self.db.begin_write()?;
        let removed = {
            let mut shares = tx.open_table(SHARES)?;
            let removed = match shares.remove(hash.as_bytes())? {
                Some(v) => Some(postcard::from_bytes::<ShareRecord>(v.value())?),
                None => None,
            };
            if let Some(rec) = &removed {
                let mut parents = tx.open_multimap_table(BLOB_PARENTS)?;
                for child in &rec.children {
                    parents.remove(child.as_bytes(), rec.hash.as_bytes())?;
                }
            }
            removed
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Collection roots that list `child` among their blobs.
    pub fn parents(&self, child: &Hash) -> Result<Vec<Hash>> {
        let tx = self.db.begin_read()?;
        let parents = tx.open_multimap_table(BLOB_PARENTS)?;
        let mut out = Vec::new();
        for v in parents.get(child.as_bytes())? {
            out.push(Hash::from(*v?.value()));
        }
        Ok(out)
    }

    // ---- served bytes ----

    /// Adds `bytes` served for the share `root` (if any) and to the total.
    pub fn add_served(&self, root: Option<Hash>, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
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
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(KEY_SERVED_TOTAL)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Payload bytes served for one share.
    pub fn served(&self, root: &Hash) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let served = tx.open_table(SERVED)?;
        Ok(served.get(root.as_bytes())?.map(|v| v.value()).unwrap_or(0))
    }

    // ---- transfers ----

    /// Stores a new transfer under a fresh id and returns the id.
    pub fn insert_transfer(&self, rec: &mut TransferRecord) -> Result<u64> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let id = meta.get(KEY_NEXT_TRANSFER)?.map(|v| v.value()).unwrap_or(1);
            meta.insert(KEY_NEXT_TRANSFER, id + 1)?;
            rec.id = id;
            let mut transfers = tx.open_table(TRANSFERS)?;
            transfers.insert(id, postcard::to_stdvec(rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(rec.id)
    }

    /// Overwrites a transfer row.
    pub fn put_transfer(&self, rec: &TransferRecord) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut transfers = tx.open_table(TRANSFERS)?;
            transfers.insert(rec.id, postcard::to_stdvec(rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// One transfer.
    pub fn transfer(&self, id: u64) -> Result<Option<TransferRecord>> {
        let tx = self.db.begin_read()?;
        let transfers = tx.open_table(TRANSFERS)?;
        match transfers.get(id)? {
            Some(v) => Ok(Some(postcard::from_bytes(v.value())?)),
            None => Ok(None),
        }
    }

    /// All transfers, oldest first.
    pub fn transfers(&self) -> Result<Vec<TransferRecord>> {
        let tx = self.db.begin_read()?;
        let transfers = tx.open_table(TRANSFERS)?;
        let mut out = Vec::new();
        for item in transfers.iter()? {
            let (_, v) = item?;
            out.push(postcard::from_bytes::<TransferRecord>(v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile_dir();
        let path = dir.join("r.redb");
        Registry::open(&path).unwrap();
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(KEY_SCHEMA, 99).unwrap();
            tx.commit().unwrap();
        }
        let err = Registry::open(&path).unwrap_err();
        assert!(err.to_string().contains("newer ringdropd"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rdrop-reg-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
