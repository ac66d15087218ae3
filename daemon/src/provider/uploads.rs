//! What this node is serving right now, request by request, and the bytes
//! each finished request sent (added to the registry's counters).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use iroh::EndpointId;
use iroh_blobs::{provider::events::RequestUpdate, Hash};
use tracing::warn;

use crate::registry::Registry;

/// One request being served.
#[derive(Debug, Clone)]
pub struct Upload {
    pub peer: EndpointId,
    /// The share it is served for (the first, for a GET_MANY).
    pub share: Option<Hash>,
    /// Every share it is served for: revoking any one of them ends it.
    pub shares: Vec<Hash>,
    /// The requested hash.
    pub hash: Hash,
    pub started: SystemTime,
    started_at: Instant,
    /// Payload bytes sent so far.
    pub sent: u64,
}

impl Upload {
    /// Average rate since the request started, bytes per second.
    pub fn rate(&self) -> u64 {
        let secs = self.started_at.elapsed().as_secs_f64();
        if secs > 0.0 {
            (self.sent as f64 / secs) as u64
        } else {
            0
        }
    }
}

/// Keys of OBSERVE requests count down from here (request ids count up
/// from 0), so both live in one map per connection.
const OBSERVE_KEYS: u64 = u64::MAX;

/// Live uploads by (connection id, request id); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Uploads {
    live: Arc<Mutex<HashMap<(u64, u64), Upload>>>,
    events: crate::events::Events,
    /// The provider's tasks: each request's follower runs under them.
    tasks: crate::tasks::Tasks,
}

impl Uploads {
    /// Uploads that report each finished request to `events`, following
    /// requests as `tasks`.
    pub fn new(events: crate::events::Events, tasks: crate::tasks::Tasks) -> Self {
        Self {
            live: Default::default(),
            events,
            tasks,
        }
    }

    /// Everything being served now.
    pub fn list(&self) -> Vec<Upload> {
        self.live
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Peers currently fetching blobs of `share`.
    pub fn peers_of(&self, share: &Hash) -> Vec<EndpointId> {
        self.list()
            .into_iter()
            .filter(|u| u.shares.contains(share))
            .map(|u| u.peer)
            .collect()
    }

    /// Records an allowed request before the provider is told to serve
    /// it, so that a revocation in between finds it.
    pub fn begin(&self, key: (u64, u64), peer: EndpointId, shares: Vec<Hash>, hash: Hash) {
        let upload = Upload {
            peer,
            share: shares.first().copied(),
            shares,
            hash,
            started: SystemTime::now(),
            started_at: Instant::now(),
            sent: 0,
        };
        if let Ok(mut l) = self.live.lock() {
            l.insert(key, upload);
        }
    }

    /// An allowed OBSERVE: it lasts as long as its connection, so it is
    /// listed (and cut by revocation) until the connection closes.
    pub fn observe(&self, connection_id: u64, peer: EndpointId, shares: Vec<Hash>, hash: Hash) {
        let n = self
            .live
            .lock()
            .map(|l| l.keys().filter(|k| k.0 == connection_id).count() as u64)
            .unwrap_or(0);
        self.begin((connection_id, OBSERVE_KEYS - n), peer, shares, hash);
    }

    /// A connection closed: its OBSERVE requests end with it.
    pub fn connection_closed(&self, connection_id: u64) {
        if let Ok(mut l) = self.live.lock() {
            l.retain(|k, _| !(k.0 == connection_id && k.1 > OBSERVE_KEYS / 2));
        }
    }

    fn set_sent(&self, key: (u64, u64), sent: u64) {
        if let Ok(mut l) = self.live.lock() {
            if let Some(u) = l.get_mut(&key) {
                u.sent = sent;
            }
        }
    }

    /// Follows a request recorded with [`Self::begin`] until it ends, then
    /// counts its payload bytes in the registry.
    pub fn follow(
        &self,
        registry: Registry,
        key: (u64, u64),
        mut rx: irpc::channel::mpsc::Receiver<RequestUpdate>,
    ) {
        let (share, peer) = self
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(&key).map(|u| (u.share, Some(u.peer))))
            .unwrap_or((None, None));
        let this = self.clone();
        self.tasks.spawn("upload-follower", async move {
            // Bytes of finished blobs, and the current blob's end offset.
            let (mut done, mut blob_end, mut total) = (0u64, 0u64, None);
            let mut completed = false;
            while let Ok(Some(update)) = rx.recv().await {
                match update {
                    RequestUpdate::Started(_) => {
                        done += blob_end;
                        blob_end = 0;
                    }
                    RequestUpdate::Progress(p) => {
                        blob_end = p.end_offset;
                        this.set_sent(key, done + blob_end);
                    }
                    RequestUpdate::Completed(c) => {
                        total = Some(c.stats.payload_bytes_sent);
                        completed = true;
                    }
                    RequestUpdate::Aborted(a) => total = Some(a.stats.payload_bytes_sent),
                }
            }
            if let Ok(mut l) = this.live.lock() {
                l.remove(&key);
            }
            let sent = total.unwrap_or(done + blob_end);
            if let Some(peer) = peer {
                this.events.publish(crate::events::Event::ShareServed {
                    peer: peer.to_string(),
                    share: share.map(|h| h.to_string()),
                    bytes: sent,
                    completed,
                });
            }
            if sent > 0 {
                if let Err(e) = registry.add_served(share, sent).await {
                    warn!("cannot record served bytes: {e}");
                }
            }
        });
    }
}
