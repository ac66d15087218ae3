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
use tracing::debug;

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

impl ProtocolHandler for BlobsGate {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        let key = connection.stable_id();
        let peer = connection.remote_id();
        debug!(%peer, "blobs connection");
        if let Ok(mut live) = self.live.lock() {
            live.insert(key, (peer, connection.clone()));
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
