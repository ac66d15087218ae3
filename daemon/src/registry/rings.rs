//! Rings (named groups of endpoint ids, members with optional expiry) and
//! the address book. `open` is built in: anyone holding the ticket.

use iroh_blobs::Hash;
use redb::ReadableTable;

use super::*;

/// The built-in ring that lets anyone holding the ticket fetch.
pub const OPEN_RING: &str = "open";

/// A ring and how many members it has (all, and unexpired now).
#[derive(Debug, Clone)]
pub struct RingInfo {
    pub name: String,
    pub created_at: i64,
    pub members: u64,
}

/// A ring member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: [u8; 32],
    /// Unix seconds; `None`: never expires.
    pub expires_at: Option<i64>,
}

fn member_range(ring: &str) -> std::ops::RangeInclusive<(&str, &'static [u8; 32])> {
    (ring, &[0u8; 32])..=(ring, &[0xffu8; 32])
}

impl Tables {
    /// Creates a ring owned by `owner`; false if it exists (names are
    /// node-wide: first come, first served).
    pub fn create_ring(&self, name: &str, now: i64, owner: u32) -> Result<bool> {
        let tx = self.write()?;
        let created = {
            let mut rings = tx.open_table(RINGS)?;
            if rings.get(name)?.is_some() {
                false
            } else {
                rings.insert(name, now)?;
                tx.open_table(OWNERS)?
                    .insert((Owned::Ring.tag(), name.as_bytes()), owner)?;
                true
            }
        };
        tx.commit()?;
        Ok(created)
    }

    /// Whether ring `name` exists (`open` always does).
    pub fn ring_exists(&self, name: &str) -> Result<bool> {
        if name == OPEN_RING {
            return Ok(true);
        }
        let tx = self.read()?;
        Ok(tx.open_table(RINGS)?.get(name)?.is_some())
    }

    /// All rings but `open`, by name.
    pub fn rings(&self) -> Result<Vec<RingInfo>> {
        let tx = self.read()?;
        let rings = tx.open_table(RINGS)?;
        let members = tx.open_table(RING_MEMBERS)?;
        let mut out = Vec::new();
        for item in rings.iter()? {
            let (name, created) = item?;
            let name = name.value().to_string();
            let count = members.range(member_range(&name))?.count() as u64;
            out.push(RingInfo {
                name,
                created_at: created.value(),
                members: count,
            });
        }
        Ok(out)
    }

    /// Removes a ring and its members, and takes it off every share.
    /// Returns the members it had, or `None` if there was no such ring.
    pub fn remove_ring(&self, name: &str) -> Result<Option<Vec<Member>>> {
        let tx = self.write()?;
        let removed = remove_ring_in(&tx, name)?;
        tx.commit()?;
        self.shares_changed();
        Ok(removed)
    }

    /// Ends an offer's access in one transaction: its ring goes (members,
    /// and off every share), and the share `hash` too when the offer
    /// created it and no ring is left on it. Nothing a concurrent share or
    /// send wrote is lost: it committed before or it commits after.
    /// `None` if the ring was already gone.
    pub fn end_offer(
        &self,
        ring: &str,
        hash: &Hash,
        owner: u32,
        created_share: bool,
    ) -> Result<Option<(Vec<Member>, Option<ShareRecord>)>> {
        let tx = self.write()?;
        let Some(members) = remove_ring_in(&tx, ring)? else {
            return Ok(None);
        };
        let mut unshared = None;
        if created_share {
            let mut shares = tx.open_table(SHARES)?;
            let orphan: Option<ShareRecord> = {
                let v = shares.get((hash.as_bytes(), owner))?;
                v.map(|v| decode_row(v.value())).transpose()?
            };
            if let Some(rec) = orphan.filter(|r| r.rings.is_empty()) {
                shares.remove((hash.as_bytes(), owner))?;
                drop(shares);
                super::shares::unindex_share_in(&tx, &rec)?;
                unshared = Some(rec);
            }
        }
        tx.commit()?;
        self.shares_changed();
        Ok(Some((members, unshared)))
    }

    /// Adds or updates a member (expiry in unix seconds, `None`: never).
    pub fn add_member(&self, ring: &str, id: &[u8; 32], expires_at: Option<i64>) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(RING_MEMBERS)?
            .insert((ring, id), expires_at.unwrap_or(0))?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a member; false if it was not one.
    pub fn remove_member(&self, ring: &str, id: &[u8; 32]) -> Result<bool> {
        let tx = self.write()?;
        let removed = tx.open_table(RING_MEMBERS)?.remove((ring, id))?.is_some();
        tx.commit()?;
        Ok(removed)
    }

    /// Members of a ring.
    pub fn members(&self, ring: &str) -> Result<Vec<Member>> {
        let tx = self.read()?;
        let members = tx.open_table(RING_MEMBERS)?;
        let mut out = Vec::new();
        for item in members.range(member_range(ring))? {
            let (k, v) = item?;
            out.push(Member {
                id: *k.value().1,
                expires_at: expiry(v.value()),
            });
        }
        Ok(out)
    }

    /// Whether `peer` is a current (unexpired at `now`) member of one of
    /// `rings`; `open` has no members. The access policy lives in
    /// `crate::access::policy`.
    pub fn member_of_any(&self, rings: &[String], peer: &[u8; 32], now: i64) -> Result<bool> {
        let tx = self.read()?;
        let members = tx.open_table(RING_MEMBERS)?;
        for ring in rings {
            if let Some(v) = members.get((ring.as_str(), peer))? {
                match expiry(v.value()) {
                    Some(at) if at <= now => {}
                    _ => return Ok(true),
                }
            }
        }
        Ok(false)
    }

    // ---- address book ----

    /// Adds or replaces an address-book entry.
    pub fn put_peer(&self, rec: &PeerRecord) -> Result<()> {
        let tx = self.write()?;
        tx.open_table(PEERS)?
            .insert(rec.name.as_str(), encode_row(rec)?.as_slice())?;
        tx.commit()?;
        self.forget_names();
        Ok(())
    }

    /// Where endpoint `id` is now: every address-book entry of it takes
    /// `ips` (unless empty) and `relay` (if any), in one transaction; how
    /// many entries it has. Names do not change, so the name index stays.
    pub fn refresh_addrs(
        &self,
        id: &[u8; 32],
        ips: &[std::net::SocketAddr],
        relay: Option<String>,
    ) -> Result<usize> {
        let tx = self.write()?;
        let mut n = 0;
        {
            let mut peers = tx.open_table(PEERS)?;
            let mut book = Vec::new();
            for item in peers.iter()? {
                book.push(decode_row::<PeerRecord>(item?.1.value())?);
            }
            for mut rec in book.into_iter().filter(|p| p.id == *id) {
                if !ips.is_empty() {
                    rec.addrs = ips.to_vec();
                }
                if relay.is_some() {
                    rec.relay = relay.clone();
                }
                rec.updated_at = ringdrop_proto::clock::now();
                peers.insert(rec.name.as_str(), encode_row(&rec)?.as_slice())?;
                n += 1;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Records what `seen` says of its id (addresses, relay, time) in one
    /// transaction: under the name an entry already gives that id, else
    /// under `base` made free (`-2`, `-3`... appended). The name used.
    pub fn remember_peer(&self, base: &str, seen: &PeerRecord) -> Result<String> {
        let tx = self.write()?;
        let name = {
            let mut peers = tx.open_table(PEERS)?;
            let mut book = Vec::new();
            for item in peers.iter()? {
                book.push(decode_row::<PeerRecord>(item?.1.value())?);
            }
            let mut rec = match book.iter().find(|p| p.id == seen.id) {
                Some(known) => known.clone(),
                None => {
                    let taken = |n: &str| book.iter().any(|p| p.name == n);
                    let mut name = base.to_string();
                    let mut i = 2;
                    while taken(&name) {
                        name = format!("{base}-{i}");
                        i += 1;
                    }
                    PeerRecord {
                        name,
                        ..seen.clone()
                    }
                }
            };
            if seen.relay.is_some() {
                rec.relay = seen.relay.clone();
            }
            if !seen.addrs.is_empty() {
                rec.addrs = seen.addrs.clone();
            }
            rec.updated_at = seen.updated_at;
            peers.insert(rec.name.as_str(), encode_row(&rec)?.as_slice())?;
            rec.name
        };
        tx.commit()?;
        self.forget_names();
        Ok(name)
    }

    /// The entry named `name`.
    pub fn peer(&self, name: &str) -> Result<Option<PeerRecord>> {
        let tx = self.read()?;
        match tx.open_table(PEERS)?.get(name)? {
            Some(v) => Ok(Some(decode_row(v.value())?)),
            None => Ok(None),
        }
    }

    /// All entries, by name.
    pub fn peers(&self) -> Result<Vec<PeerRecord>> {
        let tx = self.read()?;
        let peers = tx.open_table(PEERS)?;
        let mut out = Vec::new();
        for item in peers.iter()? {
            out.push(decode_row::<PeerRecord>(item?.1.value())?);
        }
        Ok(out)
    }

    /// Removes an entry; false if there was none.
    pub fn remove_peer(&self, name: &str) -> Result<bool> {
        let tx = self.write()?;
        let removed = tx.open_table(PEERS)?.remove(name)?.is_some();
        tx.commit()?;
        self.forget_names();
        Ok(removed)
    }

    /// Names by endpoint id (the first entry by name for an id), from the
    /// index kept since the book last changed.
    pub fn peer_names(&self) -> Result<std::collections::HashMap<[u8; 32], String>> {
        let changes = match self.names.lock() {
            Ok(kept) => match &kept.names {
                Some(names) => return Ok(names.clone()),
                None => kept.changes,
            },
            Err(_) => u64::MAX,
        };
        let mut names = std::collections::HashMap::new();
        for p in self.peers()? {
            names.entry(p.id).or_insert(p.name);
        }
        if let Ok(mut kept) = self.names.lock() {
            // Kept only if the book did not change since the read began.
            if kept.changes == changes {
                kept.names = Some(names.clone());
            }
        }
        Ok(names)
    }

    /// The address-book name of `id`, if it has one.
    pub fn peer_name(&self, id: &[u8; 32]) -> Result<Option<String>> {
        if let Ok(kept) = self.names.lock() {
            if let Some(names) = &kept.names {
                return Ok(names.get(id).cloned());
            }
        }
        Ok(self.peer_names()?.get(id).cloned())
    }

    /// The book changed: the name index is rebuilt when next asked.
    fn forget_names(&self) {
        if let Ok(mut kept) = self.names.lock() {
            kept.changes = kept.changes.wrapping_add(1);
            kept.names = None;
        }
    }
}

/// Removes ring `name` inside `tx`: its row, owner and members, and its
/// name from every share. The members it had, or `None`.
fn remove_ring_in(tx: &redb::WriteTransaction, name: &str) -> Result<Option<Vec<Member>>> {
    let mut rings = tx.open_table(RINGS)?;
    if rings.remove(name)?.is_none() {
        return Ok(None);
    }
    tx.open_table(OWNERS)?
        .remove((Owned::Ring.tag(), name.as_bytes()))?;
    let mut members = tx.open_table(RING_MEMBERS)?;
    let gone: Vec<Member> = members
        .extract_from_if(member_range(name), |_, _| true)?
        .map(|r| {
            r.map(|(k, v)| Member {
                id: *k.value().1,
                expires_at: expiry(v.value()),
            })
        })
        .collect::<std::result::Result<_, _>>()?;
    let mut shares = tx.open_table(SHARES)?;
    let mut changed = Vec::new();
    for item in shares.iter()? {
        let (_, v) = item?;
        let mut rec: ShareRecord = decode_row(v.value())?;
        if rec.rings.iter().any(|r| r == name) {
            rec.rings.retain(|r| r != name);
            changed.push(rec);
        }
    }
    for rec in changed {
        shares.insert(
            (rec.hash.as_bytes(), rec.owner),
            encode_row(&rec)?.as_slice(),
        )?;
    }
    Ok(Some(gone))
}

fn expiry(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(hash: Hash, rings: &[&str]) -> ShareRecord {
        ShareRecord {
            hash,
            name: "n".into(),
            path: "/x".into(),
            size: 1,
            files: 1,
            created_at: 0,
            children: vec![],
            rings: rings.iter().map(|r| r.to_string()).collect(),
            sources: vec![],
            listed: false,
            owner: 4242,
        }
    }

    /// The name index follows the book: a new entry, a second name for
    /// one id (the first by name wins) and a removal are seen at once.
    #[test]
    fn names_by_id_follow_the_address_book() {
        let dir = std::env::temp_dir().join(format!("rdrop-names-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let reg = Tables::open_for_test(&dir.join("r.redb")).unwrap();
        let peer = |name: &str, id: u8| PeerRecord {
            name: name.into(),
            id: [id; 32],
            relay: None,
            addrs: vec![],
            updated_at: 0,
        };
        assert_eq!(reg.peer_name(&[1; 32]).unwrap(), None);
        reg.put_peer(&peer("carol", 1)).unwrap();
        assert_eq!(reg.peer_name(&[1; 32]).unwrap().as_deref(), Some("carol"));
        reg.put_peer(&peer("alice", 1)).unwrap();
        assert_eq!(reg.peer_name(&[1; 32]).unwrap().as_deref(), Some("alice"));
        assert!(reg.remove_peer("alice").unwrap());
        assert_eq!(reg.peer_name(&[1; 32]).unwrap().as_deref(), Some("carol"));
        assert_eq!(reg.peer_names().unwrap().len(), 1);
        drop(reg);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Remembering a peer picks its name and writes it in one step: an id
    /// already in the book keeps its name and learns new addresses; two
    /// ids proposing one name get two names.
    #[test]
    fn remembered_peers_keep_their_names_and_never_share_one() {
        let dir = std::env::temp_dir().join(format!("rdrop-remember-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let reg = Tables::open_for_test(&dir.join("r.redb")).unwrap();
        let seen = |id: u8, port: u16| PeerRecord {
            name: String::new(),
            id: [id; 32],
            relay: None,
            addrs: vec![([127, 0, 0, 1], port).into()],
            updated_at: i64::from(port),
        };
        assert_eq!(reg.remember_peer("laptop", &seen(1, 1)).unwrap(), "laptop");
        assert_eq!(
            reg.remember_peer("laptop", &seen(2, 2)).unwrap(),
            "laptop-2"
        );
        assert_eq!(reg.remember_peer("other", &seen(1, 3)).unwrap(), "laptop");
        let first = reg.peer("laptop").unwrap().unwrap();
        assert_eq!((first.id, first.updated_at), ([1; 32], 3));
        assert_eq!(first.addrs, vec![([127, 0, 0, 1], 3).into()]);
        assert_eq!(
            reg.peer_name(&[2; 32]).unwrap().as_deref(),
            Some("laptop-2")
        );
        assert_eq!(reg.peers().unwrap().len(), 2);
        drop(reg);
        std::fs::remove_dir_all(dir).ok();
    }

    /// Ending an offer removes exactly what it added: a ring given to its
    /// share meanwhile stays (and so does the share); a share with nothing
    /// else left goes.
    #[test]
    fn ending_an_offer_keeps_what_others_added() {
        let dir = std::env::temp_dir().join(format!("rdrop-offer-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let reg = Tables::open_for_test(&dir.join("r.redb")).unwrap();
        let (kept, gone) = (Hash::new(b"kept"), Hash::new(b"gone"));
        for (h, ring) in [(kept, "offer-1"), (gone, "offer-2")] {
            assert!(reg.create_ring(ring, 0, 4242).unwrap());
            reg.insert_share(&share(h, &[ring])).unwrap();
        }
        assert!(reg.create_ring("team", 0, 4242).unwrap());
        reg.widen_share(4242, &kept, &["team".to_string()], false, vec![])
            .unwrap()
            .unwrap();

        let (_, unshared) = reg
            .end_offer("offer-1", &kept, 4242, true)
            .unwrap()
            .unwrap();
        assert!(unshared.is_none());
        assert_eq!(
            reg.share_of(4242, &kept).unwrap().unwrap().rings,
            vec!["team".to_string()]
        );
        let (_, unshared) = reg
            .end_offer("offer-2", &gone, 4242, true)
            .unwrap()
            .unwrap();
        assert_eq!(unshared.map(|s| s.hash), Some(gone));
        assert!(reg.shares_of(&gone).unwrap().is_empty());
        // Ended once: the second time there is nothing to end.
        assert!(reg
            .end_offer("offer-2", &gone, 4242, true)
            .unwrap()
            .is_none());
        drop(reg);
        std::fs::remove_dir_all(dir).ok();
    }
}
