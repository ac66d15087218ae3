//! Ring invites (the inviter's side: the secret's hash, uses, expiry) and
//! the rings this node joined by invite (the joiner's side).

use redb::ReadableTable;

use super::*;

/// An invite as the inviter keeps it (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub id: [u8; 16],
    pub ring: String,
    pub secret_hash: [u8; 32],
    pub uses_left: u32,
    pub uses: u32,
    /// Unix seconds.
    pub expires_at: i64,
    /// Seconds of membership it grants; `None`: for good.
    pub member_for: Option<i64>,
    pub created_at: i64,
    pub revoked: bool,
}

/// What a redeemed invite gave.
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub ring: String,
    pub member_until: Option<i64>,
}

/// Why an invite was refused. Forged ones (unknown id or wrong secret) get
/// the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this invite is not valid (unknown, or altered)")]
    Invalid,
    #[error("this invite has expired: ask for a new one")]
    Expired,
    #[error("this invite has been used up: ask for a new one")]
    UsedUp,
    #[error("this invite was withdrawn")]
    Revoked,
    #[error("the ring this invite was for no longer exists")]
    RingGone,
}

use serde::{Deserialize, Serialize};

impl Tables {
    pub fn put_invite(&self, rec: &InviteRecord) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(INVITES)?
            .insert(&rec.id, encode_row(rec)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Every invite, oldest first.
    pub fn invites(&self) -> Result<Vec<InviteRecord>> {
        let tx = self.read()?;
        let table = tx.open_table(INVITES)?;
        let mut out: Vec<InviteRecord> = Vec::new();
        for item in table.iter()? {
            let (_, v) = item?;
            out.push(decode_row(v.value())?);
        }
        out.sort_by_key(|i| i.created_at);
        Ok(out)
    }

    pub fn invite(&self, id: &[u8; 16]) -> Result<Option<InviteRecord>> {
        let tx = self.read()?;
        let table = tx.open_table(INVITES)?;
        let found = table.get(id)?.map(|v| decode_row(v.value())).transpose()?;
        Ok(found)
    }

    /// Checks an invite and, if it holds, uses it once and makes `peer` a
    /// member of its ring, all in one transaction: a refused invite
    /// changes nothing.
    pub fn redeem_invite(
        &self,
        id: &[u8; 16],
        secret_hash: &[u8; 32],
        peer: &[u8; 32],
        now: i64,
    ) -> Result<std::result::Result<Redeemed, Refusal>> {
        let tx = self.write()?;
        let decided = {
            let mut invites = tx.open_table(INVITES)?;
            let rec: Option<InviteRecord> = invites
                .get(id)?
                .map(|v| decode_row(v.value()))
                .transpose()?;
            let verdict = match rec {
                None => Err(Refusal::Invalid),
                Some(r) if !ringdrop_proto::secret::same(&r.secret_hash, secret_hash) => {
                    Err(Refusal::Invalid)
                }
                Some(r) if r.revoked => Err(Refusal::Revoked),
                Some(r) if r.expires_at <= now => Err(Refusal::Expired),
                Some(r) if r.uses_left == 0 => Err(Refusal::UsedUp),
                Some(r) if tx.open_table(RINGS)?.get(r.ring.as_str())?.is_none() => {
                    Err(Refusal::RingGone)
                }
                Some(r) => Ok(r),
            };
            match verdict {
                Err(refusal) => Err(refusal),
                Ok(mut r) => {
                    r.uses_left -= 1;
                    r.uses += 1;
                    invites.insert(id, encode_row(&r)?.as_slice())?;
                    let until = r.member_for.map(|s| now.saturating_add(s));
                    tx.open_table(RING_MEMBERS)?
                        .insert((r.ring.as_str(), peer), until.unwrap_or(0))?;
                    Ok(Redeemed {
                        ring: r.ring,
                        member_until: until,
                    })
                }
            }
        };
        if decided.is_ok() {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(decided)
    }

    /// Records that this node joined `ring`, owned by `owner`.
    pub fn record_joined(&self, owner: &[u8; 32], ring: &str, now: i64) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(JOINED)?.insert((owner, ring), now)?;
        tx.commit()?;
        Ok(())
    }

    /// Rings this node joined: (owner, ring, joined at).
    pub fn joined(&self) -> Result<Vec<([u8; 32], String, i64)>> {
        let tx = self.read()?;
        let table = tx.open_table(JOINED)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            let (owner, ring) = k.value();
            out.push((*owner, ring.to_string(), v.value()));
        }
        Ok(out)
    }
}
