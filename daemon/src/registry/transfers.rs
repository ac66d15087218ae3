//! Transfer rows.

use redb::ReadableTable;

use super::*;

impl Registry {
    /// Stores a new transfer under a fresh id and returns the id.
    pub fn insert_transfer(&self, rec: &mut TransferRecord) -> Result<u64> {
        let tx = self.write()?;
        {
            let mut meta = tx.open_table(META)?;
            let id = meta.get(KEY_NEXT_TRANSFER)?.map(|v| v.value()).unwrap_or(1);
            meta.insert(KEY_NEXT_TRANSFER, id + 1)?;
            rec.id = id;
            let mut transfers = tx.open_table(TRANSFERS)?;
            transfers.insert(id, encode_row(rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(rec.id)
    }

    /// Overwrites a transfer row.
    pub fn put_transfer(&self, rec: &TransferRecord) -> Result<()> {
        let tx = self.write()?;
        {
            let mut transfers = tx.open_table(TRANSFERS)?;
            transfers.insert(rec.id, encode_row(rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// One transfer.
    pub fn transfer(&self, id: u64) -> Result<Option<TransferRecord>> {
        let tx = self.read()?;
        let transfers = tx.open_table(TRANSFERS)?;
        match transfers.get(id)? {
            Some(v) => Ok(Some(decode_row(v.value())?)),
            None => Ok(None),
        }
    }

    /// All transfers, oldest first.
    pub fn transfers(&self) -> Result<Vec<TransferRecord>> {
        let tx = self.read()?;
        let transfers = tx.open_table(TRANSFERS)?;
        let mut out = Vec::new();
        for item in transfers.iter()? {
            let (_, v) = item?;
            out.push(decode_row::<TransferRecord>(v.value())?);
        }
        Ok(out)
    }

    /// What is on disk of transfer `id`'s incoming files, if anything.
    pub fn partial(&self, id: u64) -> Result<Option<PartialRecord>> {
        let tx = self.read()?;
        let table = tx.open_table(PARTIALS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(decode_row(v.value())?)),
            None => Ok(None),
        }
    }

    /// Records (durably: one commit) what is on disk of `id`'s files.
    pub fn put_partial(&self, id: u64, rec: &PartialRecord) -> Result<()> {
        let tx = self.write()?;
        {
            let mut table = tx.open_table(PARTIALS)?;
            table.insert(id, encode_row(rec)?.as_slice())?;
        }
        tx.commit()?;
        Ok(())
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
