//! Transfer rows.

use super::*;

impl Tables {
    /// Stores a new transfer under a fresh id with its terms, in one
    /// transaction, and returns the id.
    pub fn insert_transfer(&self, rec: &mut TransferRecord, terms: &Terms) -> Result<u64> {
        let tx = self.write()?;
        {
            rec.id = next_id(&mut tx.open_table(META)?, KEY_NEXT_TRANSFER)?;
            tx.open_table(TRANSFERS)?
                .insert(rec.id, encode_row(rec)?.as_slice())?;
            if let Some(size) = terms.expect_size {
                tx.open_table(EXPECTED)?.insert(rec.id, size)?;
            }
            if let Some(rate) = terms.down_limit {
                tx.open_table(TRANSFER_LIMITS)?.insert(rec.id, rate)?;
            }
            if terms.no_reserve {
                tx.open_table(NOT_RESERVED)?.insert(rec.id, 1)?;
            }
            if !terms.only.is_empty() {
                tx.open_table(SELECTED)?
                    .insert(rec.id, encode_row(&terms.only)?.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(rec.id)
    }

    /// What transfer `id` was asked for beyond its ticket.
    pub fn terms(&self, id: u64) -> Result<Terms> {
        let tx = self.read()?;
        let expect_size = tx.open_table(EXPECTED)?.get(id)?.map(|v| v.value());
        let only = match tx.open_table(SELECTED)?.get(id)? {
            Some(v) => decode_row(v.value())?,
            None => Vec::new(),
        };
        let down_limit = tx.open_table(TRANSFER_LIMITS)?.get(id)?.map(|v| v.value());
        let no_reserve = tx.open_table(NOT_RESERVED)?.get(id)?.is_some();
        Ok(Terms {
            expect_size,
            only,
            down_limit,
            no_reserve,
        })
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

    /// Removes transfer `id` if `when` holds for it, with what is recorded
    /// beside it; the row removed.
    pub fn remove_transfer_if(
        &self,
        id: u64,
        when: impl FnOnce(&TransferRecord) -> bool,
    ) -> Result<Option<TransferRecord>> {
        let removed = self.remove_row_if(TRANSFERS, id, when)?;
        if removed.is_some() {
            self.forget_beside_transfers(&[id])?;
        }
        Ok(removed)
    }

    /// Removes the finished transfers that `old` picks; their ids.
    pub fn prune_transfers(&self, old: impl Fn(&TransferRecord) -> bool) -> Result<Vec<u64>> {
        let gone = self.prune_rows(TRANSFERS, |r: &TransferRecord| {
            r.state.is_terminal() && old(r)
        })?;
        self.forget_beside_transfers(&gone)?;
        Ok(gone)
    }

    fn forget_beside_transfers(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.write()?;
        {
            let mut partials = tx.open_table(PARTIALS)?;
            let mut expected = tx.open_table(EXPECTED)?;
            let mut selected = tx.open_table(SELECTED)?;
            let mut limits = tx.open_table(TRANSFER_LIMITS)?;
            let mut held = tx.open_table(HELD)?;
            let mut not_reserved = tx.open_table(NOT_RESERVED)?;
            for id in ids {
                partials.remove(*id)?;
                held.remove(*id)?;
                not_reserved.remove(*id)?;
                expected.remove(*id)?;
                selected.remove(*id)?;
                limits.remove(*id)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes `uid` the owner of transfer `id` (one transaction); the row.
    pub fn give_transfer(&self, id: u64, uid: u32) -> Result<Option<TransferRecord>> {
        self.update_row(TRANSFERS, id, |rec: &mut TransferRecord| {
            rec.owner_uid = uid
        })
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

    /// What completed transfer `id` holds to re-serve (one commit).
    pub fn put_held(&self, id: u64, rec: &HeldRecord) -> Result<()> {
        self.put_row(HELD, id, rec)
    }

    /// Every completed transfer's holding, by transfer id.
    pub fn held(&self) -> Result<Vec<(u64, HeldRecord)>> {
        let tx = self.read()?;
        let table = tx.open_table(HELD)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            out.push((k.value(), decode_row(v.value())?));
        }
        Ok(out)
    }

    pub fn remove_held(&self, id: u64) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(HELD)?.remove(id)?;
        tx.commit()?;
        Ok(())
    }
}
