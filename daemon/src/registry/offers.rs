//! Offers: files sent to a peer (the sender's side, with their state from
//! receipts), the inbox (the receiver's side) and trusted senders whose
//! offers are accepted by themselves.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::*;

/// Where an offer this node sent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SentState {
    Queued,
    Delivered,
    Accepted,
    Fetching,
    Completed,
    Rejected,
    Withdrawn,
    Expired,
    /// The receiver refused to take it (not a contact, inbox full).
    Refused,
}

impl SentState {
    pub fn name(self) -> &'static str {
        match self {
            SentState::Queued => "queued",
            SentState::Delivered => "delivered",
            SentState::Accepted => "accepted",
            SentState::Fetching => "fetching",
            SentState::Completed => "completed",
            SentState::Rejected => "rejected",
            SentState::Withdrawn => "withdrawn",
            SentState::Expired => "expired",
            SentState::Refused => "refused",
        }
    }

    /// No receipt or delivery changes it any more; its access has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SentState::Completed
                | SentState::Rejected
                | SentState::Withdrawn
                | SentState::Expired
                | SentState::Refused
        )
    }
}

/// An offer this node sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentOffer {
    pub id: u64,
    pub peer: [u8; 32],
    pub hash: iroh_blobs::Hash,
    pub name: String,
    pub size: u64,
    pub files: u64,
    pub ticket: String,
    /// The ring that gives the peer access (`offer-<id>`).
    pub ring: String,
    /// The share did not exist before the send: it goes when the offer ends.
    pub created_share: bool,
    pub state: SentState,
    pub bytes: u64,
    pub created_at: i64,
    pub expires_at: i64,
    pub attempts: u32,
    pub next_try_at: i64,
    pub last_error: Option<String>,
}

/// Where an offer in the inbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxState {
    New,
    Accepted,
    Rejected,
    Completed,
    Failed,
}

impl InboxState {
    pub fn name(self) -> &'static str {
        match self {
            InboxState::New => "new",
            InboxState::Accepted => "accepted",
            InboxState::Rejected => "rejected",
            InboxState::Completed => "completed",
            InboxState::Failed => "failed",
        }
    }

    /// Settled for good: rejected, or its fetch ended (an accepted offer
    /// is still fetching).
    pub fn is_answered(self) -> bool {
        matches!(
            self,
            InboxState::Rejected | InboxState::Completed | InboxState::Failed
        )
    }
}

/// A receipt owed to the sender of an inbox offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Receipt {
    Accepted,
    Rejected,
    Completed,
}

/// An offer in this node's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxOffer {
    pub id: u64,
    pub from: [u8; 32],
    /// The sender's id for it (receipts name it).
    pub remote_id: u64,
    pub name: String,
    pub size: u64,
    pub files: u64,
    pub ticket: String,
    pub received_at: i64,
    pub state: InboxState,
    pub transfer_id: Option<u64>,
    /// Owed to the sender, with its delivery attempts and next try.
    pub receipt: Option<Receipt>,
    pub receipt_attempts: u32,
    pub receipt_next_try: i64,
}

/// What a trusted sender may have accepted by itself in 24 hours unless
/// its rule says otherwise: 10 GiB.
pub const DEFAULT_TRUST_PER_DAY: u64 = 10 << 30;

/// A sender whose offers are fetched by themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    pub accept_into: std::path::PathBuf,
    /// Bytes; `None`: no limit.
    pub max_size: Option<u64>,
}

/// What storing an incoming offer did.
#[derive(Debug)]
pub enum Stored {
    New(InboxOffer),
    /// The same offer again (a retried delivery).
    Again(InboxOffer),
    /// Refused: the inbox's limits.
    Full(String),
}

/// Offers waiting in the inbox from one sender, and in all.
pub const MAX_PENDING_PER_PEER: usize = 100;
pub const MAX_INBOX: usize = 1000;

const KEY_NEXT_OFFER: &str = "next_offer_id";
const KEY_NEXT_INBOX: &str = "next_inbox_id";

impl Tables {
    /// Stores a new sent offer under a fresh id (set in `rec`).
    pub fn insert_sent(&self, rec: &mut SentOffer, owner: u32) -> Result<u64> {
        let tx = self.write()?;
        {
            rec.id = next_id(&mut tx.open_table(META)?, KEY_NEXT_OFFER)?;
            tx.open_table(SENT)?
                .insert(rec.id, encode_row(rec)?.as_slice())?;
            tx.open_table(OWNERS)?
                .insert((Owned::Sent.tag(), rec.id.to_be_bytes().as_slice()), owner)?;
        }
        tx.commit()?;
        Ok(rec.id)
    }

    /// The id the next sent offer will get (to name its ring first).
    pub fn peek_sent_id(&self) -> Result<u64> {
        let tx = self.read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(KEY_NEXT_OFFER)?.map(|v| v.value()).unwrap_or(1))
    }

    /// Removes sent offer `id` (and its owner row) if `when` holds for it.
    pub fn remove_sent_if(
        &self,
        id: u64,
        when: impl FnOnce(&SentOffer) -> bool,
    ) -> Result<Option<SentOffer>> {
        let removed = self.remove_row_if(SENT, id, when)?;
        if removed.is_some() {
            self.remove_owner(Owned::Sent, &id.to_be_bytes())?;
        }
        Ok(removed)
    }

    /// Removes inbox offer `id` if `when` holds for it.
    pub fn remove_inbox_if(
        &self,
        id: u64,
        when: impl FnOnce(&InboxOffer) -> bool,
    ) -> Result<Option<InboxOffer>> {
        self.remove_row_if(INBOX, id, when)
    }

    /// Forgets history older than `before` (unix seconds): ended sent
    /// offers that expired before it and answered inbox offers received
    /// before it whose receipt is delivered. How many of each went.
    pub fn prune_offers(&self, before: i64) -> Result<(usize, usize)> {
        let sent = self.prune_rows(SENT, |r: &SentOffer| {
            r.state.is_final() && r.expires_at < before
        })?;
        for id in &sent {
            self.remove_owner(Owned::Sent, &id.to_be_bytes())?;
        }
        let inbox = self.prune_rows(INBOX, |r: &InboxOffer| {
            r.state.is_answered() && r.receipt.is_none() && r.received_at < before
        })?;
        Ok((sent.len(), inbox.len()))
    }

    pub fn put_sent(&self, rec: &SentOffer) -> Result<()> {
        self.put_row(SENT, rec.id, rec)
    }

    /// Changes a sent offer in one transaction (no update lost to a
    /// receipt or a delivery landing at the same time); the offer after
    /// the change, if it exists.
    pub fn update_sent(
        &self,
        id: u64,
        change: impl FnOnce(&mut SentOffer),
    ) -> Result<Option<SentOffer>> {
        self.update_row(SENT, id, change)
    }

    /// Changes an inbox offer in one transaction (see [`Self::update_sent`]).
    pub fn update_inbox(
        &self,
        id: u64,
        change: impl FnOnce(&mut InboxOffer),
    ) -> Result<Option<InboxOffer>> {
        self.update_row(INBOX, id, change)
    }

    /// Peer `peer` is reachable now: what this node owes it (queued offers,
    /// receipts) is due at once, in one transaction; how many.
    pub fn due_now_for(&self, peer: &[u8; 32]) -> Result<usize> {
        let tx = self.write()?;
        let n = change_rows(
            &mut tx.open_table(SENT)?,
            |o: &SentOffer| o.peer == *peer && o.state == SentState::Queued && o.next_try_at > 0,
            |o| o.next_try_at = 0,
        )? + change_rows(
            &mut tx.open_table(INBOX)?,
            |o: &InboxOffer| o.from == *peer && o.receipt.is_some() && o.receipt_next_try > 0,
            |o| o.receipt_next_try = 0,
        )?;
        tx.commit()?;
        Ok(n)
    }

    pub fn sent(&self) -> Result<Vec<SentOffer>> {
        self.rows(SENT)
    }

    pub fn sent_offer(&self, id: u64) -> Result<Option<SentOffer>> {
        self.row(SENT, id)
    }

    /// Stores an offer from `rec.from`, within the inbox's limits, once.
    pub fn store_offer(&self, mut rec: InboxOffer) -> Result<Stored> {
        let tx = self.write()?;
        let stored = {
            let mut inbox = tx.open_table(INBOX)?;
            let mut total = 0usize;
            let mut pending = 0usize;
            let mut again = None;
            for item in inbox.iter()? {
                let o: InboxOffer = decode_row(item?.1.value())?;
                // Answered offers are history, not load: only those still
                // waiting for an answer count against the caps.
                if o.state == InboxState::New {
                    total += 1;
                }
                if o.from == rec.from {
                    if o.remote_id == rec.remote_id {
                        again = Some(o.clone());
                    }
                    if o.state == InboxState::New {
                        pending += 1;
                    }
                }
            }
            if let Some(o) = again {
                Stored::Again(o)
            } else if pending >= MAX_PENDING_PER_PEER {
                Stored::Full(format!(
                    "the inbox holds {MAX_PENDING_PER_PEER} unanswered offers from you already"
                ))
            } else if total >= MAX_INBOX {
                Stored::Full(format!("the inbox is full ({MAX_INBOX} unanswered offers)"))
            } else {
                rec.id = next_id(&mut tx.open_table(META)?, KEY_NEXT_INBOX)?;
                inbox.insert(rec.id, encode_row(&rec)?.as_slice())?;
                Stored::New(rec)
            }
        };
        tx.commit()?;
        Ok(stored)
    }

    pub fn put_inbox(&self, rec: &InboxOffer) -> Result<()> {
        self.put_row(INBOX, rec.id, rec)
    }

    pub fn inbox(&self) -> Result<Vec<InboxOffer>> {
        self.rows(INBOX)
    }

    pub fn inbox_offer(&self, id: u64) -> Result<Option<InboxOffer>> {
        self.row(INBOX, id)
    }

    pub fn trust(&self, peer: &[u8; 32]) -> Result<Option<TrustRecord>> {
        let tx = self.read()?;
        let found = tx
            .open_table(TRUST)?
            .get(peer)?
            .map(|v| decode_row(v.value()))
            .transpose()?;
        Ok(found)
    }

    pub fn remove_trust(&self, peer: &[u8; 32]) -> Result<bool> {
        let tx = self.write()?;
        let removed = tx.open_table(TRUST)?.remove(peer)?.is_some();
        tx.commit()?;
        Ok(removed)
    }

    /// Whether `peer` is a contact of local user `uid`: in an address-book
    /// entry, a ring or a trust rule `uid` owns (the daemon's own user also
    /// by the rings it joined).
    pub fn is_contact_of(&self, uid: u32, peer: &[u8; 32], now: i64) -> Result<bool> {
        let peers = self.owners(Owned::Peer)?;
        if self
            .peers()?
            .iter()
            .any(|p| p.id == *peer && peers.of(p.name.as_bytes()) == uid)
        {
            return Ok(true);
        }
        if self.trust(peer)?.is_some() && self.owner(Owned::Trust, peer)? == uid {
            return Ok(true);
        }
        if uid == daemon_uid() && self.joined()?.iter().any(|(owner, _, _)| owner == peer) {
            return Ok(true);
        }
        let rings = self.owners(Owned::Ring)?;
        let mine: Vec<String> = self
            .rings()?
            .into_iter()
            .map(|r| r.name)
            .filter(|r| rings.of(r.as_bytes()) == uid)
            .collect();
        self.member_of_any(&mine, peer, now)
    }

    /// Sets the trust rule for `peer` owned by `owner`, in one transaction:
    /// false (nothing written) when another user's rule is there (one rule
    /// a sender).
    pub fn put_trust_owned(
        &self,
        peer: &[u8; 32],
        rec: &TrustRecord,
        per_day: u64,
        owner: u32,
    ) -> Result<bool> {
        let tx = self.write()?;
        let put = {
            let mut trust = tx.open_table(TRUST)?;
            let mut owners = tx.open_table(OWNERS)?;
            let exists = trust.get(peer)?.is_some();
            let current = super::owners::owner_in(&owners, Owned::Trust, peer)?;
            if exists && current != owner {
                false
            } else {
                trust.insert(peer, encode_row(rec)?.as_slice())?;
                owners.insert((Owned::Trust.tag(), peer.as_slice()), owner)?;
                tx.open_table(TRUST_DAILY)?.insert(peer, per_day)?;
                true
            }
        };
        tx.commit()?;
        Ok(put)
    }

    /// Most bytes of `peer`'s offers accepted by themselves in 24 hours.
    pub fn trust_per_day(&self, peer: &[u8; 32]) -> Result<u64> {
        let tx = self.read()?;
        let found = tx.open_table(TRUST_DAILY)?.get(peer)?.map(|v| v.value());
        Ok(found.unwrap_or(DEFAULT_TRUST_PER_DAY))
    }

    /// Whether `peer` may send offers here: in the address book, a member
    /// of one of this node's rings, or the owner of a ring it joined.
    pub fn is_contact(&self, peer: &[u8; 32], now: i64) -> Result<bool> {
        if self.peers()?.iter().any(|p| p.id == *peer) {
            return Ok(true);
        }
        if self.joined()?.iter().any(|(owner, _, _)| owner == peer) {
            return Ok(true);
        }
        let rings: Vec<String> = self.rings()?.into_iter().map(|r| r.name).collect();
        self.member_of_any(&rings, peer, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(from: u8, remote_id: u64) -> InboxOffer {
        InboxOffer {
            id: 0,
            from: [from; 32],
            remote_id,
            name: "x".into(),
            size: 1,
            files: 1,
            ticket: String::new(),
            received_at: 0,
            state: InboxState::New,
            transfer_id: None,
            receipt: None,
            receipt_attempts: 0,
            receipt_next_try: 0,
        }
    }

    /// Answered offers are history: after the inbox's whole cap was
    /// received and answered, new offers are still taken.
    #[test]
    fn only_unanswered_offers_count_against_the_caps() {
        let dir = std::env::temp_dir().join(format!("rdrop-inbox-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let reg = Tables::open_for_test(&dir.join("r.redb")).unwrap();
        for i in 0..MAX_INBOX as u64 {
            // Many senders, so the per-sender cap is not what refuses.
            let Stored::New(mut rec) = reg.store_offer(offer((i % 50) as u8, i)).unwrap() else {
                panic!("offer {i} refused");
            };
            rec.state = InboxState::Completed;
            reg.put_inbox(&rec).unwrap();
        }
        assert!(matches!(
            reg.store_offer(offer(200, 1)).unwrap(),
            Stored::New(_)
        ));
        // Unanswered ones still count: the per-sender cap holds.
        for i in 0..MAX_PENDING_PER_PEER as u64 - 1 {
            assert!(matches!(
                reg.store_offer(offer(201, i)).unwrap(),
                Stored::New(_)
            ));
        }
        assert!(matches!(
            reg.store_offer(offer(201, 999)).unwrap(),
            Stored::New(_)
        ));
        assert!(matches!(
            reg.store_offer(offer(201, 1000)).unwrap(),
            Stored::Full(_)
        ));
        drop(reg);
        std::fs::remove_dir_all(dir).ok();
    }
}
