//! How many connections of one protocol a peer, and all peers together,
//! may hold at once. A connection over the limit is closed as it arrives.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler},
    EndpointId,
};
use tracing::warn;

/// Live connections by peer, against a per-peer and a total limit.
#[derive(Debug, Clone)]
pub struct Slots {
    taken: Arc<Mutex<HashMap<EndpointId, usize>>>,
    per_peer: usize,
    total: usize,
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

impl Slots {
    pub fn new(per_peer: usize, total: usize) -> Self {
        Self {
            taken: Default::default(),
            per_peer,
            total,
            refused: Default::default(),
            warned_at: Default::default(),
        }
    }

    /// A slot for a connection of `peer`, if both limits allow one.
    pub fn take(&self, peer: EndpointId) -> Option<Slot> {
        let mut taken = self.taken.lock().ok()?;
        let all: usize = taken.values().sum();
        let of_peer = taken.entry(peer).or_default();
        if *of_peer >= self.per_peer || all >= self.total {
            if *of_peer == 0 {
                taken.remove(&peer);
            }
            return None;
        }
        *of_peer += 1;
        Some(Slot {
            slots: self.clone(),
            peer,
        })
    }

    /// Admits `conn` or closes it, saying why; `what` names the protocol.
    pub fn admit(&self, conn: &Connection, what: &str) -> Option<Slot> {
        let peer = conn.remote_id();
        let slot = self.take(peer);
        if slot.is_none() {
            conn.close(2u32.into(), b"too many connections");
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
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
            if let Some(n) = taken.get_mut(&self.peer) {
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
    /// `inner` with [`SMALL_PER_PEER`] and [`SMALL_TOTAL`].
    pub fn small(what: &'static str, inner: H) -> Self {
        Self {
            inner,
            slots: Slots::new(SMALL_PER_PEER, SMALL_TOTAL),
            what,
        }
    }
}

impl<H: ProtocolHandler> ProtocolHandler for Limited<H> {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let Some(_slot) = self.slots.admit(&conn, self.what) else {
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

    #[test]
    fn limits_per_peer_and_in_all_and_frees_on_drop() {
        let slots = Slots::new(2, 3);
        let (a, b) = (
            iroh::SecretKey::generate().public(),
            iroh::SecretKey::generate().public(),
        );
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "a third of one peer");
        let _b1 = slots.take(b).unwrap();
        assert!(slots.take(b).is_none(), "a fourth in all");
        drop(a1);
        assert!(slots.take(b).is_some(), "a freed slot");
    }
}
