//! Our `ProtocolHandler` for `iroh_blobs::ALPN`: it keeps every live
//! connection (so revocation can close it), bounds how many a peer may
//! hold and how long it may take to send a request, and serves each
//! request, decided by our gate through the provider's event sender
//! (GET and GET_MANY from the content layer or the store, [`super::serve`];
//! OBSERVE by the standard provider), its answer written through the
//! upload limits ([`Paced`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use iroh::{
    endpoint::{Connection, RecvStream},
    protocol::{AcceptError, ProtocolHandler},
    EndpointId,
};
use iroh_blobs::{
    protocol::{Request, ERR_LIMIT, ERR_PERMISSION},
    provider::{
        self,
        events::{ClientConnected, ConnectionClosed, EventSender, HasErrorCode},
        StreamPair,
    },
};
use tracing::debug;

use super::serve::{self, Paced, Sources, REQUEST_WITHIN};
use crate::{access::slots::Slots, limits::Uplink};

/// Serves blobs through the gate and tracks live connections by peer.
#[derive(Debug, Clone)]
pub struct BlobsGate {
    sources: Sources,
    events: EventSender,
    live: Arc<Mutex<HashMap<usize, (EndpointId, Connection)>>>,
    slots: Slots,
    /// The provider's tasks: each request stream is one.
    tasks: crate::tasks::Tasks,
    bandwidth: crate::limits::Bandwidth,
}

impl BlobsGate {
    /// Strangers (for whom `known` says no) hold at most half of
    /// [`MAX_CONNECTIONS`].
    pub fn new(
        sources: Sources,
        events: EventSender,
        known: crate::access::slots::Known,
        tasks: crate::tasks::Tasks,
        bandwidth: crate::limits::Bandwidth,
    ) -> Self {
        Self {
            sources,
            events,
            tasks,
            bandwidth,
            live: Default::default(),
            slots: Slots::new(MAX_CONNECTIONS_PER_PEER, MAX_CONNECTIONS).with_contacts(known),
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
        let Some(_slot) = self.slots.admit(&connection, "blobs").await else {
            return Ok(());
        };
        let key = connection.stable_id();
        let peer = connection.remote_id();
        debug!(%peer, "blobs connection");
        if let Ok(mut live) = self.live.lock() {
            live.insert(key, (peer, connection.clone()));
        }
        let (sources, events) = (self.sources.clone(), self.events.clone());
        let uplink = self.bandwidth.uplink(peer);
        serve(connection, sources, events, uplink, &self.tasks).await;
        if let Ok(mut live) = self.live.lock() {
            live.remove(&key);
        }
        Ok(())
    }

    async fn shutdown(&self) {
        // The store is shut down by the daemon after it synced the database.
    }
}

/// Serves one admitted connection: what `iroh_blobs::provider::
/// handle_connection` does, with [`REQUEST_WITHIN`] on every request.
async fn serve(
    connection: Connection,
    sources: Sources,
    events: EventSender,
    uplink: Uplink,
    tasks: &crate::tasks::Tasks,
) {
    let connection_id = connection.stable_id() as u64;
    let hello = events
        .client_connected(|| ClientConnected {
            connection_id,
            endpoint_id: Some(connection.remote_id()),
        })
        .await;
    if let Err(cause) = hello {
        connection.close(cause.code(), cause.reason());
        return;
    }
    while let Ok((writer, reader)) = connection.accept_bi().await {
        let writer = Paced {
            inner: writer,
            uplink: uplink.clone(),
        };
        let stream = serve_stream(
            connection_id,
            writer,
            reader,
            sources.clone(),
            events.clone(),
        );
        tasks.spawn("request-stream", stream);
    }
    events
        .connection_closed(|| ConnectionClosed { connection_id })
        .await
        .ok();
}

/// Reads one request within [`REQUEST_WITHIN`] and serves it. The gate
/// decides it in the provider's handler, as for any request.
async fn serve_stream(
    connection_id: u64,
    mut writer: Paced,
    mut reader: RecvStream,
    sources: Sources,
    events: EventSender,
) {
    let request = match tokio::time::timeout(REQUEST_WITHIN, Request::read_async(&mut reader)).await
    {
        Ok(Ok((request, _))) => request,
        Ok(Err(e)) => {
            debug!(connection_id, "unreadable request: {e}");
            writer.inner.reset(ERR_PERMISSION).ok();
            return;
        }
        Err(_) => {
            debug!(
                connection_id,
                "no whole request within {REQUEST_WITHIN:?}: stream reset"
            );
            reader.stop(ERR_LIMIT).ok();
            writer.inner.reset(ERR_LIMIT).ok();
            return;
        }
    };
    if !matches!(
        request,
        Request::Get(_) | Request::GetMany(_) | Request::Observe(_)
    ) {
        // Nobody may push into this node's store.
        reader.stop(ERR_PERMISSION).ok();
        writer.inner.reset(ERR_PERMISSION).ok();
        return;
    }
    let pair = StreamPair::new(connection_id, reader, writer, events);
    match request {
        Request::Get(r) => serve::get(pair, sources, r).await,
        Request::GetMany(r) => serve::get_many(pair, sources, r).await,
        Request::Observe(r) => {
            if let Err(e) = provider::handle_observe(pair, sources.store, r).await {
                debug!(connection_id, "request ended: {e:#}");
            }
        }
        _ => {}
    }
}
