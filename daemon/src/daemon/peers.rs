//! The address book on the facade: resolving a name, an endpoint id or a
//! ticket to a peer, its entries, names for listings, and other peers'
//! catalogs.

use std::str::FromStr;

use iroh::{EndpointAddr, EndpointId, RelayUrl};
use tracing::{info, warn};

use super::{
    access::{check_name, AccessError},
    Daemon,
};
use crate::{
    authority::Caller,
    catalog,
    registry::{Owned, PeerRecord},
    ticket::Ticket,
};
use ringdrop_proto::clock::now;

/// A peer as the user named it, resolved.
#[derive(Debug, Clone)]
pub struct PeerRef {
    pub id: EndpointId,
    /// Address-book name, if it has one.
    pub name: Option<String>,
    pub addr: EndpointAddr,
}

/// How often presence checks whether this node's addresses changed.
const PRESENCE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Presence tells at most this many contacts.
const MAX_HELLOS: usize = 256;

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
        let ips: Vec<_> = addr.ip_addrs().copied().collect();
        let relay = addr.relay_urls().next().map(|r| r.to_string());
        if let Err(e) = self
            .registry()
            .refresh_addrs(addr.id.as_bytes(), &ips, relay)
            .await
        {
            warn!(peer = %addr.id, "cannot record the peer's addresses: {e}");
        }
    }

    /// Presence: tells the contacts in the address book where this node
    /// is when it starts and whenever its addresses change (checked every
    /// few seconds), so they reach it (and deliver what they owe it) with
    /// relays and discovery off. Runs until the daemon stops.
    pub(super) async fn presence(self) {
        let mut told: Option<EndpointAddr> = None;
        loop {
            let me = self.inner.endpoint.addr();
            if !me.is_empty() && told.as_ref() != Some(&me) {
                self.tell_contacts(&me).await;
                told = Some(me);
            }
            tokio::time::sleep(PRESENCE_EVERY).await;
        }
    }

    /// Says hello to every endpoint of the address book it has addresses
    /// for (at most [`MAX_HELLOS`], a few at a time).
    async fn tell_contacts(&self, me: &EndpointAddr) {
        use futures::StreamExt;
        let Ok(book) = self.registry().peers().await else {
            return;
        };
        let mut seen = std::collections::HashSet::new();
        let targets: Vec<EndpointAddr> = book
            .iter()
            .filter(|p| p.id != *me.id.as_bytes() && seen.insert(p.id))
            .filter_map(addr_of)
            .filter(|a| !a.is_empty())
            .take(MAX_HELLOS)
            .collect();
        if targets.is_empty() {
            return;
        }
        let endpoint = &self.inner.endpoint;
        let heard = futures::stream::iter(targets)
            .map(|addr| async move {
                let peer = addr.id;
                match crate::offers::protocol::hello(endpoint, addr, me).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(%peer, "hello not heard: {e}");
                        false
                    }
                }
            })
            .buffer_unordered(8)
            .filter(|heard| futures::future::ready(*heard))
            .count()
            .await;
        info!(heard, "told contacts where this node is");
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
    pub(super) async fn peer_names(&self) -> PeerNames {
        PeerNames(self.registry().peer_names().await.unwrap_or_default())
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
}
