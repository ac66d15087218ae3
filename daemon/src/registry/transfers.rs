//! Transfer rows.

use super::*;

impl Registry {
    /// Stores a new transfer under a fresh id and returns the id.
    pub fn insert_transfer(&self, rec: &mut TransferRecord) -> Result<u64> {
        let tx = self.write()?;
        {
            rec.id = next_id(&mut tx.open_table(META)?, KEY_NEXT_TRANSFER)?;
            tx.open_table(TRANSFERS)?
                .insert(rec.id, encode_row(rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(rec.id)
    }

    /// Overwrites a transfer row.
    pub fn put_transfer(&self, rec: &TransferRecord) -> Result<()> {
        self.put_row(TRANSFERS, rec.id, rec)
    }

    /// One transfer.
    pub fn transfer(&self, id: u64) -> Result<Option<TransferRecord>> {
        self.row(TRANSFERS, id)
    }

    /// All transfers, oldest first.
    pub fn transfers(&self) -> Result<Vec<TransferRecord>> {
        self.rows(TRANSFERS)
    }

    /// Changes transfer `id` if it is still `ready`, in one transaction
    /// (its client finishing and the expiry of `ready` may race); returns
    /// the changed row, or `None` when it was no longer ready.
    pub fn settle_ready(
        &self,
        id: u64,
        change: impl FnOnce(&mut TransferRecord),
    ) -> Result<Option<TransferRecord>> {
        self.update_row_if(
            TRANSFERS,
            id,
            |rec: &TransferRecord| rec.state == TransferState::Ready,
            change,
        )
    }

    /// What is on disk of transfer `id`'s incoming files, if anything.
    pub fn partial(&self, id: u64) -> Result<Option<PartialRecord>> {
        self.row(PARTIALS, id)
    }

    /// Records (durably: one commit) what is on disk of `id`'s files.
    pub fn put_partial(&self, id: u64, rec: &PartialRecord) -> Result<()> {
        self.put_row(PARTIALS, id, rec)
    }

    pub fn remove_partial(&self, id: u64) -> Result<()> {
        let tx = self.write()?;
        {
            let mut table = tx.open_table(PARTIALS)?;
            table.remove(id)?;
        }
        tx.commit()?;
        Ok(())
    }
}
