//! A ring is a swarm: members fetch a ring share from each other, never
//! from anyone else, by the ring owner's signed roster.
//!
//! - [`roster`]: the roster the owner signs, verified and kept by members.
//! - [`holdings`]: what this node holds of ring shares it fetched (one
//!   content layer: file plus outboard, read through bao-tree) and how a
//!   range of it is encoded.
//! - [`server`]: our protocol (`ringdrop/swarm/1`): blobs GETs for held
//!   content, "what do you have", and "the roster for this share".
//! - [`client`]: asking those of a peer.
//!
//! The scheduler that takes ranges from several providers at once is the
//! transfer's (`transfers/many.rs`).

pub mod client;
pub mod holdings;
pub mod server;

use std::{net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

pub use crate::access::roster::{Roster, Rosters, SignedRoster};
pub use holdings::{Holding, Holdings};

/// ALPN of the swarm protocol.
pub const ALPN: &[u8] = b"ringdrop/swarm/1";

/// A stream starts with one byte: a blobs request's own type byte (`0`,
/// GET: so iroh-blobs' get state machine talks to us unchanged), or one of
/// these.
pub const ASK_HAVE: u8 = 0xA0;
pub const ASK_ROSTER: u8 = 0xA1;

/// Reset code of a GET for ranges this node does not hold (ask another).
pub const ERR_NOT_HELD: iroh::endpoint::VarInt = iroh::endpoint::VarInt::from_u32(0x5244_0001);

/// Longest ask, and longest answer to one.
pub const MAX_ASK: usize = 64 * 1024;
pub const MAX_REPLY: usize = 8 << 20;
/// Time a peer has to send its whole ask.
pub const ASK_WITHIN: Duration = Duration::from_secs(10);
/// Rosters one answer carries at most.
pub const MAX_ROSTERS: usize = 16;

/// "What do you hold of this collection?"
#[derive(Debug, Serialize, Deserialize)]
pub struct HaveAsk {
    pub root: [u8; 32],
}

/// The chunks held of each collection position, and those it is being
/// sent by the owner now (others then ask the owner for something else).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HaveReply {
    pub files: Vec<(u64, Vec<u64>)>,
    pub coming: Vec<(u64, Vec<u64>)>,
}

/// "The rosters that let members serve this collection, please; I am
/// here."
#[derive(Debug, Serialize, Deserialize)]
pub struct RosterAsk {
    pub root: [u8; 32],
    pub addrs: Vec<SocketAddr>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RosterReply {
    pub rosters: Vec<SignedRoster>,
}

/// What the swarm needs to know of this node's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a roster this node signs is valid.
    pub roster_valid: Duration,
    /// Whether this node serves what it fetched to its rings' members.
    pub reserve: bool,
}

/// The swarm's shared state: what is held, the rosters, the settings.
#[derive(Debug, Clone)]
pub struct Swarm {
    pub holdings: Holdings,
    pub rosters: Rosters,
    pub settings: Settings,
}

impl Swarm {
    pub fn new(settings: Settings) -> Self {
        Self {
            holdings: Holdings::default(),
            rosters: Rosters::default(),
            settings,
        }
    }
}

/// How often held content's rosters are looked at.
const ROSTERS_EVERY: Duration = Duration::from_secs(1);
/// How long after a failed ask the same collection is asked about again.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// Keeps a valid roster for everything this node holds: asked of the
/// ring's owner once half of the held one's validity has passed (or there
/// is none), else of the members it lists. Runs until stopped.
pub async fn keep_rosters(swarm: Swarm, endpoint: iroh::Endpoint) {
    let mut failed: std::collections::HashMap<iroh_blobs::Hash, std::time::Instant> =
        Default::default();
    let mut tick = tokio::time::interval(ROSTERS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !swarm.settings.reserve {
            continue;
        }
        let mut asked = std::collections::HashSet::new();
        for holding in swarm.holdings.all() {
            let root = holding.root;
            if !asked.insert((holding.owner.id, root)) {
                continue;
            }
            if failed
                .get(&root)
                .is_some_and(|t| t.elapsed() < ASK_AGAIN_AFTER)
            {
                continue;
            }
            let now = ringdrop_proto::clock::now_ms();
            let held = swarm.rosters.covering(&holding.owner.id, &root, now);
            let fresh = held.iter().any(|h| {
                let r = &h.roster;
                now < r.version + (r.valid_until - r.version) / 2
            });
            if fresh {
                continue;
            }
            // The owner first, then the members the latest roster lists.
            let me = endpoint.id();
            let mut askees = vec![holding.owner.clone()];
            for h in &held {
                askees.extend(h.roster.others(&me, ringdrop_proto::clock::now()));
            }
            let mut got = false;
            for addr in askees.into_iter().take(4) {
                if ask_rosters(&swarm, &endpoint, addr, holding.owner.id, &root).await {
                    got = true;
                    break;
                }
            }
            if got {
                failed.remove(&root);
            } else {
                failed.insert(root, std::time::Instant::now());
            }
        }
    }
}

/// Asks `addr` for the rosters of `owner` covering `root`; whether one
/// was taken.
async fn ask_rosters(
    swarm: &Swarm,
    endpoint: &iroh::Endpoint,
    addr: iroh::EndpointAddr,
    owner: iroh::EndpointId,
    root: &iroh_blobs::Hash,
) -> bool {
    let Ok(conn) = client::connect(endpoint, addr).await else {
        return false;
    };
    let me: Vec<SocketAddr> = endpoint.addr().ip_addrs().copied().collect();
    let Ok(signed) = client::rosters(&conn, root, me).await else {
        return false;
    };
    let now = ringdrop_proto::clock::now_ms();
    let mut took = false;
    for s in signed {
        match swarm.rosters.take(&owner, s, now) {
            Ok(Some(_)) => took = true,
            Ok(None) => {}
            Err(e) => tracing::debug!("roster not taken: {e}"),
        }
    }
    took
}
