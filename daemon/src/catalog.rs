//! The remote catalog: a small protocol of ours (own ALPN, postcard,
//! bounded sizes) that answers "what do you share with me?" with only the
//! shares the policy lets the asking endpoint see (ring shares it is a
//! member of, open shares their owner listed).

use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler},
    Endpoint, EndpointAddr,
};
use iroh_blobs::Hash;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::{access::policy::Policy, net::exchange, registry::Registry};
use ringdrop_proto::clock::now;

/// ALPN of the catalog protocol.
pub const ALPN: &[u8] = b"ringdrop/catalog/1";
/// Largest request we read.
const MAX_REQUEST: usize = 1024;
/// Largest answer we read (about 40k shares).
pub const MAX_RESPONSE: usize = 4 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    List,
}

/// One share as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub hash: Hash,
    pub name: String,
    pub size: u64,
    pub files: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    List(Vec<Entry>),
}

/// Errors asking a peer for its catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot reach {peer}: {msg}")]
    Connect { peer: String, msg: String },
    #[error("{peer} did not answer the catalog request: {msg}")]
    Protocol { peer: String, msg: String },
}

/// Serves the catalog to peers.
#[derive(Debug, Clone)]
pub struct CatalogServer {
    registry: Registry,
    policy: std::sync::Arc<Policy>,
}

impl CatalogServer {
    pub fn new(registry: Registry, policy: std::sync::Arc<Policy>) -> Self {
        Self { registry, policy }
    }

    /// Shares the policy lets `peer` see (`Policy::may_list`).
    fn visible(&self, peer: &[u8; 32]) -> Vec<Entry> {
        let shares = match self.registry.blocking().shares() {
            Ok(s) => s,
            Err(e) => {
                warn!("catalog: registry: {e}");
                return Vec::new();
            }
        };
        let t = now();
        // Two users' shares of one content are one entry.
        let mut seen = std::collections::HashSet::new();
        shares
            .into_iter()
            .filter(|s| matches!(self.policy.may_list(s, peer, t), Ok(true)))
            .filter(|s| seen.insert(s.hash))
            .map(|s| Entry {
                hash: s.hash,
                name: s.name,
                size: s.size,
                files: s.files,
            })
            .collect()
    }
}

impl ProtocolHandler for CatalogServer {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = conn.remote_id();
        let Some((send, req)) = exchange::read_request(&conn, MAX_REQUEST).await? else {
            debug!(%peer, "catalog request not sent in time");
            return Ok(());
        };
        match postcard::from_bytes::<Request>(&req) {
            Ok(Request::List) => {
                // Registry reads and file stats: off the async runtime.
                let this = self.clone();
                let entries = tokio::task::spawn_blocking(move || this.visible(peer.as_bytes()))
                    .await
                    .unwrap_or_default();
                debug!(%peer, shown = entries.len(), "catalog request");
                let bytes =
                    postcard::to_stdvec(&Response::List(entries)).map_err(AcceptError::from_err)?;
                exchange::answer(&conn, send, &bytes).await?;
            }
            Err(e) => {
                debug!(%peer, "bad catalog request: {e}");
                exchange::bad_request(&conn);
            }
        }
        Ok(())
    }
}

/// Asks `addr` for the shares it lets this endpoint fetch.
pub async fn list_remote(
    endpoint: &Endpoint,
    addr: EndpointAddr,
) -> Result<Vec<Entry>, CatalogError> {
    let peer = addr.id.to_string();
    let proto = |msg: String| CatalogError::Protocol {
        peer: peer.clone(),
        msg,
    };
    let req = postcard::to_stdvec(&Request::List).map_err(|e| proto(e.to_string()))?;
    let bytes = exchange::ask(
        endpoint,
        addr,
        ALPN,
        std::time::Duration::from_secs(20),
        &req,
        MAX_RESPONSE,
    )
    .await
    .map_err(|e| match e {
        exchange::AskError::Connect(msg) => CatalogError::Connect {
            peer: peer.clone(),
            msg,
        },
        exchange::AskError::Exchange(msg) => proto(msg),
    })?;
    match postcard::from_bytes::<Response>(&bytes) {
        Ok(Response::List(entries)) => Ok(entries),
        Err(e) => Err(proto(format!("malformed answer: {e}"))),
    }
}
