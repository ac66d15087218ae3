//! Who owns a row: one table, (kind, key) -> uid, written in the same
//! transaction as the row it speaks for where the row is created here. A
//! row with no owner row belongs to the daemon's own user (rows from
//! before owners were recorded; the daemon acting for itself), so a
//! missing row never makes anything another user's.

use super::*;

/// The kinds of owned rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Share,
    Ring,
    Trust,
    Sent,
    Peer,
}

impl Owned {
    /// The kind's name in the `owners` table's keys.
    pub(super) fn tag(self) -> &'static str {
        match self {
            Owned::Share => "share",
            Owned::Ring => "ring",
            Owned::Trust => "trust",
            Owned::Sent => "sent",
            Owned::Peer => "peer",
        }
    }
}

/// The daemon's own user: the owner of every row without an owner row.
pub fn daemon_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The owner of `(kind, key)` inside a transaction.
pub(super) fn owner_in<T: ReadableTable<(&'static str, &'static [u8]), u32>>(
    table: &T,
    kind: Owned,
    key: &[u8],
) -> Result<u32> {
    Ok(table
        .get((kind.tag(), key))?
        .map(|v| v.value())
        .unwrap_or_else(daemon_uid))
}

/// The recorded owners of one kind of row, read once.
#[derive(Debug, Default)]
pub struct Owners(std::collections::HashMap<Vec<u8>, u32>);

impl Owners {
    /// The uid that owns the row `key` (no owner row: the daemon's user).
    pub fn of(&self, key: &[u8]) -> u32 {
        self.0.get(key).copied().unwrap_or_else(daemon_uid)
    }

    /// Every recorded (key, uid).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u32)> {
        self.0.iter().map(|(k, v)| (k.as_slice(), *v))
    }
}

impl Tables {
    /// The uid that owns a row.
    pub fn owner(&self, kind: Owned, key: &[u8]) -> Result<u32> {
        let tx = self.read()?;
        owner_in(&tx.open_table(OWNERS)?, kind, key)
    }

    /// The owners of every row of `kind`.
    pub fn owners(&self, kind: Owned) -> Result<Owners> {
        let tx = self.read()?;
        let table = tx.open_table(OWNERS)?;
        let mut out = std::collections::HashMap::new();
        for item in table.range((kind.tag(), &[][..])..)? {
            let (k, v) = item?;
            let (tag, key) = k.value();
            if tag != kind.tag() {
                break;
            }
            out.insert(key.to_vec(), v.value());
        }
        Ok(Owners(out))
    }

    /// Records that `uid` owns a row (one commit).
    pub fn set_owner(&self, kind: Owned, key: &[u8], uid: u32) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(OWNERS)?.insert((kind.tag(), key), uid)?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets the owner of a row that is gone.
    pub fn remove_owner(&self, kind: Owned, key: &[u8]) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(OWNERS)?.remove((kind.tag(), key))?;
        tx.commit()?;
        Ok(())
    }

    /// Claims a row for `uid` if nobody else owns it: true when `uid` owns
    /// it now. A row nobody recorded belongs to the daemon's user, so only
    /// that user (or a row that does not exist yet, `fresh`) is claimed.
    pub fn claim(&self, kind: Owned, key: &[u8], uid: u32, fresh: bool) -> Result<bool> {
        let tx = self.write()?;
        let mine = {
            let mut t = tx.open_table(OWNERS)?;
            let recorded = t.get((kind.tag(), key))?.map(|v| v.value());
            match recorded {
                Some(owner) => owner == uid,
                None if fresh || uid == daemon_uid() => {
                    t.insert((kind.tag(), key), uid)?;
                    true
                }
                None => false,
            }
        };
        tx.commit()?;
        Ok(mine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_owner_is_the_daemons_and_claims_are_first_come() {
        let dir = std::env::temp_dir().join(format!("rdrop-own-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let reg = Tables::open_for_test(&dir.join("r.redb")).unwrap();
        assert_eq!(reg.owner(Owned::Ring, b"team").unwrap(), daemon_uid());
        // An old row (not fresh) is not taken by an operator.
        assert!(!reg.claim(Owned::Ring, b"team", 4242, false).unwrap());
        assert!(reg.claim(Owned::Ring, b"new", 4242, true).unwrap());
        assert!(!reg.claim(Owned::Ring, b"new", 4343, true).unwrap());
        assert_eq!(reg.owner(Owned::Ring, b"new").unwrap(), 4242);
        reg.set_owner(Owned::Share, &[1; 32], 7).unwrap();
        let shares = reg.owners(Owned::Share).unwrap();
        assert_eq!(shares.of(&[1u8; 32]), 7);
        assert_eq!(shares.of(&[2u8; 32]), daemon_uid());
        assert_eq!(shares.iter().count(), 1);
        drop(reg);
        std::fs::remove_dir_all(dir).ok();
    }
}
