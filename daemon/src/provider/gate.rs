//! The gate: one task that answers every provider event in order.
//!
//! Rules (DESIGN.md "Gate"): a request whose root is a shared collection is
//! allowed, child ranges included; a child of a shared collection is allowed
//! as a raw blob only (no child ranges: the provider would read any root as
//! a hash sequence); everything else is refused, including what this node
//! merely downloaded. Unshared and not-allowed look the same to the peer.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use iroh::EndpointId;
use iroh_blobs::{
    protocol::{GetManyRequest, GetRequest},
    provider::events::{
        AbortReason, ConnectMode, EventMask, EventSender, ObserveMode, ProviderMessage,
        RequestMode, RequestUpdate, ThrottleMode,
    },
    Hash,
};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::RateLimit;
use crate::registry::{Registry, RegistryError};

/// Counters of the gate's decisions and of what it served.
#[derive(Debug, Default)]
pub struct GateStats {
    pub allowed: AtomicU64,
    pub refused: AtomicU64,
}

/// What a request is, for the decision and the audit log.
enum Ask<'a> {
    Get(&'a GetRequest),
    GetMany(&'a GetManyRequest),
    Observe(Hash),
}

/// A registry failure refuses the request (fail closed).
fn lookup<T>(r: Result<T, RegistryError>) -> Result<T, AbortReason> {
    r.map_err(|e| {
        warn!("gate: registry lookup failed, refusing: {e}");
        AbortReason::Permission
    })
}

/// Whether the request may be served and which share it is served for.
fn decide(registry: &Registry, ask: &Ask<'_>) -> Result<Option<Hash>, AbortReason> {
    // The share a blob may be served for, as a raw blob.
    let raw_share = |hash: &Hash| -> Result<Option<Hash>, AbortReason> {
        if lookup(registry.share(hash))?.is_some() {
            return Ok(Some(*hash));
        }
        Ok(lookup(registry.parents(hash))?.into_iter().next())
    };
    match ask {
        Ask::Get(req) => {
            if lookup(registry.share(&req.hash))?.is_some() {
                return Ok(Some(req.hash));
            }
            if !req.ranges.is_blob() {
                return Err(AbortReason::Permission);
            }
            raw_share(&req.hash)?
                .map(Some)
                .ok_or(AbortReason::Permission)
        }
        Ask::GetMany(req) => {
            let mut first = None;
            for (hash, ranges) in req.hashes.iter().zip(req.ranges.iter_infinite()) {
                if ranges.is_empty() {
                    continue;
                }
                let share = raw_share(hash)?.ok_or(AbortReason::Permission)?;
                first.get_or_insert(share);
            }
            Ok(first)
        }
        Ask::Observe(hash) => raw_share(hash)?.map(Some).ok_or(AbortReason::Permission),
    }
}

fn describe(ask: &Ask<'_>) -> (&'static str, Hash) {
    match ask {
        Ask::Get(r) => ("get", r.hash),
        Ask::GetMany(r) => ("get_many", r.hashes.first().copied().unwrap_or(Hash::EMPTY)),
        Ask::Observe(h) => ("observe", *h),
    }
}

/// Adds the payload bytes of finished requests to the registry's counters.
fn count_served(
    registry: Registry,
    share: Option<Hash>,
    mut rx: irpc::channel::mpsc::Receiver<RequestUpdate>,
) {
    tokio::spawn(async move {
        let mut sent = 0u64;
        while let Ok(Some(update)) = rx.recv().await {
            match update {
                RequestUpdate::Completed(c) => sent += c.stats.payload_bytes_sent,
                RequestUpdate::Aborted(a) => sent += a.stats.payload_bytes_sent,
                _ => {}
            }
        }
        if sent > 0 {
            let res = tokio::task::spawn_blocking(move || registry.add_served(share, sent)).await;
            if let Ok(Err(e)) = res {
                warn!("cannot record served bytes: {e}");
            }
        }
    });
}

/// Starts the gate task; returns the sender to give the provider.
/// `limit` turns on the per-chunk throttle hook (costly, so only when set).
pub fn spawn_gate(
    registry: Registry,
    stats: Arc<GateStats>,
    limit: Option<Arc<RateLimit>>,
) -> (EventSender, JoinHandle<()>) {
    let mask = EventMask {
        connected: ConnectMode::Intercept,
        get: RequestMode::InterceptLog,
        get_many: RequestMode::InterceptLog,
        push: RequestMode::Disabled,
        observe: ObserveMode::Intercept,
        throttle: if limit.is_some() {
            ThrottleMode::Intercept
        } else {
            ThrottleMode::None
        },
    };
    let (tx, mut rx) = EventSender::channel(64, mask);
    let task = tokio::spawn(async move {
        // connection id -> peer; ids are reused only after ConnectionClosed.
        let mut peers: HashMap<u64, EndpointId> = HashMap::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                ProviderMessage::ClientConnected(msg) => {
                    let res = match msg.endpoint_id {
                        Some(peer) => {
                            peers.insert(msg.connection_id, peer);
                            Ok(())
                        }
                        None => Err(AbortReason::Permission),
                    };
                    msg.tx.send(res).await.ok();
                }
                ProviderMessage::ConnectionClosed(msg) => {
                    peers.remove(&msg.connection_id);
                }
                ProviderMessage::GetRequestReceived(msg) => {
                    let ask = Ask::Get(&msg.inner.request);
                    let res = judge(&registry, &stats, &peers, msg.inner.connection_id, &ask);
                    let ok = res.as_ref().ok().copied();
                    msg.tx.send(res.map(|_| ())).await.ok();
                    if let Some(share) = ok {
                        count_served(registry.clone(), share, msg.rx);
                    }
                }
                ProviderMessage::GetManyRequestReceived(msg) => {
                    let ask = Ask::GetMany(&msg.inner.request);
                    let res = judge(&registry, &stats, &peers, msg.inner.connection_id, &ask);
                    let ok = res.as_ref().ok().copied();
                    msg.tx.send(res.map(|_| ())).await.ok();
                    if let Some(share) = ok {
                        count_served(registry.clone(), share, msg.rx);
                    }
                }
                ProviderMessage::ObserveRequestReceived(msg) => {
                    let ask = Ask::Observe(msg.inner.request.hash);
                    let res = judge(&registry, &stats, &peers, msg.inner.connection_id, &ask);
                    msg.tx.send(res.map(|_| ())).await.ok();
                }
                ProviderMessage::PushRequestReceived(msg) => {
                    msg.tx.send(Err(AbortReason::Permission)).await.ok();
                }
                ProviderMessage::Throttle(msg) => {
                    // Wait off the gate task so other requests are decided meanwhile.
                    let limit = limit.clone();
                    tokio::spawn(async move {
                        if let Some(limit) = limit {
                            limit.acquire(msg.size).await;
                        }
                        msg.tx.send(Ok(())).await.ok();
                    });
                }
                _ => {}
            }
        }
    });
    (tx, task)
}

/// Decides one request and writes the audit line.
fn judge(
    registry: &Registry,
    stats: &GateStats,
    peers: &HashMap<u64, EndpointId>,
    connection_id: u64,
    ask: &Ask<'_>,
) -> Result<Option<Hash>, AbortReason> {
    let (kind, hash) = describe(ask);
    let Some(peer) = peers.get(&connection_id) else {
        warn!(connection_id, kind, %hash, "gate: request on an unknown connection, refused");
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return Err(AbortReason::Permission);
    };
    let res = decide(registry, ask);
    match &res {
        Ok(_) => {
            stats.allowed.fetch_add(1, Ordering::Relaxed);
            info!(%peer, kind, %hash, decision = "allow", "gate");
        }
        Err(_) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            info!(%peer, kind, %hash, decision = "refuse", "gate");
        }
    }
    res
}
