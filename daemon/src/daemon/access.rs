//! Access control on the facade: rings and their members, the address
//! book, what is being served, and other peers' catalogs. Every revocation
//! closes the affected peers' live connections; they may reconnect for
//! whatever they may still fetch.

use std::str::FromStr;

use iroh::{EndpointAddr, EndpointId, RelayUrl};
use tracing::info;

use super::Daemon;
use crate::{
    authority::Caller,
    catalog::{self, CatalogError},
    provider::Upload,
    registry::{InviteRecord, Member, Owned, PeerRecord, RegistryError, RingInfo, OPEN_RING},
    ticket::Ticket,
};
use ringdrop_proto::clock::now;

/// Errors of rings, members and peers.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no ring named '{0}': see `ringdropctl ring ls`")]
    UnknownRing(String),
    #[error("ring '{0}' already exists")]
    RingExists(String),
    #[error("ring 'open' is built in (anyone holding a ticket): it cannot be created, removed or given members")]
    OpenRing,
    #[error("invalid name {0:?}: use 1-64 letters, digits, '-', '_' or '.', and nothing that reads as an endpoint id")]
    BadName(String),
    #[error("'{0}' is not an endpoint id, a ticket or a name in the address book: add it with `ringdropctl peer add NAME ENDPOINT_ID`")]
    UnknownPeer(String),
    #[error("no peer named '{0}' in the address book")]
    NoSuchPeer(String),
    #[error("{peer} is not a member of ring '{ring}'")]
    NotMember { ring: String, peer: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("no invite with id {0}: see `ringdropctl ring invites`")]
    NoSuchInvite(String),
    #[error("{0}")]
    BadInviteTerms(String),
    #[error(transparent)]
    Join(#[from] crate::invites::JoinError),
}

/// A peer as the user named it, resolved.
#[derive(Debug, Clone)]
pub struct PeerRef {
    pub id: EndpointId,
    /// Address-book name, if it has one.
    pub name: Option<String>,
    pub addr: EndpointAddr,
}

/// Address-book names by endpoint id: one read of the book names every
/// row of a listing (the first entry for an id wins, as `resolve_peer`).
#[derive(Debug, Default)]
pub struct PeerNames(std::collections::HashMap<[u8; 32], String>);

impl PeerNames {
    /// The name of `id` (empty: not in the book).
    pub fn of(&self, id: &[u8; 32]) -> String {
        self.0.get(id).cloned().unwrap_or_default()
    }
}

fn check_name(name: &str) -> Result<(), AccessError> {
    // A name that reads as an endpoint id would shadow that endpoint
    // wherever a PEER argument is resolved.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.parse::<EndpointId>().is_err();
    if ok {
        Ok(())
    } else {
        Err(AccessError::BadName(name.to_string()))
    }
}

fn addr_of(rec: &PeerRecord) -> Option<EndpointAddr> {
    let id = EndpointId::from_bytes(&rec.id).ok()?;
    let mut addr = EndpointAddr::new(id);
    if let Some(url) = rec
        .relay
        .as_deref()
        .and_then(|r| RelayUrl::from_str(r).ok())
    {
        addr = addr.with_relay_url(url);
    }
    for a in &rec.addrs {
        addr = addr.with_ip_addr(*a);
    }
    Some(addr)
}

impl Daemon {
    fn registry(&self) -> &crate::registry::Registry {
        &self.inner.registry
    }

    /// Resolves an endpoint id, a ticket or an address-book name.
    pub async fn resolve_peer(&self, peer: &str) -> Result<PeerRef, AccessError> {
        let peer = peer.trim();
        if let Some(rec) = self.registry().peer(peer).await? {
            if let Some(addr) = addr_of(&rec) {
                return Ok(PeerRef {
                    id: addr.id,
                    name: Some(rec.name),
                    addr,
                });
            }
        }
        let addr = if let Ok(id) = EndpointId::from_str(peer) {
            EndpointAddr::new(id)
        } else if let Ok(t) = peer.parse::<Ticket>() {
            t.addr
        } else {
            return Err(AccessError::UnknownPeer(peer.to_string()));
        };
        // Known by id under some name: use its last known addresses too.
        let known = match self.registry().peer_name(addr.id.as_bytes()).await? {
            Some(name) => self.registry().peer(&name).await?,
            None => None,
        };
        let mut full = known
            .as_ref()
            .and_then(addr_of)
            .unwrap_or_else(|| EndpointAddr::new(addr.id));
        for a in addr.addrs {
            full.addrs.insert(a);
        }
        Ok(PeerRef {
            id: full.id,
            name: known.map(|k| k.name.clone()),
            addr: full,
        })
    }

    /// Refreshes the address-book entries of `addr.id` with its addresses.
    pub(super) async fn remember_addr(&self, addr: &EndpointAddr) {
        let Ok(book) = self.registry().peers().await else {
            return;
        };
        for mut rec in book.into_iter().filter(|p| p.id == *addr.id.as_bytes()) {
            let ips: Vec<_> = addr.ip_addrs().copied().collect();
            if !ips.is_empty() {
                rec.addrs = ips;
            }
            if let Some(r) = addr.relay_urls().next() {
                rec.relay = Some(r.to_string());
            }
            rec.updated_at = now();
            self.registry().put_peer(&rec).await.ok();
        }
    }

    /// Creates a ring owned by `caller` (names are node-wide: first come,
    /// first served).
    pub async fn create_ring(&self, caller: &Caller, name: &str) -> Result<(), AccessError> {
        if name == OPEN_RING {
            return Err(AccessError::OpenRing);
        }
        check_name(name)?;
        if !self.registry().create_ring(name, now(), caller.uid).await? {
            return Err(AccessError::RingExists(name.to_string()));
        }
        info!(uid = caller.uid, ring = name, "ring created");
        Ok(())
    }

    /// The rings `caller` owns (an admin: all); the first is always `open`.
    pub async fn rings(&self, caller: &Caller) -> Result<Vec<RingInfo>, AccessError> {
        let mut out = vec![RingInfo {
            name: OPEN_RING.to_string(),
            created_at: 0,
            members: 0,
        }];
        let owners = self.registry().owners(Owned::Ring).await?;
        out.extend(
            self.registry()
                .rings()
                .await?
                .into_iter()
                .filter(|r| caller.controls(owners.of(r.name.as_bytes()))),
        );
        Ok(out)
    }

    /// Removes a ring; its members lose access to its shares at once.
    pub async fn remove_ring(&self, caller: &Caller, name: &str) -> Result<(), AccessError> {
        self.existing_ring(caller, name).await?;
        let members = self
            .registry()
            .remove_ring(name)
            .await?
            .ok_or_else(|| AccessError::UnknownRing(name.to_string()))?;
        info!(uid = caller.uid, ring = name, "ring removed");
        for m in members {
            if let Ok(id) = EndpointId::from_bytes(&m.id) {
                self.inner.gate.disconnect(id);
            }
        }
        Ok(())
    }

    /// A ring `caller` controls (another user's is "no ring named").
    async fn existing_ring(&self, caller: &Caller, ring: &str) -> Result<(), AccessError> {
        if ring == OPEN_RING {
            return Err(AccessError::OpenRing);
        }
        if !self.registry().ring_exists(ring).await?
            || !caller.controls(self.registry().owner(Owned::Ring, ring.as_bytes()).await?)
        {
            return Err(AccessError::UnknownRing(ring.to_string()));
        }
        Ok(())
    }

    /// Adds (or updates) a member; `expires_at` in unix seconds.
    pub async fn add_member(
        &self,
        caller: &Caller,
        ring: &str,
        peer: &str,
        expires_at: Option<i64>,
    ) -> Result<Member, AccessError> {
        self.existing_ring(caller, ring).await?;
        let p = self.resolve_peer(peer).await?;
        self.registry()
            .add_member(ring, p.id.as_bytes(), expires_at)
            .await?;
        info!(uid = caller.uid, ring, peer = %p.id, ?expires_at, "member added");
        Ok(Member {
            id: *p.id.as_bytes(),
            expires_at,
        })
    }

    /// Removes a member and closes its live connections.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        ring: &str,
        peer: &str,
    ) -> Result<Member, AccessError> {
        self.existing_ring(caller, ring).await?;
        let p = self.resolve_peer(peer).await?;
        if !self.registry().remove_member(ring, p.id.as_bytes()).await? {
            return Err(AccessError::NotMember {
                ring: ring.to_string(),
                peer: peer.to_string(),
            });
        }
        let closed = self.inner.gate.disconnect(p.id);
        info!(uid = caller.uid, ring, peer = %p.id, closed, "member removed");
        Ok(Member {
            id: *p.id.as_bytes(),
            expires_at: None,
        })
    }

    /// Members of a ring.
    pub async fn members(&self, caller: &Caller, ring: &str) -> Result<Vec<Member>, AccessError> {
        self.existing_ring(caller, ring).await?;
        Ok(self.registry().members(ring).await?)
    }

    /// Adds or replaces an address-book entry from an endpoint id or a ticket.
    pub async fn add_peer(
        &self,
        caller: &Caller,
        name: &str,
        id_or_ticket: &str,
    ) -> Result<PeerRecord, AccessError> {
        check_name(name)?;
        let fresh = self.registry().peer(name).await?.is_none();
        if !self
            .registry()
            .claim(Owned::Peer, name.as_bytes(), caller.uid, fresh)
            .await?
            && !caller.is_admin()
        {
            return Err(AccessError::BadInviteTerms(format!(
                "the name '{name}' is another user's address-book entry: choose another name"
            )));
        }
        let s = id_or_ticket.trim();
        let addr = if let Ok(id) = EndpointId::from_str(s) {
            EndpointAddr::new(id)
        } else if let Ok(t) = s.parse::<Ticket>() {
            t.addr
        } else {
            return Err(AccessError::UnknownPeer(s.to_string()));
        };
        let rec = PeerRecord {
            name: name.to_string(),
            id: *addr.id.as_bytes(),
            relay: addr.relay_urls().next().map(|u| u.to_string()),
            addrs: addr.ip_addrs().copied().collect(),
            updated_at: now(),
        };
        self.registry().put_peer(&rec).await?;
        info!(uid = caller.uid, name, peer = %addr.id, "address-book entry set");
        Ok(rec)
    }

    /// The address-book entries `caller` owns (an admin: all). Any caller
    /// may still resolve any name.
    pub async fn peers(&self, caller: &Caller) -> Result<Vec<PeerRecord>, AccessError> {
        let owners = self.registry().owners(Owned::Peer).await?;
        let mut all = self.registry().peers().await?;
        all.retain(|p| caller.controls(owners.of(p.name.as_bytes())));
        Ok(all)
    }

    /// Removes an address-book entry (memberships stay, by endpoint id).
    pub async fn remove_peer(&self, caller: &Caller, name: &str) -> Result<(), AccessError> {
        if !caller.controls(self.registry().owner(Owned::Peer, name.as_bytes()).await?)
            || !self.registry().remove_peer(name).await?
        {
            return Err(AccessError::NoSuchPeer(name.to_string()));
        }
        self.registry()
            .remove_owner(Owned::Peer, name.as_bytes())
            .await?;
        info!(uid = caller.uid, name, "address-book entry removed");
        Ok(())
    }

    /// Names for endpoint ids, node-wide (any operator may resolve a
    /// name); an unreadable book names nobody.
    pub async fn peer_names(&self) -> PeerNames {
        PeerNames(self.registry().peer_names().await.unwrap_or_default())
    }

    /// What is being served right now of the shares `caller` owns (an
    /// admin: everything).
    pub async fn uploads(&self, caller: &Caller) -> Vec<Upload> {
        let mut all = self.inner.uploads.list();
        if caller.is_admin() {
            return all;
        }
        let mine =
            |rows: &[crate::registry::ShareRecord]| rows.iter().any(|s| caller.controls(s.owner));
        let mut out = Vec::new();
        for u in all.drain(..) {
            let mut any = false;
            for h in &u.shares {
                any |= self
                    .registry()
                    .shares_of(h)
                    .await
                    .is_ok_and(|rows| mine(&rows));
            }
            if any {
                out.push(u);
            }
        }
        out
    }

    /// Shares `peer` lets this node fetch, with tickets for them.
    pub async fn remote_list(
        &self,
        peer: &str,
    ) -> Result<(PeerRef, Vec<(catalog::Entry, String)>), AccessError> {
        let p = self.resolve_peer(peer).await?;
        let entries = catalog::list_remote(&self.inner.endpoint, p.addr.clone()).await?;
        let out = entries
            .into_iter()
            .map(|e| {
                let ticket = Ticket::new(p.addr.clone(), e.hash, Some(e.name.clone())).to_string();
                (e, ticket)
            })
            .collect();
        Ok((p, out))
    }

    /// A new invite to `ring`: `uses` redemptions (at least 1), valid for
    /// `valid_for` seconds, granting `member_for` seconds of membership
    /// (`None`: for good). Returns the record and the ticket.
    pub async fn create_invite(
        &self,
        caller: &Caller,
        ring: &str,
        uses: u32,
        valid_for: i64,
        member_for: Option<i64>,
    ) -> Result<(InviteRecord, String), AccessError> {
        // Inviting to a ring that does not exist yet creates it.
        if ring != OPEN_RING && !self.registry().ring_exists(ring).await? {
            self.create_ring(caller, ring).await?;
        }
        self.existing_ring(caller, ring).await?;
        if uses == 0 || uses > MAX_INVITE_USES {
            return Err(AccessError::BadInviteTerms(format!(
                "an invite is for 1 to {MAX_INVITE_USES} uses"
            )));
        }
        if !(1..=MAX_INVITE_VALID).contains(&valid_for) {
            return Err(AccessError::BadInviteTerms(
                "an invite is valid for 1 second to 30 days".into(),
            ));
        }
        if member_for.is_some_and(|s| s < 1) {
            return Err(AccessError::BadInviteTerms(
                "membership must last at least 1 second".into(),
            ));
        }
        let (rec, invite) = crate::invites::create(
            self.ticket_addr(),
            ring,
            uses,
            now().saturating_add(valid_for),
            member_for,
        );
        self.registry().put_invite(&rec).await?;
        info!(uid = caller.uid, ring, id = %data_encoding::HEXLOWER.encode(&rec.id), uses, "invite created");
        Ok((rec, invite.to_string()))
    }

    /// Invites, oldest first (of `ring` only, if given).
    pub async fn invites(
        &self,
        caller: &Caller,
        ring: Option<&str>,
    ) -> Result<Vec<InviteRecord>, AccessError> {
        let owners = self.registry().owners(Owned::Ring).await?;
        let all = self.registry().invites().await?;
        Ok(all
            .into_iter()
            .filter(|i| ring.is_none_or(|r| i.ring == r))
            .filter(|i| caller.controls(owners.of(i.ring.as_bytes())))
            .collect())
    }

    /// Withdraws an invite (by id or a unique prefix of it).
    pub async fn revoke_invite(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<InviteRecord, AccessError> {
        let id = id.trim().to_ascii_lowercase();
        let mut found: Vec<InviteRecord> = self
            .invites(caller, None)
            .await?
            .into_iter()
            .filter(|i| !id.is_empty() && data_encoding::HEXLOWER.encode(&i.id).starts_with(&id))
            .collect();
        if found.len() != 1 {
            return Err(AccessError::NoSuchInvite(id));
        }
        let mut rec = found.remove(0);
        rec.revoked = true;
        self.registry().put_invite(&rec).await?;
        info!(uid = caller.uid, id, "invite revoked");
        Ok(rec)
    }

    /// Redeems an invite with its inviter (see [`crate::invites::join`]).
    pub async fn join_ring(
        &self,
        caller: &Caller,
        invite: &str,
        alias: Option<&str>,
    ) -> Result<crate::invites::Joined, AccessError> {
        if let Some(a) = alias {
            check_name(a)?;
        }
        let invite: crate::invites::Invite =
            invite.parse().map_err(crate::invites::JoinError::from)?;
        let joined =
            crate::invites::join(&self.inner.endpoint, self.registry(), &invite, alias).await?;
        info!(uid = caller.uid, ring = joined.ring, inviter = %joined.inviter, "joined a ring by invite");
        Ok(joined)
    }
}

impl Daemon {
    /// Gives a row to user `uid` (admins only): `kind` names the table,
    /// `key` the row as the CLI shows it.
    pub async fn give_row(
        &self,
        caller: &Caller,
        kind: &str,
        key: &str,
        uid: u32,
    ) -> Result<(), AccessError> {
        if !caller.is_admin() {
            return Err(AccessError::BadInviteTerms(
                "only root and the daemon's own user may give rows to users".into(),
            ));
        }
        let registry = self.registry();
        let missing = || AccessError::BadInviteTerms(format!("no {kind} {key:?}"));
        let (owned, bytes) = match kind {
            "share" => {
                let hash: iroh_blobs::Hash = key.parse().map_err(|_| missing())?;
                let from = self.give_share(&hash, uid).await?;
                info!(uid = caller.uid, key, from, to = uid, "share given");
                return Ok(());
            }
            "ring" => {
                if key == OPEN_RING || !registry.ring_exists(key).await? {
                    return Err(missing());
                }
                (Owned::Ring, key.as_bytes().to_vec())
            }
            "peer" => {
                registry.peer(key).await?.ok_or_else(missing)?;
                (Owned::Peer, key.as_bytes().to_vec())
            }
            "trust" => {
                let id = EndpointId::from_str(key).map_err(|_| missing())?;
                registry.trust(id.as_bytes()).await?.ok_or_else(missing)?;
                (Owned::Trust, id.as_bytes().to_vec())
            }
            "sent" => {
                let id: u64 = key.parse().map_err(|_| missing())?;
                registry.sent_offer(id).await?.ok_or_else(missing)?;
                (Owned::Sent, id.to_be_bytes().to_vec())
            }
            "transfer" => {
                let id: u64 = key.parse().map_err(|_| missing())?;
                registry.give_transfer(id, uid).await?.ok_or_else(missing)?;
                info!(uid = caller.uid, id, to = uid, "transfer given");
                return Ok(());
            }
            _ => {
                return Err(AccessError::BadInviteTerms(format!(
                    "no kind of row {kind:?}: share, ring, peer, trust, sent or transfer"
                )))
            }
        };
        registry.set_owner(owned, &bytes, uid).await?;
        info!(uid = caller.uid, kind, key, to = uid, "row given");
        Ok(())
    }

    /// Gives share `hash` to `uid`: the daemon user's row (from before
    /// owners), else the only one (with several users' rows, which to give
    /// is unclear). The store tag follows its owner: the new one first, so
    /// the content is never left unpinned. The uid it was taken from.
    async fn give_share(&self, hash: &iroh_blobs::Hash, uid: u32) -> Result<u32, AccessError> {
        let registry = self.registry();
        let rows = registry.shares_of(hash).await?;
        let from = match rows
            .iter()
            .find(|s| s.owner == crate::registry::daemon_uid())
        {
            Some(s) => s.owner,
            None if rows.len() == 1 => rows[0].owner,
            None if rows.is_empty() => {
                return Err(AccessError::BadInviteTerms(format!(
                    "no share {:?}",
                    hash.to_string()
                )))
            }
            None => {
                return Err(AccessError::BadInviteTerms(format!(
                    "share {hash} is shared by several users: each keeps their own"
                )))
            }
        };
        if !registry.give_share(hash, from, uid).await? {
            return Err(AccessError::BadInviteTerms(format!(
                "user {uid} shares {hash} already"
            )));
        }
        let tags = self.inner.store.tags();
        let content = iroh_blobs::HashAndFormat::hash_seq(*hash);
        if let Err(e) = tags.set(crate::shares::share_tag(hash, uid), content).await {
            tracing::warn!(%hash, "cannot tag the given share (restored at start-up): {e}");
        } else if let Err(e) = tags.delete(crate::shares::share_tag(hash, from)).await {
            tracing::warn!(%hash, "cannot drop the given share's old tag: {e}");
        }
        Ok(from)
    }
}

/// Most redemptions one invite may allow.
pub const MAX_INVITE_USES: u32 = 1000;
/// Longest an invite stays valid: 30 days.
pub const MAX_INVITE_VALID: i64 = 30 * 24 * 3600;
