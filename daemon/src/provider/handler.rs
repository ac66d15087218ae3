//! Our `ProtocolHandler` for `iroh_blobs::ALPN`: it keeps every live
//! connection (so revocation can close it) and hands the connection to the
//! standard iroh-blobs provider with our gate's event sender.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler},
    EndpointId,
};
use iroh_blobs::{api::Store, provider::events::EventSender};
use tracing::{debug, warn};

/// Serves blobs through the gate and tracks live connections by peer.
#[derive(Debug, Clone)]
pub struct BlobsGate {
    store: Store,
    events: EventSender,
    live: Arc<Mutex<HashMap<usize, (EndpointId, Connection)>>>,
}

impl BlobsGate {
    pub fn new(store: Store, events: EventSender) -> Self {
        Self {
            store,
            events,
            live: Default::default(),
        }
    }

    /// Number of live connections from peers.
    pub fn live_connections(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Closes every live connection of `peer` (used when its access is revoked).
    pub fn disconnect(&self, peer: EndpointId) -> usize {
        let Ok(live) = self.live.lock() else { return 0 };
        let mut n = 0;
        for (id, conn) in live.values() {
            if *id == peer {
                conn.close(1u32.into(), b"access revoked");
                n += 1;
            }
        }
        n
    }
}

/// Connections one peer may have open to this node's blobs protocol at
/// once (our own fetcher uses one per transfer).
pub const MAX_CONNECTIONS_PER_PEER: usize = 8;
/// Connections from all peers at once.
pub const MAX_CONNECTIONS: usize = 256;

impl ProtocolHandler for BlobsGate {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let key = connection.stable_id();
        let peer = connection.remote_id();
        debug!(%peer, "blobs connection");
        let admitted = match self.live.lock() {
            Ok(mut live) => {
                let of_peer = live.values().filter(|(p, _)| *p == peer).count();
                let ok = of_peer < MAX_CONNECTIONS_PER_PEER && live.len() < MAX_CONNECTIONS;
                if ok {
                    live.insert(key, (peer, connection.clone()));
                }
                ok
            }
            Err(_) => false,
        };
        if !admitted {
            warn!(%peer, "too many connections: refusing one (at most {MAX_CONNECTIONS_PER_PEER} per peer, {MAX_CONNECTIONS} in all)");
            connection.close(2u32.into(), b"too many connections");
            return Ok(());
        }
        iroh_blobs::provider::handle_connection(
            connection,
            self.store.clone(),
            self.events.clone(),
        )
        .await;
        if let Ok(mut live) = self.live.lock() {
            live.remove(&key);
        }
        Ok(())
    }

    async fn shutdown(&self) {
        // The store is shut down by the daemon after it synced the database.
    }
}
