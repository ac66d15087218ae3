//! Sending to a peer: offers, the inbox and receipts, over a protocol of
//! ours (`ringdrop/offer/1`, postcard, bounded sizes).
//!
//! The sender gives the peer (and nobody else) access to what it sends
//! through a ring of its own (`offer-<id>`, the peer its one member) added
//! to the share, and keeps the offer in its registry until the peer's
//! daemon has taken it: a loop delivers queued offers with backoff (2 s
//! doubling to 30 s) until they expire, across restarts of either side.
//! The receiver takes offers only from its contacts (address book, members
//! of its rings, owners of rings it joined), within limits per sender and
//! in all; everything else is refused, counted and never stored. Offers
//! from a trusted sender (`peer trust`) within its size limit are fetched
//! by themselves. The receiver sends receipts back (accepted, rejected,
//! completed: hash verified), also with backoff; bytes served for the offer
//! show the sender that it is being fetched. When an offer completes, is
//! rejected, withdrawn or expires, the ring goes, and the share with it if
//! the send created it.
//!
//! Presence rides on the same protocol: a node tells its contacts where it
//! is (`Hello`) when it starts and when its addresses change; a contact
//! that hears it records the addresses in its address book and delivers
//! at once what it owes that node (queued offers, receipts), so a deferred
//! send reaches a receiver that came back on another address with relays
//! and discovery off.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use iroh::{
    endpoint::Connection,
    protocol::{AcceptError, ProtocolHandler},
    Endpoint, EndpointAddr, EndpointId,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::{
    events::{Event, Events},
    net::exchange,
    registry::{InboxOffer, InboxState, Receipt, Registry, SentState, Stored},
    ticket::Ticket,
};
use ringdrop_proto::clock::now;

/// ALPN of the offer protocol.
pub const ALPN: &[u8] = b"ringdrop/offer/1";
const MAX_MESSAGE: usize = 8 * 1024;
/// Longest offer name kept (characters).
const MAX_NAME: usize = 255;
const CONNECT_WAIT: Duration = Duration::from_secs(5);
const BACKOFF_START: i64 = 2;
const BACKOFF_CAP: i64 = 30;

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Offer {
        id: u64,
        name: String,
        size: u64,
        files: u64,
        ticket: String,
    },
    Receipt {
        id: u64,
        receipt: Receipt,
    },
    /// Where the sender is now (its direct addresses, its relay).
    Hello {
        addrs: Vec<std::net::SocketAddr>,
        relay: Option<String>,
    },
}

/// At most this many addresses of a hello are kept.
const MAX_HELLO_ADDRS: usize = 16;

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Stored,
    Noted,
    Refused(String),
}

/// State shared by the offer server and the daemon's contacts loop.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Wakes the loop (a new offer, a receipt, a user action).
    pub wake: Arc<Notify>,
    /// Offers refused since start.
    pub refused: Arc<AtomicU64>,
    /// Deliveries running now (sent offer ids, and inbox ids + 2^63).
    pub in_flight: Arc<Mutex<HashSet<u64>>>,
}

/// Takes offers and receipts from peers.
#[derive(Debug, Clone)]
pub struct OfferServer {
    registry: Registry,
    events: Events,
    shared: Shared,
    /// Hellos heard lately: a contact repeating itself costs no write.
    heard: Arc<Mutex<Heard>>,
}

/// Peer -> when it last said hello, and the addresses it said.
type Heard = HashMap<EndpointId, (std::time::Instant, Vec<std::net::SocketAddr>)>;

/// A hello saying the same again within this is not written again.
const HELLO_AGAIN: Duration = Duration::from_secs(10);
/// Hellos remembered at most (older ones go first when full).
const MAX_HEARD: usize = 1024;

impl OfferServer {
    pub fn new(registry: Registry, events: Events, shared: Shared) -> Self {
        Self {
            registry,
            events,
            shared,
            heard: Default::default(),
        }
    }

    /// Whether `peer` said just this lately (and notes it now if not).
    fn heard_lately(&self, peer: EndpointId, addrs: &[std::net::SocketAddr]) -> bool {
        let Ok(mut heard) = self.heard.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        if let Some((at, said)) = heard.get(&peer) {
            if now.duration_since(*at) < HELLO_AGAIN && said == addrs {
                return true;
            }
        }
        if heard.len() >= MAX_HEARD {
            heard.retain(|_, (at, _)| now.duration_since(*at) < HELLO_AGAIN);
            if heard.len() >= MAX_HEARD {
                heard.clear();
            }
        }
        heard.insert(peer, (now, addrs.to_vec()));
        false
    }

    fn refuse(&self, peer: EndpointId, why: String) -> Reply {
        self.shared.refused.fetch_add(1, Ordering::Relaxed);
        debug!(%peer, "offer refused: {why}");
        Reply::Refused(why)
    }

    /// A local failure: logged here in full; the peer hears only that this
    /// node cannot answer now (an internal error's text never leaves it).
    fn failed(&self, peer: EndpointId, doing: &str, e: impl std::fmt::Display) -> Reply {
        warn!(%peer, "offer protocol: cannot {doing}: {e}");
        Reply::Refused(format!("this node cannot {doing} now; try again later"))
    }

    /// Decides one message.
    async fn handle(&self, peer: EndpointId, msg: Msg) -> Reply {
        match msg {
            Msg::Offer {
                id,
                name,
                size,
                files,
                ticket,
            } => self.on_offer(peer, id, name, size, files, ticket).await,
            Msg::Receipt { id, receipt } => self.on_receipt(peer, id, receipt).await,
            Msg::Hello { addrs, relay } => self.on_hello(peer, addrs, relay).await,
        }
    }

    /// A contact says where it is now: its address-book entries take the
    /// addresses, and what this node owes it is due at once.
    async fn on_hello(
        &self,
        peer: EndpointId,
        mut addrs: Vec<std::net::SocketAddr>,
        relay: Option<String>,
    ) -> Reply {
        match self.registry.is_contact(peer.as_bytes(), now()).await {
            Ok(true) => {}
            // Not an offer: not counted with the refused ones.
            Ok(false) => return Reply::Refused("not a contact of this node".into()),
            Err(e) => return self.failed(peer, "check the sender", e),
        }
        addrs.truncate(MAX_HELLO_ADDRS);
        if self.heard_lately(peer, &addrs) {
            return Reply::Noted;
        }
        let relay = relay.filter(|r| r.len() <= 512 && r.parse::<iroh::RelayUrl>().is_ok());
        let id = *peer.as_bytes();
        if let Err(e) = self.registry.refresh_addrs(&id, &addrs, relay).await {
            return self.failed(peer, "record the addresses", e);
        }
        match self.registry.due_now_for(&id).await {
            Ok(0) => {}
            Ok(n) => {
                info!(%peer, owed = n, "a contact is back: delivering what it is owed");
                self.shared.wake.notify_one();
            }
            Err(e) => return self.failed(peer, "find what it is owed", e),
        }
        debug!(%peer, addrs = addrs.len(), "hello");
        Reply::Noted
    }

    /// A contact offers files: kept in the inbox (and readers told).
    async fn on_offer(
        &self,
        peer: EndpointId,
        id: u64,
        name: String,
        size: u64,
        files: u64,
        ticket: String,
    ) -> Reply {
        let t = now();
        match self.registry.is_contact(peer.as_bytes(), t).await {
            Ok(true) => {}
            Ok(false) => {
                return self.refuse(
                    peer,
                    "this node takes offers only from its address book, its rings' members and the owners of rings it joined".into(),
                )
            }
            Err(e) => return self.failed(peer, "check the sender", e),
        }
        // The sender offers what it serves itself, nothing else.
        match ticket.parse::<Ticket>() {
            Ok(t) if t.addr.id == peer => {}
            _ => return self.refuse(peer, "the offer's ticket is not one of yours".into()),
        }
        let name: String = name.chars().take(MAX_NAME).collect();
        let rec = InboxOffer {
            id: 0,
            from: *peer.as_bytes(),
            remote_id: id,
            name,
            size,
            files,
            ticket,
            received_at: t,
            state: InboxState::New,
            transfer_id: None,
            receipt: None,
            receipt_attempts: 0,
            receipt_next_try: 0,
        };
        match self.registry.store_offer(rec).await {
            Ok(Stored::New(rec)) => {
                info!(%peer, id = rec.id, size = rec.size, "offer received");
                self.announce(peer, rec).await;
                Reply::Stored
            }
            Ok(Stored::Again(_)) => Reply::Stored,
            Ok(Stored::Full(why)) => self.refuse(peer, why),
            Err(e) => self.failed(peer, "store the offer", e),
        }
    }

    /// Tells event readers of a new inbox offer, and the offers loop.
    async fn announce(&self, peer: EndpointId, rec: InboxOffer) {
        let from_name = self
            .registry
            .peer_name(&rec.from)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        self.events.publish(Event::OfferReceived {
            id: rec.id,
            from: peer.to_string(),
            from_name,
            name: rec.name,
            size: rec.size,
        });
        self.shared.wake.notify_one();
    }

    /// The receiver answered an offer of ours.
    async fn on_receipt(&self, peer: EndpointId, id: u64, receipt: Receipt) -> Reply {
        let from = *peer.as_bytes();
        let updated = self
            .registry
            .update_sent(id, move |offer| {
                if offer.peer != from || offer.state.is_final() {
                    return;
                }
                offer.state = match receipt {
                    Receipt::Accepted if offer.state == SentState::Fetching => SentState::Fetching,
                    Receipt::Accepted => SentState::Accepted,
                    Receipt::Rejected => SentState::Rejected,
                    Receipt::Completed => SentState::Completed,
                };
            })
            .await;
        match updated {
            Ok(Some(offer)) if offer.peer == from => {
                info!(%peer, id, state = offer.state.name(), "receipt");
                self.shared.wake.notify_one();
                Reply::Noted
            }
            Ok(_) => Reply::Refused("no such offer".into()),
            Err(e) => self.failed(peer, "record the receipt", e),
        }
    }
}

impl ProtocolHandler for OfferServer {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = conn.remote_id();
        let Some((send, req)) = exchange::read_request(&conn, MAX_MESSAGE).await? else {
            return Ok(());
        };
        let Ok(msg) = postcard::from_bytes::<Msg>(&req) else {
            exchange::bad_request(&conn);
            return Ok(());
        };
        let reply = self.handle(peer, msg).await;
        let bytes = postcard::to_stdvec(&reply).map_err(AcceptError::from_err)?;
        exchange::answer(&conn, send, &bytes).await
    }
}

/// Sends one message to `addr` and reads the reply.
async fn exchange(endpoint: &Endpoint, addr: EndpointAddr, msg: &Msg) -> Result<Reply, String> {
    let req = postcard::to_stdvec(msg).map_err(|e| e.to_string())?;
    let bytes = exchange::ask(endpoint, addr, ALPN, CONNECT_WAIT, &req, MAX_MESSAGE)
        .await
        .map_err(|e| e.to_string())?;
    postcard::from_bytes(&bytes).map_err(|e| format!("malformed reply: {e}"))
}

/// The next try after `attempts` failed ones.
fn backoff(attempts: u32) -> i64 {
    (BACKOFF_START << attempts.min(8)).min(BACKOFF_CAP)
}

/// What an offer says: its id at the sender, name, size, file count and
/// the ticket to fetch it with (the sender's own).
#[derive(Debug, Clone)]
pub struct OfferMsg {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub files: u64,
    pub ticket: String,
}

/// Tells the daemon at `addr` where this node is (`me`).
pub async fn hello(
    endpoint: &Endpoint,
    addr: EndpointAddr,
    me: &EndpointAddr,
) -> Result<(), String> {
    let msg = Msg::Hello {
        addrs: me.ip_addrs().copied().take(MAX_HELLO_ADDRS).collect(),
        relay: me.relay_urls().next().map(|r| r.to_string()),
    };
    match exchange(endpoint, addr, &msg).await? {
        Reply::Noted => Ok(()),
        Reply::Refused(why) => Err(why),
        Reply::Stored => Err("unexpected reply".into()),
    }
}

/// Offers `offer` to the daemon at `addr`: `Ok(Ok(()))` stored,
/// `Ok(Err(why))` refused, `Err` not delivered.
pub async fn offer(
    endpoint: &Endpoint,
    addr: EndpointAddr,
    offer: OfferMsg,
) -> Result<Result<(), String>, String> {
    let msg = Msg::Offer {
        id: offer.id,
        name: offer.name,
        size: offer.size,
        files: offer.files,
        ticket: offer.ticket,
    };
    match exchange(endpoint, addr, &msg).await? {
        Reply::Stored => Ok(Ok(())),
        Reply::Refused(why) => Ok(Err(why)),
        Reply::Noted => Err("unexpected reply".into()),
    }
}

/// Delivers a queued offer (sender side).
/// Sends a queued offer; whether the receiver took it into its inbox.
pub async fn deliver_offer(
    endpoint: Endpoint,
    registry: Registry,
    addr: EndpointAddr,
    id: u64,
) -> bool {
    let Ok(Some(sent)) = registry.sent_offer(id).await else {
        return false;
    };
    let msg = OfferMsg {
        id,
        name: sent.name.clone(),
        size: sent.size,
        files: sent.files,
        ticket: sent.ticket.clone(),
    };
    let result = offer(&endpoint, addr, msg).await;
    let delivered = matches!(result, Ok(Ok(())));
    let recorded = registry
        .update_sent(id, move |offer| {
            if offer.state != SentState::Queued {
                return;
            }
            match result {
                Ok(Ok(())) => {
                    info!(id, "offer delivered");
                    offer.state = SentState::Delivered;
                    offer.last_error = None;
                }
                Ok(Err(why)) => {
                    warn!(id, "offer refused: {why}");
                    offer.state = SentState::Refused;
                    offer.last_error = Some(format!("refused by the peer: {why}"));
                }
                Err(e) => {
                    offer.attempts += 1;
                    offer.next_try_at = now() + backoff(offer.attempts);
                    offer.last_error = Some(format!("not delivered yet: {e}"));
                }
            }
        })
        .await;
    if let Err(e) = recorded {
        warn!(id, "cannot record the delivery: {e}");
    }
    delivered
}

/// Sends the receipt an inbox offer owes (receiver side).
pub async fn deliver_receipt(
    endpoint: Endpoint,
    registry: Registry,
    addr: EndpointAddr,
    inbox_id: u64,
) {
    let Ok(Some(offer)) = registry.inbox_offer(inbox_id).await else {
        return;
    };
    let Some(receipt) = offer.receipt else {
        return;
    };
    let msg = Msg::Receipt {
        id: offer.remote_id,
        receipt,
    };
    let result = exchange(&endpoint, addr, &msg).await;
    let recorded = registry
        .update_inbox(inbox_id, move |offer| {
            if offer.receipt != Some(receipt) {
                return; // a newer one is owed now
            }
            match result {
                Ok(_) => {
                    offer.receipt = None;
                    offer.receipt_attempts = 0;
                }
                Err(e) => {
                    debug!(inbox_id, "receipt not delivered yet: {e}");
                    offer.receipt_attempts += 1;
                    offer.receipt_next_try = now() + backoff(offer.receipt_attempts);
                }
            }
        })
        .await;
    if let Err(e) = recorded {
        warn!(inbox_id, "cannot record the receipt's delivery: {e}");
    }
}
