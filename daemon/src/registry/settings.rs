//! Node settings changed at run time (the bandwidth limits), and each
//! transfer's own download limit.

use super::*;
use crate::limits::Limits;

const KEY_LIMITS: &str = "limits";

impl Tables {
    /// The limits set with `ringdropctl limits`, if they were.
    pub fn limits(&self) -> Result<Option<Limits>> {
        let tx = self.read()?;
        let found = tx
            .open_table(SETTINGS)?
            .get(KEY_LIMITS)?
            .map(|v| decode_row(v.value()))
            .transpose()?;
        Ok(found)
    }

    /// Keeps `limits` (`None`: back to the config's).
    pub fn put_limits(&self, limits: Option<&Limits>) -> Result<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(SETTINGS)?;
            match limits {
                Some(l) => {
                    t.insert(KEY_LIMITS, encode_row(l)?.as_slice())?;
                }
                None => {
                    t.remove(KEY_LIMITS)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets transfer `id`'s own download limit (`None`: none).
    pub fn put_transfer_limit(&self, id: u64, down: Option<u64>) -> Result<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(TRANSFER_LIMITS)?;
            match down {
                Some(rate) => {
                    t.insert(id, rate)?;
                }
                None => {
                    t.remove(id)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
