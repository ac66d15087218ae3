//! How many connections of one protocol a peer, and all peers together,
//! may hold at once. A connection over the limit is closed as it arrives.
//! Strangers (peers that are not a ring member or in the address book)
//! together get at most half of the total, so a flood of fresh identities
//! never locks out a node's contacts.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler},
    EndpointId,
};
use tracing::warn;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Tells whether a peer is a contact (a ring member or in the address
/// book): contacts may use every slot, strangers only half.
pub type Known = Arc<dyn Fn(EndpointId) -> BoxFuture<'static, bool> + Send + Sync>;

/// Live connections by peer, against a per-peer and a total limit.
#[derive(Clone)]
pub struct Slots {
    /// peer -> (connections, whether it was a stranger when admitted)
    taken: Arc<Mutex<HashMap<EndpointId, (usize, bool)>>>,
    per_peer: usize,
    total: usize,
    known: Option<Known>,
    /// Refusals not yet logged, and when the last warning was (Unix
    /// seconds): a flood of refused connections logs one line a minute.
    refused: Arc<AtomicU64>,
    warned_at: Arc<AtomicU64>,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Slots,
    peer: EndpointId,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("per_peer", &self.per_peer)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl Slots {
    /// Every peer alike (no contacts told apart).
    pub fn new(per_peer: usize, total: usize) -> Self {
        Self {
            taken: Default::default(),
            per_peer,
            total,
            known: None,
            refused: Default::default(),
            warned_at: Default::default(),
        }
    }

    /// Strangers (for whom `known` says no) hold at most half the total.
    pub fn with_contacts(mut self, known: Known) -> Self {
        self.known = Some(known);
        self
    }

    /// A slot for a connection of `peer`, if the limits allow one.
    pub async fn take(&self, peer: EndpointId) -> Option<Slot> {
        // Asked before the lock: it reads the registry.
        let stranger = match &self.known {
            Some(known) => !known(peer).await,
            None => false,
        };
        let mut taken = self.taken.lock().ok()?;
        let all: usize = taken.values().map(|(n, _)| n).sum();
        let strangers: usize = taken.values().filter(|(_, s)| *s).map(|(n, _)| n).sum();
        let of_peer = taken.entry(peer).or_insert((0, stranger));
        let full = of_peer.0 >= self.per_peer
            || all >= self.total
            || (stranger && strangers >= self.total / 2);
        if full {
            if of_peer.0 == 0 {
                taken.remove(&peer);
            }
            return None;
        }
        of_peer.0 += 1;
        Some(Slot {
            slots: self.clone(),
            peer,
        })
    }

    /// Admits `conn` or closes it, saying why; `what` names the protocol.
    pub async fn admit(&self, conn: &Connection, what: &str) -> Option<Slot> {
        let peer = conn.remote_id();
        let slot = self.take(peer).await;
        if slot.is_none() {
            conn.close(2u32.into(), b"too many connections");
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            let now = u64::try_from(ringdrop_proto::clock::now()).unwrap_or(0);
            let last = self.warned_at.load(Ordering::Relaxed);
            if now >= last + 60
                && self
                    .warned_at
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.refused.fetch_sub(refused, Ordering::Relaxed);
                warn!(%peer, refused, "too many {what} connections: refused (at most {} per peer, {} in all; one line a minute)", self.per_peer, self.total);
            }
        }
        slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut taken) = self.slots.taken.lock() {
            if let Some((n, _)) = taken.get_mut(&self.peer) {
                *n -= 1;
                if *n == 0 {
                    taken.remove(&self.peer);
                }
            }
        }
    }
}

/// Connections one peer may hold at once to one of the small protocols
/// (catalog, invites, offers): each is one request and one answer.
pub const SMALL_PER_PEER: usize = 4;
/// Connections all peers together may hold at once to one of them.
pub const SMALL_TOTAL: usize = 64;

/// A protocol handler behind [`Slots`].
#[derive(Debug, Clone)]
pub struct Limited<H> {
    inner: H,
    slots: Slots,
    what: &'static str,
}

impl<H> Limited<H> {
    /// `inner` with [`SMALL_PER_PEER`] and [`SMALL_TOTAL`], half of it
    /// for strangers.
    pub fn small(what: &'static str, inner: H, known: Known) -> Self {
        Self {
            inner,
            slots: Slots::new(SMALL_PER_PEER, SMALL_TOTAL).with_contacts(known),
            what,
        }
    }
}

impl<H: ProtocolHandler> ProtocolHandler for Limited<H> {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let Some(_slot) = self.slots.admit(&conn, self.what).await else {
            return Ok(());
        };
        self.inner.accept(conn).await
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_per_peer_and_in_all_and_frees_on_drop() {
        let slots = Slots::new(2, 3);
        let (a, b) = (
            iroh::SecretKey::generate().public(),
            iroh::SecretKey::generate().public(),
        );
        let a1 = slots.take(a).await.unwrap();
        let _a2 = slots.take(a).await.unwrap();
        assert!(slots.take(a).await.is_none(), "a third of one peer");
        let _b1 = slots.take(b).await.unwrap();
        assert!(slots.take(b).await.is_none(), "a fourth in all");
        drop(a1);
        assert!(slots.take(b).await.is_some(), "a freed slot");
    }

    #[tokio::test]
    async fn strangers_fill_only_half_and_contacts_still_get_in() {
        let friend = iroh::SecretKey::generate().public();
        let known: Known = Arc::new(move |p| Box::pin(async move { p == friend }));
        let slots = Slots::new(1, 4).with_contacts(known);
        let mut held = Vec::new();
        for _ in 0..10 {
            if let Some(s) = slots.take(iroh::SecretKey::generate().public()).await {
                held.push(s);
            }
        }
        assert_eq!(held.len(), 2, "strangers hold half of 4");
        assert!(slots.take(friend).await.is_some(), "a contact is let in");
    }
}
