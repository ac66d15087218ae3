//! The gate: one task that answers every provider event in order.
//!
//! Rules (docs/ARCHITECTURE.md, "Access policy"): a request whose root is a shared collection the
//! peer may fetch is allowed, child ranges included; a child of such a
//! collection is allowed as a raw blob only (no child ranges: the provider
//! would read any root as a hash sequence); everything else is refused,
//! including what this node merely downloaded. "May fetch": the share is in
//! the `open` ring or in a ring that lists the peer as a current member,
//! and its source files are unchanged since sharing. Unshared and
//! not-allowed look the same to the peer.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use iroh::EndpointId;

use crate::tasks::Tasks;
use iroh_blobs::{
    protocol::{ChunkRangesSeq, GetManyRequest, GetRequest},
    provider::events::{
        AbortReason, ConnectMode, EventMask, EventResult, EventSender, ObserveMode,
        ProviderMessage, RequestMode, RequestUpdate, ThrottleMode,
    },
    Hash,
};
use tracing::{info, warn};

use super::Uploads;
use crate::{
    access::policy::Policy,
    metrics::{Counts, Refusal},
    registry::{Registry, RegistryError, ShareRecord},
};

/// Counters of the gate's decisions (refusals by reason in `counts`).
#[derive(Debug, Default)]
pub struct GateStats {
    pub allowed: AtomicU64,
    pub refused: AtomicU64,
    pub counts: Arc<Counts>,
}

impl GateStats {
    fn refuse(&self, reason: Refusal) -> AbortReason {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.counts.refused(reason);
        AbortReason::Permission
    }
}

/// The only failure of the gate's lookups is the registry's.
impl From<AbortReason> for Refusal {
    fn from(_: AbortReason) -> Self {
        Refusal::Registry
    }
}

/// What a request is, for the decision and the audit log.
enum Ask {
    Get(GetRequest),
    GetMany(GetManyRequest),
    Observe(Hash),
}

/// A registry failure refuses the request (fail closed).
fn lookup<T>(r: Result<T, RegistryError>) -> Result<T, AbortReason> {
    r.map_err(|e| {
        warn!("gate: registry lookup failed, refusing: {e}");
        AbortReason::Permission
    })
}

/// Decoded share rows kept at most; a share's row holds every child and
/// source, so decoding a 10,000-file share for every request adds up.
const CACHED_SHARES: usize = 65_536;

/// Decoded share rows by content (every owner's; none: no share), valid
/// while the registry's share generation is unchanged.
#[derive(Default)]
struct ShareCache {
    generation: u64,
    rows: HashMap<Hash, Arc<Vec<ShareRecord>>>,
}

/// The gate's state; decisions run off the async runtime.
struct Gate {
    registry: Registry,
    policy: Arc<Policy>,
    cache: std::sync::Mutex<ShareCache>,
}

impl Gate {
    /// Every owner's share row of `hash` (none: not shared), from the
    /// cache while no share changed.
    fn shares(&self, hash: &Hash) -> Result<Arc<Vec<ShareRecord>>, AbortReason> {
        let generation = self.registry.shares_generation();
        if let Ok(mut c) = self.cache.lock() {
            if c.generation != generation {
                c.rows.clear();
                c.generation = generation;
            }
            if let Some(row) = c.rows.get(hash) {
                return Ok(row.clone());
            }
        }
        let row = Arc::new(lookup(self.registry.blocking().shares_of(hash))?);
        if let Ok(mut c) = self.cache.lock() {
            if c.generation == generation {
                if c.rows.len() >= CACHED_SHARES {
                    c.rows.clear();
                }
                c.rows.insert(*hash, row.clone());
            }
        }
        Ok(row)
    }

    /// Whether `peer` may fetch the content of `rows` now: whether any
    /// owner's share of it allows that (the policy decides each).
    fn may_fetch(&self, rows: &[ShareRecord], peer: &EndpointId) -> Result<bool, AbortReason> {
        for share in rows {
            if lookup(
                self.policy
                    .may_fetch(share, peer.as_bytes(), ringdrop_proto::clock::now()),
            )? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The share `hash` may be served for to `peer` as a raw blob: the share
    /// itself or one that contains it.
    /// `allowed` remembers verdicts per share within one request (a
    /// GET_MANY of a whole collection asks about the same share per child).
    fn raw_share(
        &self,
        hash: &Hash,
        peer: &EndpointId,
        allowed: &mut HashMap<Hash, bool>,
    ) -> Result<Option<Hash>, AbortReason> {
        let mut judge = |root: &Hash, rows: &[ShareRecord]| -> Result<bool, AbortReason> {
            if let Some(ok) = allowed.get(root) {
                return Ok(*ok);
            }
            let ok = self.may_fetch(rows, peer)?;
            allowed.insert(*root, ok);
            Ok(ok)
        };
        let rows = self.shares(hash)?;
        if !rows.is_empty() {
            return Ok(judge(hash, &rows)?.then_some(*hash));
        }
        for root in lookup(self.registry.blocking().parents(hash))? {
            let rows = self.shares(&root)?;
            if !rows.is_empty() && judge(&root, &rows)? {
                return Ok(Some(root));
            }
        }
        Ok(None)
    }

    /// Whether the request may be served, and every share it is served
    /// for (a GET_MANY may span several: revoking any one ends it).
    fn decide(&self, ask: &Ask, peer: &EndpointId) -> Result<Vec<Hash>, Refusal> {
        let denied = Refusal::NotPermitted;
        let mut allowed = HashMap::new();
        match ask {
            Ask::Get(req) => {
                let rows = self.shares(&req.hash)?;
                if let Some(first) = rows.first() {
                    // Every owner's row of one content has its children.
                    if !within_collection(req, first) {
                        return Err(Refusal::OutOfRange);
                    }
                    return if self.may_fetch(&rows, peer)? {
                        Ok(vec![req.hash])
                    } else {
                        Err(denied)
                    };
                }
                if !req.ranges.is_blob() {
                    return Err(denied);
                }
                self.raw_share(&req.hash, peer, &mut allowed)?
                    .map(|s| vec![s])
                    .ok_or(denied)
            }
            Ask::GetMany(req) => {
                let mut shares = Vec::new();
                for (hash, ranges) in req.hashes.iter().zip(req.ranges.iter_infinite()) {
                    if ranges.is_empty() {
                        continue;
                    }
                    let share = self.raw_share(hash, peer, &mut allowed)?.ok_or(denied)?;
                    if !shares.contains(&share) {
                        shares.push(share);
                    }
                }
                Ok(shares)
            }
            Ask::Observe(hash) => self
                .raw_share(hash, peer, &mut allowed)?
                .map(|s| vec![s])
                .ok_or(denied),
        }
    }
}

/// Whether every range of `req` lies within the collection: the root and
/// its children. The provider walks the offsets of a request one by one,
/// without yielding, so a child range at offset 2^62 would hold a core for
/// good; such requests are refused before they reach it.
fn within_collection(req: &GetRequest, share: &ShareRecord) -> bool {
    within_offsets(&req.ranges, share.children.len() + 2)
}

/// Whether `ranges` asks for nothing at offset `offsets - 1` or beyond
/// (the last offset of a collection plus two), found without walking the
/// offsets one by one.
pub fn within_offsets(ranges: &ChunkRangesSeq, offsets: usize) -> bool {
    let bounded =
        ChunkRangesSeq::from_ranges_infinite(ranges.iter_infinite().take(offsets).cloned());
    bounded == *ranges
}

fn describe(ask: &Ask) -> (&'static str, Hash) {
    match ask {
        Ask::Get(r) => ("get", r.hash),
        Ask::GetMany(r) => ("get_many", r.hashes.first().copied().unwrap_or(Hash::EMPTY)),
        Ask::Observe(h) => ("observe", *h),
    }
}

/// Starts the gate task; returns the sender to give the provider. Upload
/// limits are not the gate's: the provider's writer is paced
/// (`serve::Paced`), which costs nothing per chunk here.
pub fn spawn_gate(
    registry: Registry,
    policy: Arc<Policy>,
    stats: Arc<GateStats>,
    uploads: Uploads,
    tasks: Tasks,
) -> EventSender {
    let mask = EventMask {
        connected: ConnectMode::Intercept,
        get: RequestMode::InterceptLog,
        get_many: RequestMode::InterceptLog,
        push: RequestMode::Disabled,
        observe: ObserveMode::Intercept,
        throttle: ThrottleMode::None,
    };
    let (tx, rx) = EventSender::channel(64, mask);
    let gate = Arc::new(Gate {
        registry: registry.clone(),
        policy,
        cache: Default::default(),
    });
    let gate = GateLoop {
        gate,
        registry,
        stats,
        uploads,
        peers: HashMap::new(),
    };
    tasks.spawn("gate", gate.run(rx));
    tx
}

/// The gate task's state: what it decides with, and the peer of each
/// open connection.
struct GateLoop {
    gate: Arc<Gate>,
    registry: Registry,
    stats: Arc<GateStats>,
    uploads: Uploads,
    /// connection id -> peer; ids are reused only after ConnectionClosed.
    peers: HashMap<u64, EndpointId>,
}

impl GateLoop {
    async fn run(mut self, mut rx: tokio::sync::mpsc::Receiver<ProviderMessage>) {
        while let Some(msg) = rx.recv().await {
            self.on(msg).await;
        }
    }

    /// Decides and answers a GET or GET_MANY (`key`: connection and
    /// request id; `hash`: its first blob).
    async fn on_request(
        &self,
        ask: Ask,
        key: (u64, u64),
        hash: Hash,
        tx: irpc::channel::oneshot::Sender<EventResult>,
        rx: irpc::channel::mpsc::Receiver<RequestUpdate>,
    ) {
        let res = judge(&self.gate, &self.stats, &self.peers, key.0, ask).await;
        answer(res, key, hash, &self.uploads, &self.registry, tx, rx).await;
    }

    /// Answers one event of the provider.
    async fn on(&mut self, msg: ProviderMessage) {
        let (gate, stats, peers) = (&self.gate, &self.stats, &self.peers);
        match msg {
            ProviderMessage::ClientConnected(msg) => {
                let res = match msg.endpoint_id {
                    Some(peer) => {
                        self.peers.insert(msg.connection_id, peer);
                        Ok(())
                    }
                    // A connection, not a request: counted by reason only.
                    None => {
                        stats.counts.refused(Refusal::UnknownConnection);
                        Err(AbortReason::Permission)
                    }
                };
                msg.tx.send(res).await.ok();
            }
            ProviderMessage::ConnectionClosed(msg) => {
                self.peers.remove(&msg.connection_id);
                self.uploads.connection_closed(msg.connection_id);
            }
            ProviderMessage::GetRequestReceived(msg) => {
                let ask = Ask::Get(msg.inner.request.clone());
                let key = (msg.inner.connection_id, msg.inner.request_id);
                let hash = msg.inner.request.hash;
                self.on_request(ask, key, hash, msg.tx, msg.rx).await;
            }
            ProviderMessage::GetManyRequestReceived(msg) => {
                let ask = Ask::GetMany(msg.inner.request.clone());
                let key = (msg.inner.connection_id, msg.inner.request_id);
                let hash = msg.inner.request.hashes.first().copied();
                let hash = hash.unwrap_or(Hash::EMPTY);
                self.on_request(ask, key, hash, msg.tx, msg.rx).await;
            }
            ProviderMessage::ObserveRequestReceived(msg) => {
                let hash = msg.inner.request.hash;
                let conn = msg.inner.connection_id;
                let res = judge(gate, stats, peers, conn, Ask::Observe(hash)).await;
                if let Ok((peer, shares)) = &res {
                    self.uploads.observe(conn, *peer, shares.clone(), hash);
                }
                msg.tx.send(res.map(|_| ())).await.ok();
            }
            ProviderMessage::PushRequestReceived(msg) => {
                msg.tx.send(Err(stats.refuse(Refusal::Push))).await.ok();
            }
            _ => {}
        }
    }
}

/// Answers a decided GET or GET_MANY. An allowed request is recorded
/// before the provider hears the answer, so a revocation in between finds
/// it, and followed until it ends.
async fn answer(
    res: Result<(EndpointId, Vec<Hash>), AbortReason>,
    key: (u64, u64),
    hash: Hash,
    uploads: &Uploads,
    registry: &Registry,
    tx: irpc::channel::oneshot::Sender<EventResult>,
    rx: irpc::channel::mpsc::Receiver<RequestUpdate>,
) {
    let allowed = match res {
        Ok((peer, shares)) => {
            uploads.begin(key, peer, shares, hash);
            Ok(())
        }
        Err(e) => Err(e),
    };
    let ok = allowed.is_ok();
    tx.send(allowed).await.ok();
    if ok {
        uploads.follow(registry.clone(), key, rx);
    }
}

/// Decides one request (registry reads and file stats, off the async
/// runtime; requests are still decided one after another, in order) and
/// writes the audit line.
async fn judge(
    gate: &Arc<Gate>,
    stats: &GateStats,
    peers: &HashMap<u64, EndpointId>,
    connection_id: u64,
    ask: Ask,
) -> Result<(EndpointId, Vec<Hash>), AbortReason> {
    let (kind, hash) = describe(&ask);
    let Some(peer) = peers.get(&connection_id).copied() else {
        warn!(connection_id, kind, %hash, "gate: request on an unknown connection, refused");
        return Err(stats.refuse(Refusal::UnknownConnection));
    };
    let res = {
        let gate = gate.clone();
        tokio::task::spawn_blocking(move || gate.decide(&ask, &peer))
            .await
            .unwrap_or(Err(Refusal::Registry))
    };
    let decision = if res.is_ok() { "allow" } else { "refuse" };
    info!(%peer, kind, %hash, decision, "gate");
    match res {
        Ok(shares) => {
            stats.allowed.fetch_add(1, Ordering::Relaxed);
            Ok((peer, shares))
        }
        Err(reason) => Err(stats.refuse(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The provider starts serving once it hears the answer; revocation
    /// cuts what `Uploads` lists. An allowed request must be listed by
    /// then, or an unshare in between would miss it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_allowed_request_is_listed_before_the_provider_hears_of_it() {
        let dir = std::env::temp_dir().join(format!("rdrop-gate-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let registry = Registry::open(&dir.join("r.redb")).await.unwrap();
        let uploads = Uploads::default();
        let peer = iroh::SecretKey::generate().public();
        let share = Hash::new(b"share");
        for i in 0u64..200 {
            let hash = Hash::new(i.to_le_bytes());
            let (tx, rx) = irpc::channel::oneshot::channel();
            let (updates, updates_rx) = irpc::channel::mpsc::channel(4);
            // The provider's side, on another worker: it looks the moment
            // it is answered.
            let provider = {
                let uploads = uploads.clone();
                tokio::spawn(async move {
                    let answer = rx.await;
                    let listed = uploads.list().iter().any(|u| u.hash == hash);
                    (answer.is_ok(), listed)
                })
            };
            let decided = Ok((peer, vec![share]));
            answer(decided, (1, i), hash, &uploads, &registry, tx, updates_rx).await;
            let (answered, listed) = provider.await.unwrap();
            assert!(
                answered && listed,
                "request {i} was not listed when allowed"
            );
            drop(updates);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
