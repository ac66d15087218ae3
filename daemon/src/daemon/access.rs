//! Access control on the facade: rings and their members, the address
//! book, what is being served, and other peers' catalogs. Every revocation
//! closes the affected peers' live connections; they may reconnect for
//! whatever they may still fetch.

use std::str::FromStr;

use iroh::{EndpointAddr, EndpointId, RelayUrl};
use tracing::info;

use super::Daemon;
use crate::{
    catalog::{self, CatalogError},
    provider::Upload,
    registry::{Member, PeerRecord, RegistryError, RingInfo, OPEN_RING},
    ticket::Ticket,
    transfers::now,
};

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
}

/// A peer as the user named it, resolved.
#[derive(Debug, Clone)]
pub struct PeerRef {
    pub id: EndpointId,
    /// Address-book name, if it has one.
    pub name: Option<String>,
    pub addr: EndpointAddr,
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
    pub fn resolve_peer(&self, peer: &str) -> Result<PeerRef, AccessError> {
        let peer = peer.trim();
        if let Some(rec) = self.registry().peer(peer)? {
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
        let book = self.registry().peers()?;
        let known = book.iter().find(|p| p.id == *addr.id.as_bytes());
        let mut full = known
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
    pub(super) fn remember_addr(&self, addr: &EndpointAddr) {
        let Ok(book) = self.registry().peers() else {
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
            self.registry().put_peer(&rec).ok();
        }
    }

    /// Creates a ring.
    pub fn create_ring(&self, name: &str) -> Result<(), AccessError> {
        if name == OPEN_RING {
            return Err(AccessError::OpenRing);
        }
        check_name(name)?;
        if !self.registry().create_ring(name, now())? {
            return Err(AccessError::RingExists(name.to_string()));
        }
        info!(ring = name, "ring created");
        Ok(())
    }

    /// All rings (the first is always `open`).
    pub fn rings(&self) -> Result<Vec<RingInfo>, AccessError> {
        let mut out = vec![RingInfo {
            name: OPEN_RING.to_string(),
            created_at: 0,
            members: 0,
        }];
        out.extend(self.registry().rings()?);
        Ok(out)
    }

    /// Removes a ring; its members lose access to its shares at once.
    pub fn remove_ring(&self, name: &str) -> Result<(), AccessError> {
        if name == OPEN_RING {
            return Err(AccessError::OpenRing);
        }
        let members = self
            .registry()
            .remove_ring(name)?
            .ok_or_else(|| AccessError::UnknownRing(name.to_string()))?;
        info!(ring = name, "ring removed");
        for m in members {
            if let Ok(id) = EndpointId::from_bytes(&m.id) {
                self.inner.gate.disconnect(id);
            }
        }
        Ok(())
    }

    fn existing_ring(&self, ring: &str) -> Result<(), AccessError> {
        if ring == OPEN_RING {
            return Err(AccessError::OpenRing);
        }
        if !self.registry().ring_exists(ring)? {
            return Err(AccessError::UnknownRing(ring.to_string()));
        }
        Ok(())
    }

    /// Adds (or updates) a member; `expires_at` in unix seconds.
    pub fn add_member(
        &self,
        ring: &str,
        peer: &str,
        expires_at: Option<i64>,
    ) -> Result<PeerRef, AccessError> {
        self.existing_ring(ring)?;
        let p = self.resolve_peer(peer)?;
        self.registry()
            .add_member(ring, p.id.as_bytes(), expires_at)?;
        info!(ring, peer = %p.id, ?expires_at, "member added");
        Ok(p)
    }

    /// Removes a member and closes its live connections.
    pub fn remove_member(&self, ring: &str, peer: &str) -> Result<PeerRef, AccessError> {
        self.existing_ring(ring)?;
        let p = self.resolve_peer(peer)?;
        if !self.registry().remove_member(ring, p.id.as_bytes())? {
            return Err(AccessError::NotMember {
                ring: ring.to_string(),
                peer: peer.to_string(),
            });
        }
        let closed = self.inner.gate.disconnect(p.id);
        info!(ring, peer = %p.id, closed, "member removed");
        Ok(p)
    }

    /// Members of a ring.
    pub fn members(&self, ring: &str) -> Result<Vec<Member>, AccessError> {
        self.existing_ring(ring)?;
        Ok(self.registry().members(ring)?)
    }

    /// Adds or replaces an address-book entry from an endpoint id or a ticket.
    pub fn add_peer(&self, name: &str, id_or_ticket: &str) -> Result<PeerRecord, AccessError> {
        check_name(name)?;
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
        self.registry().put_peer(&rec)?;
        Ok(rec)
    }

    /// The address book.
    pub fn peers(&self) -> Result<Vec<PeerRecord>, AccessError> {
        Ok(self.registry().peers()?)
    }

    /// Removes an address-book entry (memberships stay, by endpoint id).
    pub fn remove_peer(&self, name: &str) -> Result<(), AccessError> {
        if !self.registry().remove_peer(name)? {
            return Err(AccessError::NoSuchPeer(name.to_string()));
        }
        Ok(())
    }

    /// What is being served right now.
    pub fn uploads(&self) -> Vec<Upload> {
        self.inner.uploads.list()
    }

    /// Shares `peer` lets this node fetch, with tickets for them.
    pub async fn remote_list(
        &self,
        peer: &str,
    ) -> Result<(PeerRef, Vec<(catalog::Entry, String)>), AccessError> {
        let p = self.resolve_peer(peer)?;
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
