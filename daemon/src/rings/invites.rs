//! Ring invites: a ticket that makes whoever redeems it a member of a ring,
//! over a small protocol of ours (own ALPN, postcard, bounded sizes).
//!
//! The inviter keeps only the BLAKE3 hash of the invite's 256-bit secret,
//! with its ring, uses left, expiry and the membership time it grants. The
//! joiner's daemon dials the inviter, proves the secret; the inviter checks
//! and uses up the invite and adds the joiner's endpoint id (as the QUIC
//! connection authenticates it, never as the joiner claims it) to the ring
//! in one registry transaction, so a used-up, expired, revoked or forged
//! invite changes nothing. Both put each other in their address books under
//! a sanitised name that never shadows another entry or reads as an
//! endpoint id. The secret is never logged or listed.

use std::{str::FromStr, time::Duration};

use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler},
    Endpoint, EndpointAddr, EndpointId,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{
    net::exchange,
    registry::{InviteRecord, PeerRecord, Redeemed, Registry},
};
use ringdrop_proto::clock::now;

/// ALPN of the invite protocol.
pub const ALPN: &[u8] = b"ringdrop/invite/1";
/// Prefix of an invite ticket.
pub const PREFIX: &str = "rdropinvite";
const MAX_MESSAGE: usize = 4096;
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// Most addresses a joiner may give.
const MAX_ADDRS: usize = 16;
/// Longest address-book name a peer may propose.
const MAX_PROPOSED_NAME: usize = 32;

/// What an invite ticket carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    pub addr: EndpointAddr,
    pub id: [u8; 16],
    pub secret: [u8; 32],
    pub ring: String,
    /// The name the inviter proposes for itself.
    pub from: String,
}

impl std::fmt::Display for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = postcard::to_stdvec(self).map_err(|_| std::fmt::Error)?;
        write!(
            f,
            "{PREFIX}{}",
            data_encoding::BASE32_NOPAD
                .encode(&bytes)
                .to_ascii_lowercase()
        )
    }
}

/// Why an invite string is not one.
#[derive(Debug, thiserror::Error)]
#[error("not a ringdrop invite (it starts with {PREFIX}): {0}")]
pub struct BadInvite(String);

impl FromStr for Invite {
    type Err = BadInvite;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| BadInvite("wrong prefix".into()))?;
        if body.len() > MAX_MESSAGE * 2 {
            return Err(BadInvite("too long".into()));
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| BadInvite(e.to_string()))?;
        postcard::from_bytes(&bytes).map_err(|e| BadInvite(e.to_string()))
    }
}

/// The hash under which an invite's secret is kept.
pub fn secret_hash(secret: &[u8; 32]) -> [u8; 32] {
    *blake3::hash(secret).as_bytes()
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Join {
        id: [u8; 16],
        secret: [u8; 32],
        /// The name the joiner proposes for itself.
        name: String,
        /// Where the joiner can be reached (its direct addresses), so the
        /// inviter can send to it later.
        addrs: Vec<std::net::SocketAddr>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Response {
    Joined {
        ring: String,
        /// Unix seconds; `None`: for good.
        member_until: Option<i64>,
    },
    Refused(String),
}

/// Errors of joining a ring.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Bad(#[from] BadInvite),
    #[error("cannot reach the inviter {peer}: {msg}")]
    Connect { peer: String, msg: String },
    #[error("the inviter {peer} did not answer: {msg}")]
    Protocol { peer: String, msg: String },
    #[error("the inviter refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// A name a peer proposed, made safe for the address book: letters,
/// digits, `-`, `_`, `.` only, at most 32 of them, never an endpoint id
/// (else `peer-` and the id's first 8 hex digits).
fn safe_name(proposed: &str, id: &[u8; 32]) -> String {
    let base: String = proposed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(MAX_PROPOSED_NAME)
        .collect();
    let base_ok = !base.is_empty()
        && !base.starts_with('.')
        && base.parse::<EndpointId>().is_err()
        && base.len() < 60;
    if base_ok {
        base
    } else {
        format!("peer-{}", &data_encoding::HEXLOWER.encode(id)[..8])
    }
}

/// Adds `id` at `addr` to the address book, in one registry write: an
/// entry that already names the id keeps its name (and learns the
/// addresses); else a safe form of `proposed`, never another entry's
/// name (`-2`, `-3`... appended).
pub async fn remember(
    registry: &Registry,
    proposed: &str,
    addr: &EndpointAddr,
) -> Result<String, crate::registry::RegistryError> {
    let id = *addr.id.as_bytes();
    let seen = PeerRecord {
        name: String::new(),
        id,
        relay: addr.relay_urls().next().map(|r| r.to_string()),
        addrs: addr.ip_addrs().copied().collect(),
        updated_at: now(),
    };
    registry
        .remember_peer(&safe_name(proposed, &id), &seen)
        .await
}

/// This machine's host name, as the name a node proposes for itself.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Redeems invites for peers that dial in.
#[derive(Debug, Clone)]
pub struct InviteServer {
    registry: Registry,
    events: crate::events::Events,
}

impl InviteServer {
    pub fn new(registry: Registry, events: crate::events::Events) -> Self {
        Self { registry, events }
    }
}

impl ProtocolHandler for InviteServer {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = conn.remote_id();
        let Some((send, req)) = exchange::read_request(&conn, MAX_MESSAGE).await? else {
            return Ok(());
        };
        let Ok(Request::Join {
            id,
            secret,
            name,
            addrs,
        }) = postcard::from_bytes::<Request>(&req)
        else {
            exchange::bad_request(&conn);
            return Ok(());
        };
        let registry = &self.registry;
        let addr = addrs
            .into_iter()
            .take(MAX_ADDRS)
            .fold(EndpointAddr::new(peer), |a, ip| a.with_ip_addr(ip));
        let decided = async {
            let r = registry
                .redeem_invite(&id, &secret_hash(&secret), peer.as_bytes(), now())
                .await?;
            let named = match &r {
                Ok(_) => Some(remember(registry, &name, &addr).await?),
                Err(_) => None,
            };
            Ok::<_, crate::registry::RegistryError>((r, named))
        }
        .await;
        let answer = match decided {
            Ok((Ok(Redeemed { ring, member_until }), named)) => {
                info!(%peer, ring, name = named.as_deref().unwrap_or(""), "joined by invite");
                self.events.publish(crate::events::Event::MemberJoined {
                    ring: ring.clone(),
                    peer: peer.to_string(),
                    name: named.unwrap_or_default(),
                });
                Response::Joined { ring, member_until }
            }
            Ok((Err(refusal), _)) => {
                debug!(%peer, "invite refused: {refusal}");
                Response::Refused(refusal.to_string())
            }
            // Logged here in full; the joiner hears only that it failed
            // (an internal error's text never leaves the node).
            Err(e) => {
                warn!(%peer, "invite: cannot record the join: {e}");
                Response::Refused("the inviter cannot record the join now; try again later".into())
            }
        };
        let bytes = postcard::to_stdvec(&answer).map_err(AcceptError::from_err)?;
        exchange::answer(&conn, send, &bytes).await
    }
}

/// What joining gave.
#[derive(Debug, Clone)]
pub struct Joined {
    pub ring: String,
    pub inviter: EndpointId,
    /// The inviter's name in this node's address book.
    pub name: String,
    pub member_until: Option<i64>,
}

/// Redeems `invite` with its inviter; on success the inviter goes into the
/// address book as `alias` (or the name it proposed) and the ring it
/// owns is recorded as joined.
pub async fn join(
    endpoint: &Endpoint,
    registry: &Registry,
    invite: &Invite,
    alias: Option<&str>,
) -> Result<Joined, JoinError> {
    let peer = invite.addr.id.to_string();
    let proto = |msg: String| JoinError::Protocol {
        peer: peer.clone(),
        msg,
    };
    let req = join_request(endpoint, invite).map_err(|e| proto(e.to_string()))?;
    let bytes = exchange::ask(
        endpoint,
        invite.addr.clone(),
        ALPN,
        CONNECT_WAIT,
        &req,
        MAX_MESSAGE,
    )
    .await
    .map_err(|e| match e {
        exchange::AskError::Connect(msg) => JoinError::Connect {
            peer: peer.clone(),
            msg,
        },
        exchange::AskError::Exchange(msg) => proto(msg),
    })?;
    match postcard::from_bytes::<Response>(&bytes) {
        Ok(Response::Joined { ring, member_until }) => {
            // The inviter goes into the address book as `alias`, else
            // under the name it proposed.
            let proposed = alias.map_or_else(|| invite.from.clone(), str::to_string);
            let name = remember(registry, &proposed, &invite.addr)
                .await
                .map_err(|e| proto(e.to_string()))?;
            registry
                .record_joined(invite.addr.id.as_bytes(), &ring, now())
                .await
                .map_err(|e| proto(e.to_string()))?;
            Ok(Joined {
                ring,
                inviter: invite.addr.id,
                name,
                member_until,
            })
        }
        Ok(Response::Refused(why)) => Err(JoinError::Refused(why)),
        Err(e) => Err(proto(format!("malformed answer: {e}"))),
    }
}

/// What a joiner sends: the invite's id and secret, this machine's name
/// and addresses.
fn join_request(endpoint: &Endpoint, invite: &Invite) -> Result<Vec<u8>, postcard::Error> {
    let addr = endpoint.addr();
    postcard::to_stdvec(&Request::Join {
        id: invite.id,
        secret: invite.secret,
        name: host_name(),
        addrs: addr.ip_addrs().copied().take(MAX_ADDRS).collect(),
    })
}

/// A new invite for `ring`: its record (to keep) and ticket (to hand out).
pub fn create(
    addr: EndpointAddr,
    ring: &str,
    uses: u32,
    expires_at: i64,
    member_for: Option<i64>,
) -> (InviteRecord, Invite) {
    let id: [u8; 16] = rand::random();
    let secret: [u8; 32] = rand::random();
    let rec = InviteRecord {
        id,
        ring: ring.to_string(),
        secret_hash: secret_hash(&secret),
        uses_left: uses,
        uses: 0,
        expires_at,
        member_for,
        created_at: now(),
        revoked: false,
    };
    let invite = Invite {
        addr,
        id,
        secret,
        ring: ring.to_string(),
        from: host_name(),
    };
    (rec, invite)
}
