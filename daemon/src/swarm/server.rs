//! The swarm protocol's server side: serves held content of ring shares
//! to the ring's members (by the policy's re-serve rule), says what it
//! holds, and hands out rosters (the owner signs its own rings'; a
//! member passes on the ones it holds).

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bao_tree::ChunkRanges;
use iroh::{
    endpoint::{Connection, RecvStream, SendStream, VarInt},
    protocol::{AcceptError, ProtocolHandler},
    EndpointId, SecretKey,
};
use iroh_blobs::{
    protocol::{GetRequest, ERR_LIMIT, ERR_PERMISSION},
    Hash,
};
use tracing::debug;

use super::{
    holdings::{HeldFile, NotServed},
    HaveAsk, HaveReply, RosterAsk, RosterReply, Swarm, ASK_HAVE, ASK_ROSTER, ASK_WITHIN,
    ERR_NOT_HELD, MAX_ASK, MAX_ROSTERS,
};
use crate::{
    access::{
        policy::{self, Policy},
        roster::{Roster, RosterMember, MAX_ADDRS, MAX_MEMBERS, MAX_SHARES},
        slots::{Known, Slots},
    },
    limits::{Bandwidth, Uplink},
    registry::{Registry, OPEN_RING},
    tasks::Tasks,
};

/// Connections one peer may hold, and all peers together.
const PER_PEER: usize = 8;
const TOTAL: usize = 256;
/// Members whose own word on their addresses is kept at most.
const MAX_SEEN: usize = 4096;

/// Serves the swarm protocol.
#[derive(Clone)]
pub struct SwarmServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SwarmServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmServer").finish_non_exhaustive()
    }
}

struct Inner {
    swarm: Swarm,
    registry: Registry,
    policy: Arc<Policy>,
    key: SecretKey,
    slots: Slots,
    bandwidth: Bandwidth,
    tasks: Tasks,
    /// Where members said they are when they asked for a roster.
    seen: Mutex<HashMap<[u8; 32], Vec<SocketAddr>>>,
}

/// What the server is built from.
pub struct Parts {
    pub swarm: Swarm,
    pub registry: Registry,
    pub policy: Arc<Policy>,
    pub key: SecretKey,
    pub known: Known,
    pub bandwidth: Bandwidth,
    pub tasks: Tasks,
}

impl SwarmServer {
    pub fn new(p: Parts) -> Self {
        Self {
            inner: Arc::new(Inner {
                swarm: p.swarm,
                registry: p.registry,
                policy: p.policy,
                key: p.key,
                slots: Slots::new(PER_PEER, TOTAL).with_contacts(p.known),
                bandwidth: p.bandwidth,
                tasks: p.tasks,
                seen: Default::default(),
            }),
        }
    }
}

impl ProtocolHandler for SwarmServer {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let Some(_slot) = self.inner.slots.admit(&conn, "swarm").await else {
            return Ok(());
        };
        let peer = conn.remote_id();
        let uplink = self.inner.bandwidth.uplink(peer);
        while let Ok((send, recv)) = conn.accept_bi().await {
            let inner = self.inner.clone();
            let uplink = uplink.clone();
            self.inner.tasks.spawn("swarm-stream", async move {
                inner.stream(peer, send, recv, uplink).await;
            });
        }
        Ok(())
    }
}

impl Inner {
    async fn stream(
        &self,
        peer: EndpointId,
        mut send: SendStream,
        mut recv: RecvStream,
        up: Uplink,
    ) {
        let read = async {
            let mut kind = [0u8; 1];
            recv.read_exact(&mut kind).await.ok()?;
            let body = recv.read_to_end(MAX_ASK).await.ok()?;
            Some((kind[0], body))
        };
        let Ok(Some((kind, body))) = tokio::time::timeout(ASK_WITHIN, read).await else {
            recv.stop(ERR_LIMIT).ok();
            send.reset(ERR_LIMIT).ok();
            return;
        };
        let served = match kind {
            0 => match postcard::from_bytes::<GetRequest>(&body) {
                Ok(req) => self.get(peer, req, &mut send, &up).await,
                Err(_) => Err(ERR_PERMISSION),
            },
            ASK_HAVE => match postcard::from_bytes::<HaveAsk>(&body) {
                Ok(ask) => self.have(peer, ask, &mut send).await,
                Err(_) => Err(ERR_PERMISSION),
            },
            ASK_ROSTER => match postcard::from_bytes::<RosterAsk>(&body) {
                Ok(ask) => self.roster(peer, ask, &mut send).await,
                Err(_) => Err(ERR_PERMISSION),
            },
            _ => Err(ERR_PERMISSION),
        };
        match served {
            Ok(()) => {
                send.finish().ok();
                // Wait for the peer to read it all (or go away).
                send.stopped().await.ok();
            }
            Err(code) => {
                send.reset(code).ok();
            }
        }
    }

    /// The holding of `root` this node may serve to `peer`, if any.
    fn servable(&self, peer: &EndpointId, root: &Hash) -> Option<Arc<super::Holding>> {
        let now_ms = ringdrop_proto::clock::now_ms();
        let now = ringdrop_proto::clock::now();
        let me = self.key.public();
        self.swarm.holdings.of(root).into_iter().find(|h| {
            let rosters: Vec<Roster> = self
                .swarm
                .rosters
                .covering(&h.owner.id, root, now_ms)
                .into_iter()
                .map(|held| held.roster)
                .collect();
            policy::may_reserve(
                self.swarm.settings.reserve,
                &rosters,
                me.as_bytes(),
                peer.as_bytes(),
                now,
            )
        })
    }

    /// A blobs GET of held files: every range must be held (else
    /// [`ERR_NOT_HELD`]: the fetcher asks another), the root and names
    /// are the owner's to serve.
    async fn get(
        &self,
        peer: EndpointId,
        req: GetRequest,
        send: &mut SendStream,
        up: &Uplink,
    ) -> Result<(), VarInt> {
        let holding = self.servable(&peer, &req.hash).ok_or(ERR_PERMISSION)?;
        // Position p is at offset p + 2; one past the last, the empty end.
        let offsets = holding.last_position() as usize + 4;
        if !crate::provider::within_offsets(&req.ranges, offsets) {
            return Err(ERR_PERMISSION);
        }
        let mut files: Vec<(HeldFile, ChunkRanges)> = Vec::new();
        for (offset, ranges) in req.ranges.iter_non_empty_infinite() {
            if offset < 2 {
                return Err(ERR_PERMISSION);
            }
            let file = holding
                .file_for(offset - 2, ranges)
                .map_err(|_| ERR_NOT_HELD)?;
            files.push((file, ranges.clone()));
        }
        let mut payload = 0;
        for (file, ranges) in files {
            let size = file.size.unwrap_or(0);
            let bytes = crate::content::ranges::payload(&ranges, size);
            if let Err(e) = send_encoded(file, ranges, send, up).await {
                debug!(%peer, "swarm get ended: {e}");
                return Err(ERR_NOT_HELD);
            }
            payload += bytes;
        }
        if let Err(e) = self.registry.add_served(Some(req.hash), payload).await {
            debug!("cannot count bytes re-served: {e}");
        }
        Ok(())
    }

    async fn have(
        &self,
        peer: EndpointId,
        ask: HaveAsk,
        send: &mut SendStream,
    ) -> Result<(), VarInt> {
        let root = Hash::from_bytes(ask.root);
        let holding = self.servable(&peer, &root).ok_or(ERR_PERMISSION)?;
        let reply = HaveReply {
            files: holding.have_rows(),
            coming: holding.coming_rows(),
        };
        send_reply(send, &reply).await
    }

    async fn roster(
        &self,
        peer: EndpointId,
        ask: RosterAsk,
        send: &mut SendStream,
    ) -> Result<(), VarInt> {
        let root = Hash::from_bytes(ask.root);
        let now = ringdrop_proto::clock::now();
        let mut rosters = self.own_rosters(peer, root, ask.addrs).await;
        // A member passes on the rosters it holds that list the asker.
        for held in self
            .swarm
            .rosters
            .any_covering(&root, ringdrop_proto::clock::now_ms())
        {
            if rosters.len() < MAX_ROSTERS
                && policy::may_pass_roster(&held.roster, peer.as_bytes(), now)
            {
                rosters.push(held.signed);
            }
        }
        send_reply(send, &RosterReply { rosters }).await
    }

    /// Signed rosters of this node's own rings that share `root` and list
    /// `peer`, if the peer may fetch it.
    async fn own_rosters(
        &self,
        peer: EndpointId,
        root: Hash,
        mut addrs: Vec<SocketAddr>,
    ) -> Vec<super::SignedRoster> {
        addrs.truncate(MAX_ADDRS);
        let registry = self.registry.clone();
        let policy = self.policy.clone();
        let now = ringdrop_proto::clock::now();
        let built = tokio::task::spawn_blocking(move || {
            build_rosters(&registry, &policy, &peer, &root, now)
        })
        .await;
        let Ok(Ok(rings)) = built else {
            return Vec::new();
        };
        if rings.is_empty() {
            return Vec::new();
        }
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= MAX_SEEN {
                seen.clear();
            }
            if !addrs.is_empty() {
                seen.insert(*peer.as_bytes(), addrs);
            }
        }
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        let now_ms = ringdrop_proto::clock::now_ms();
        let valid = self.swarm.settings.roster_valid.as_millis() as i64;
        let me = self.key.public();
        rings
            .into_iter()
            .take(MAX_ROSTERS)
            .filter_map(|(ring, members, shares)| {
                let members = members
                    .into_iter()
                    .map(|(id, book, expires_at)| RosterMember {
                        addrs: seen.get(&id).cloned().unwrap_or(book),
                        id,
                        expires_at,
                    })
                    .collect();
                Roster {
                    owner: *me.as_bytes(),
                    ring,
                    version: now_ms,
                    valid_until: now_ms + valid,
                    members,
                    shares,
                }
                .sign(&self.key)
                .ok()
            })
            .collect()
    }
}

/// Writes one of our replies (postcard, to the end of the stream).
async fn send_reply(send: &mut SendStream, reply: &impl serde::Serialize) -> Result<(), VarInt> {
    let bytes = postcard::to_stdvec(reply).map_err(|_| ERR_LIMIT)?;
    send.write_all(&bytes).await.map_err(|_| ERR_LIMIT)
}

/// A ring of this node: its name, members (id, address-book addresses,
/// expiry) and the shares its members may serve one another.
type RingRows = (
    String,
    Vec<([u8; 32], Vec<SocketAddr>, Option<i64>)>,
    Vec<[u8; 32]>,
);

/// The rings `peer` is a current member of that share `root`, if it may
/// fetch `root` at all. Blocking.
fn build_rosters(
    registry: &Registry,
    policy: &Policy,
    peer: &EndpointId,
    root: &Hash,
    now: i64,
) -> Result<Vec<RingRows>, crate::registry::RegistryError> {
    let reg = registry.blocking();
    let mut out = Vec::new();
    let rows = reg.shares_of(root)?;
    // The address book and every share, read once and only if a ring
    // qualifies.
    let mut book: Option<HashMap<[u8; 32], Vec<SocketAddr>>> = None;
    let mut all: Option<Vec<crate::registry::ShareRecord>> = None;
    for share in &rows {
        if !policy.may_fetch(share, peer.as_bytes(), now)? {
            continue;
        }
        for ring in &share.rings {
            if ring == OPEN_RING || out.iter().any(|(r, _, _): &RingRows| r == ring) {
                continue;
            }
            let members = reg.members(ring)?;
            let current = |id: &[u8; 32]| {
                members
                    .iter()
                    .any(|m| m.id == *id && m.expires_at.is_none_or(|t| t > now))
            };
            if !current(peer.as_bytes()) {
                continue;
            }
            if book.is_none() {
                book = Some(reg.peers()?.into_iter().map(|p| (p.id, p.addrs)).collect());
            }
            let book = book.as_ref().expect("read above");
            let listed = members
                .iter()
                .take(MAX_MEMBERS)
                .map(|m| {
                    let mut addrs = book.get(&m.id).cloned().unwrap_or_default();
                    addrs.truncate(MAX_ADDRS);
                    (m.id, addrs, m.expires_at)
                })
                .collect();
            let mut shares = Vec::new();
            if all.is_none() {
                all = Some(reg.shares()?);
            }
            for s in all.as_ref().expect("read above") {
                let ours = s.owner == share.owner && s.rings.iter().any(|r| r == ring);
                if ours && shares.len() < MAX_SHARES && reg.reserved(&s.hash, s.owner)? {
                    shares.push(*s.hash.as_bytes());
                }
            }
            out.push((ring.clone(), listed, shares));
        }
    }
    Ok(out)
}

/// Sends `ranges` of `file` through the upload limits; a peer that goes
/// away stops the encoding.
async fn send_encoded(
    file: HeldFile,
    ranges: ChunkRanges,
    send: &mut SendStream,
    up: &Uplink,
) -> Result<(), NotServed> {
    let (mut rx, encoding) = file.content()?.stream(ranges);
    while let Some(bytes) = rx.recv().await {
        up.take(bytes.len() as u64).await;
        if send.write_chunk(bytes).await.is_err() {
            break;
        }
    }
    drop(rx);
    encoding
        .await
        .map_err(|e| NotServed::Io(std::io::Error::other(e)))?
}
