//! Sending to a peer and the inbox on the facade (see [`crate::offers`]):
//! the user's actions, and the loop that delivers offers and receipts,
//! fetches trusted senders' offers, follows their transfers and ends the
//! access an offer created once it is over.

use std::{path::PathBuf, sync::Arc, time::Duration};

use iroh::EndpointAddr;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    access::AccessError,
    transfers::{daemon_cannot_write, Dest},
    Daemon, Named, TicketFormat,
};
use crate::{
    authority::Caller,
    events::{Event, Stamped},
    offers::protocol,
    registry::{
        daemon_uid, InboxOffer, InboxState, Owned, Receipt, RegistryError, SentOffer, SentState,
        Terms, TransferState, TrustRecord,
    },
    shares::{ShareError, ShareRequest},
    transfers::{TransferError, TransferView},
};
use ringdrop_proto::clock::now;

/// How long an offer waits to be delivered and answered by default.
pub const OFFER_EXPIRES: i64 = 7 * 24 * 3600;
/// How often the loop looks even when nothing woke it.
const LOOP_EVERY: Duration = Duration::from_secs(1);
/// Inbox ids in the in-flight set are offset by this (sent ids below).
const INBOX_FLAG: u64 = 1 << 63;

/// Errors of sending and the inbox.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Share(#[from] ShareError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error("no offer {0}: see `ringdropctl sent` or `ringdropctl inbox`")]
    NoSuchOffer(u64),
    #[error("offer {id} is {state}: it cannot be {action}")]
    Settled {
        id: u64,
        state: &'static str,
        action: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Daemon {
    fn contacts(&self) -> &protocol::Shared {
        &self.inner.contacts
    }

    /// Gives `peer` (and nobody else) access to `path` and queues an offer
    /// of it for `peer`'s daemon, valid for `expires_in` seconds.
    pub async fn send(
        &self,
        caller: &Caller,
        path: PathBuf,
        handoff: &[u8],
        peer: &str,
        expires_in: Option<i64>,
    ) -> Result<Named<SentOffer>, ContactError> {
        let expires_in = expires_in.unwrap_or(OFFER_EXPIRES);
        if !(1..=30 * 24 * 3600).contains(&expires_in) {
            return Err(ContactError::Invalid(
                "an offer expires after 1 second to 30 days".into(),
            ));
        }
        let handed = self.handed(caller, handoff)?;
        let p = self.resolve_peer(peer).await?;
        if p.id == self.inner.endpoint.id() {
            return Err(ContactError::Invalid("that is this node itself".into()));
        }
        let registry = &self.inner.registry;
        let expires_at = now() + expires_in;
        let ring = self.offer_ring(caller, &p.id, expires_at).await?;
        // Nobody follows the import's progress here.
        let (tx, _) = mpsc::channel(1);
        // The offer's ring only: new content never inherits the path's
        // other shares' rings or listing.
        let shared = self
            .share(
                caller,
                ShareRequest {
                    path,
                    name: None,
                    rings: vec![ring.clone()],
                    listed: false,
                    reserve: None,
                    inherit: false,
                    handed,
                },
                tx,
            )
            .await;
        let shared = match shared {
            Ok(s) => s,
            Err(e) => {
                registry.remove_ring(&ring).await.ok();
                return Err(e.into());
            }
        };
        let rec = self.offer_of(&shared, &p.id, ring, expires_at);
        let rec = registry.insert_sent(rec, caller.uid).await?;
        info!(uid = caller.uid, id = rec.id, peer = %p.id, size = rec.size, "offer queued");
        self.contacts().wake.notify_one();
        Ok(self.named(rec).await)
    }

    /// The sent offer of `shared` to `peer`, queued.
    fn offer_of(
        &self,
        shared: &crate::shares::Shared,
        peer: &iroh::EndpointId,
        ring: String,
        expires_at: i64,
    ) -> SentOffer {
        let s = &shared.share;
        SentOffer {
            id: 0,
            peer: *peer.as_bytes(),
            hash: s.hash,
            name: s.name.clone(),
            size: s.size,
            files: s.files,
            ticket: self.ticket(s.hash, &s.name, TicketFormat::Ringdrop),
            ring,
            created_share: shared.created,
            state: SentState::Queued,
            bytes: 0,
            created_at: now(),
            expires_at,
            attempts: 0,
            next_try_at: 0,
            last_error: None,
        }
    }

    /// A ring of the offer's own: `peer` its one member, until the offer
    /// ends (and no longer than it may wait). Created here or not at all:
    /// two sends never share one ring.
    async fn offer_ring(
        &self,
        caller: &Caller,
        peer: &iroh::EndpointId,
        expires_at: i64,
    ) -> Result<String, ContactError> {
        let registry = &self.inner.registry;
        let mut ring = format!("offer-{}", registry.peek_sent_id().await?);
        while !registry.create_ring(&ring, now(), caller.uid).await? {
            ring = format!("offer-{:08x}", rand::random::<u32>());
        }
        registry
            .add_member(&ring, peer.as_bytes(), Some(expires_at))
            .await?;
        Ok(ring)
    }

    /// The offers `caller` sent (an admin: all).
    pub async fn sent(&self, caller: &Caller) -> Result<Named<Vec<SentOffer>>, ContactError> {
        let owners = self.inner.registry.owners(Owned::Sent).await?;
        let mut all = self.inner.registry.sent().await?;
        all.retain(|r| caller.controls(owners.of(&r.id.to_be_bytes())));
        Ok(self.named(all).await)
    }

    /// Withdraws an offer and ends the access it created.
    pub async fn withdraw(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Named<SentOffer>, ContactError> {
        if !caller.controls(
            self.inner
                .registry
                .owner(Owned::Sent, &id.to_be_bytes())
                .await?,
        ) {
            return Err(ContactError::NoSuchOffer(id));
        }
        // The state it had, if it had ended already (nothing changed then).
        let was = Arc::new(std::sync::OnceLock::new());
        let seen = was.clone();
        let rec = self
            .inner
            .registry
            .update_sent(id, move |r| {
                if r.state.is_final() {
                    seen.set(r.state).ok();
                } else {
                    r.state = SentState::Withdrawn;
                }
            })
            .await?
            .ok_or(ContactError::NoSuchOffer(id))?;
        if let Some(&state) = was.get() {
            return Err(ContactError::Settled {
                id,
                state: state.name(),
                action: "withdrawn",
            });
        }
        info!(uid = caller.uid, id, "offer withdrawn");
        self.end_offer_access(&rec).await;
        Ok(self.named(rec).await)
    }

    /// Forgets an ended sent offer of `caller`'s.
    pub async fn remove_sent(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Named<SentOffer>, ContactError> {
        let owner = self
            .inner
            .registry
            .owner(Owned::Sent, &id.to_be_bytes())
            .await?;
        if !caller.controls(owner) {
            return Err(ContactError::NoSuchOffer(id));
        }
        let state = Arc::new(std::sync::OnceLock::new());
        let seen = state.clone();
        let removed = self
            .inner
            .registry
            .remove_sent_if(id, move |r| {
                seen.set(r.state).ok();
                r.state.is_final()
            })
            .await?;
        match (removed, state.get().copied()) {
            (Some(rec), _) => {
                info!(uid = caller.uid, id, "sent offer forgotten");
                // Ended, but maybe not yet cleaned up by the offers loop,
                // which will not see it again.
                self.end_access_of(&rec, owner).await;
                Ok(self.named(rec).await)
            }
            (None, Some(state)) => Err(ContactError::Settled {
                id,
                state: state.name(),
                action: "removed (it has not ended: withdraw it first)",
            }),
            (None, None) => Err(ContactError::NoSuchOffer(id)),
        }
    }

    /// Forgets an answered inbox offer `caller` may see whose receipt
    /// has been delivered.
    pub async fn remove_inbox_offer(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Named<InboxOffer>, ContactError> {
        let rec = self.visible_offer(caller, id).await?;
        let removed = self
            .inner
            .registry
            .remove_inbox_if(id, |r| r.state.is_answered() && r.receipt.is_none())
            .await?;
        match removed {
            Some(rec) => {
                info!(uid = caller.uid, id, "inbox offer forgotten");
                Ok(self.named(rec).await)
            }
            None => Err(ContactError::Settled {
                id,
                state: rec.state.name(),
                action: "removed yet (unanswered, still fetching, or its receipt is on its way)",
            }),
        }
    }

    /// Inbox offer `id`, if `caller` may see it.
    async fn visible_offer(&self, caller: &Caller, id: u64) -> Result<InboxOffer, ContactError> {
        let offer = self.inner.registry.inbox_offer(id).await?;
        match offer {
            Some(o) if self.sees_offer_from(caller, &o.from).await => Ok(o),
            _ => Err(ContactError::NoSuchOffer(id)),
        }
    }

    /// Whether `caller` may see an offer from `from`: admins all; an
    /// operator those from its own contacts.
    async fn sees_offer_from(&self, caller: &Caller, from: &[u8; 32]) -> bool {
        caller.is_admin()
            || matches!(
                self.inner
                    .registry
                    .is_contact_of(caller.uid, from, now())
                    .await,
                Ok(true)
            )
    }

    /// The inbox as `caller` may see it, and how many offers were refused.
    pub async fn inbox(
        &self,
        caller: &Caller,
    ) -> Result<Named<(Vec<InboxOffer>, u64)>, ContactError> {
        let refused = self
            .contacts()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed);
        let all = self.inner.registry.inbox().await?;
        // One verdict per sender.
        let mut sees = std::collections::HashMap::new();
        let mut visible = Vec::new();
        for o in all {
            let seen = match sees.get(&o.from) {
                Some(&seen) => seen,
                None => {
                    let seen = self.sees_offer_from(caller, &o.from).await;
                    sees.insert(o.from, seen);
                    seen
                }
            };
            if seen {
                visible.push(o);
            }
        }
        Ok(self.named((visible, refused)).await)
    }

    async fn new_offer(
        &self,
        caller: &Caller,
        id: u64,
        action: &'static str,
    ) -> Result<InboxOffer, ContactError> {
        let rec = self.visible_offer(caller, id).await?;
        if rec.state != InboxState::New {
            return Err(ContactError::Settled {
                id,
                state: rec.state.name(),
                action,
            });
        }
        Ok(rec)
    }

    /// Starts fetching an inbox offer as `fetch` would for `caller`.
    pub async fn accept_offer(
        &self,
        id: u64,
        out: Option<PathBuf>,
        force: bool,
        caller: &Caller,
        caller_cannot_write: Option<String>,
    ) -> Result<Named<(InboxOffer, TransferView)>, ContactError> {
        let mut rec = self.new_offer(caller, id, "accepted").await?;
        let view = self
            .fetch_with(
                &rec.ticket,
                Dest {
                    out,
                    force,
                    caller_cannot_write,
                },
                caller,
                Terms {
                    expect_size: Some(rec.size),
                    ..Terms::default()
                },
                None,
            )
            .await?;
        rec.state = InboxState::Accepted;
        rec.transfer_id = Some(view.rec.id);
        self.owe_receipt(&mut rec, Receipt::Accepted).await?;
        Ok(self.named((rec, view)).await)
    }

    pub async fn reject_offer(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Named<InboxOffer>, ContactError> {
        let mut rec = self.new_offer(caller, id, "rejected").await?;
        rec.state = InboxState::Rejected;
        self.owe_receipt(&mut rec, Receipt::Rejected).await?;
        Ok(self.named(rec).await)
    }

    async fn owe_receipt(
        &self,
        rec: &mut InboxOffer,
        receipt: Receipt,
    ) -> Result<(), ContactError> {
        rec.receipt = Some(receipt);
        rec.receipt_attempts = 0;
        rec.receipt_next_try = 0;
        self.inner.registry.put_inbox(rec).await?;
        self.contacts().wake.notify_one();
        Ok(())
    }

    /// Offers from `peer` up to `max_size` bytes are fetched into `dir` by
    /// themselves, as `caller`'s transfers: `dir` must be a directory of
    /// `caller`'s (the daemon's own user: one it may write), never the data
    /// dir or inside it. One rule a sender, owned by whoever set it.
    pub async fn trust_peer(
        &self,
        caller: &Caller,
        peer: &str,
        dir: PathBuf,
        max_size: Option<u64>,
        per_day: Option<u64>,
    ) -> Result<(super::peers::PeerRef, TrustRecord, u64), ContactError> {
        let p = self.resolve_peer(peer).await?;
        if !dir.is_absolute() {
            return Err(ContactError::Invalid(format!(
                "the directory must be an absolute path: {}",
                dir.display()
            )));
        }
        if !dir.is_dir() {
            return Err(ContactError::Invalid(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        self.accept_dir_allowed(caller, &dir)
            .map_err(ContactError::Invalid)?;
        let per_day = per_day.unwrap_or(crate::registry::DEFAULT_TRUST_PER_DAY);
        let rec = TrustRecord {
            accept_into: dir,
            max_size,
        };
        if !self
            .inner
            .registry
            .put_trust_owned(p.id.as_bytes(), &rec, per_day, caller.uid)
            .await?
        {
            return Err(ContactError::Invalid(format!(
                "offers from {} are already handled by another user's trust rule: ask them (or an admin) to remove it",
                p.name.as_deref().unwrap_or("that peer")
            )));
        }
        info!(uid = caller.uid, peer = %p.id, dir = %rec.accept_into.display(), per_day, "offers accepted by themselves");
        Ok((p, rec, per_day))
    }

    pub async fn untrust_peer(
        &self,
        caller: &Caller,
        peer: &str,
    ) -> Result<super::peers::PeerRef, ContactError> {
        let p = self.resolve_peer(peer).await?;
        let registry = &self.inner.registry;
        if registry.trust(p.id.as_bytes()).await?.is_some()
            && !caller.controls(registry.owner(Owned::Trust, p.id.as_bytes()).await?)
        {
            return Err(ContactError::Invalid(
                "that trust rule is another user's: only they (or an admin) may remove it".into(),
            ));
        }
        registry.remove_trust(p.id.as_bytes()).await?;
        registry.remove_owner(Owned::Trust, p.id.as_bytes()).await?;
        info!(uid = caller.uid, peer = %p.id, "trust removed");
        Ok(p)
    }

    /// Whether `caller` may name `dir` for offers to land in: not the data
    /// dir, nor beneath or above it (decided on the directories, not the
    /// path's text); an operator's own directory that it may write; the
    /// daemon's own user, one it can write.
    fn accept_dir_allowed(&self, caller: &Caller, dir: &std::path::Path) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let data = std::fs::metadata(&self.inner.config.data_dir)
            .map_err(|e| format!("{}: {e}", self.inner.config.data_dir.display()))?;
        let canonical =
            std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let data_canonical = std::fs::canonicalize(&self.inner.config.data_dir)
            .unwrap_or_else(|_| self.inner.config.data_dir.clone());
        let same = |m: &std::fs::Metadata| m.dev() == data.dev() && m.ino() == data.ino();
        let inside = canonical
            .ancestors()
            .any(|a| std::fs::metadata(a).is_ok_and(|m| same(&m)));
        if inside || data_canonical.starts_with(&canonical) {
            return Err(format!(
                "{} is ringdropd's data directory, or holds it, or is inside it: offers never land there; choose a directory of your own",
                dir.display()
            ));
        }
        if caller.uid == crate::authority::my_uid() {
            return daemon_cannot_write(dir);
        }
        if meta.uid() != caller.uid || meta.mode() & 0o200 == 0 {
            return Err(format!(
                "{} is not a directory of user {} that it may write: offers accepted by themselves are yours, so they land only in a directory you own",
                dir.display(),
                ringdrop_proto::place::user_name(caller.uid)
            ));
        }
        Ok(())
    }

    /// Ends the access an offer created: its ring, and the share if the
    /// send created it and nothing else gives access to it now, all in one
    /// registry transaction (a concurrent share or send keeps its effect).
    async fn end_offer_access(&self, rec: &SentOffer) {
        match self
            .inner
            .registry
            .owner(Owned::Sent, &rec.id.to_be_bytes())
            .await
        {
            Ok(owner) => self.end_access_of(rec, owner).await,
            Err(e) => warn!(id = rec.id, "cannot end the offer's access: {e}"),
        }
    }

    /// [`Self::end_offer_access`] of an offer sent by `owner`.
    async fn end_access_of(&self, rec: &SentOffer, owner: u32) {
        let ended = self
            .inner
            .registry
            .end_offer(&rec.ring, &rec.hash, owner, rec.created_share)
            .await;
        let (members, unshared) = match ended {
            Ok(Some(ended)) => ended,
            Ok(None) => return,
            Err(e) => {
                warn!(id = rec.id, "cannot end the offer's access: {e}");
                return;
            }
        };
        for m in members {
            if let Ok(id) = iroh::EndpointId::from_bytes(&m.id) {
                self.inner.gate.disconnect(id);
            }
        }
        if let Some(share) = unshared {
            self.disconnect_share(&share.hash);
            let (registry, store) = (self.inner.registry.clone(), self.inner.store.clone());
            self.spawn("offer-release", async move {
                // Shared again meanwhile: the tag is the new share's.
                if matches!(registry.share_of(share.owner, &share.hash).await, Ok(None)) {
                    let tag = crate::shares::share_tag(&share.hash, share.owner);
                    if let Err(e) = store.tags().delete(tag).await {
                        warn!("cannot release a finished offer's share: {e}");
                    }
                }
            });
        }
        info!(
            id = rec.id,
            state = rec.state.name(),
            "offer's access ended"
        );
    }

    async fn addr_of_id(&self, id: &[u8; 32]) -> Option<EndpointAddr> {
        let hex = data_encoding::HEXLOWER.encode(id);
        self.resolve_peer(&hex).await.ok().map(|p| p.addr)
    }

    /// Starts `work` for `key` unless it is already running.
    fn once<F>(&self, key: u64, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let set = self.contacts().in_flight.clone();
        if !set.lock().map(|mut s| s.insert(key)).unwrap_or(false) {
            return;
        }
        self.spawn("offer-work", async move {
            work.await;
            if let Ok(mut s) = set.lock() {
                s.remove(&key);
            }
        });
    }

    /// One pass of the loop: deliveries due, expiries, trusted offers,
    /// transfers of accepted offers, access to end.
    async fn contacts_pass(&self) -> Result<(), RegistryError> {
        let t = now();
        self.sent_pass(t).await?;
        self.inbox_pass(t).await
    }

    /// Sent offers: expired ones end, ended ones lose their access, queued
    /// ones due are delivered.
    async fn sent_pass(&self, t: i64) -> Result<(), RegistryError> {
        let registry = &self.inner.registry;
        for mut rec in registry.sent().await? {
            if !rec.state.is_final() && t >= rec.expires_at {
                let updated = registry
                    .update_sent(rec.id, move |r| {
                        if !r.state.is_final() {
                            r.state = SentState::Expired;
                        }
                    })
                    .await?;
                if let Some(r) = updated {
                    rec = r;
                }
            }
            if rec.state.is_final() {
                self.end_offer_access(&rec).await;
                continue;
            }
            if rec.state == SentState::Queued && t >= rec.next_try_at {
                if let Some(addr) = self.addr_of_id(&rec.peer).await {
                    let (ep, reg) = (self.inner.endpoint.clone(), registry.clone());
                    let counts = self.inner.events.counts().clone();
                    let id = rec.id;
                    self.once(id, async move {
                        if protocol::deliver_offer(ep, reg, addr, id).await {
                            counts.offers_sent.inc();
                        }
                    });
                }
            }
        }
        Ok(())
    }

    /// The inbox: trusted offers accepted (within the sender's daily
    /// bytes), accepted offers followed to their end, receipts due sent.
    async fn inbox_pass(&self, t: i64) -> Result<(), RegistryError> {
        let registry = &self.inner.registry;
        let inbox = registry.inbox().await?;
        let mut today = accepted_today(&inbox, t);
        for mut rec in inbox {
            if rec.state == InboxState::New {
                if let Some(trust) = registry.trust(&rec.from).await? {
                    let so_far = today.get(&rec.from).copied().unwrap_or(0);
                    let per_day = registry.trust_per_day(&rec.from).await?;
                    if trust.max_size.is_none_or(|m| rec.size <= m)
                        && so_far.saturating_add(rec.size) <= per_day
                    {
                        self.auto_accept(&mut rec, &trust).await;
                        if rec.transfer_id.is_some() {
                            *today.entry(rec.from).or_default() += rec.size;
                        }
                    }
                }
            }
            if rec.state == InboxState::Accepted && !self.follow_accepted(&mut rec).await? {
                continue;
            }
            if rec.receipt.is_some() && t >= rec.receipt_next_try {
                if let Some(addr) = self.addr_of_id(&rec.from).await {
                    let (ep, reg) = (self.inner.endpoint.clone(), registry.clone());
                    self.once(
                        rec.id | INBOX_FLAG,
                        protocol::deliver_receipt(ep, reg, addr, rec.id),
                    );
                }
            }
        }
        Ok(())
    }

    /// An accepted offer's transfer: its end settles the offer (and owes a
    /// receipt when completed). False: the offer failed here and is done
    /// with for this pass.
    async fn follow_accepted(&self, rec: &mut InboxOffer) -> Result<bool, RegistryError> {
        let Some(tid) = rec.transfer_id else {
            return Ok(true);
        };
        let registry = &self.inner.registry;
        let view = self.inner.transfers.get(tid).await;
        // The content is not what the offer said (a size below a trust
        // limit, say): cut it, keep nothing.
        if let Ok(v) = &view {
            let total = v.rec.bytes_total;
            if total > 0 && total != rec.size && !v.rec.state.is_terminal() {
                warn!(
                    id = rec.id,
                    offered = rec.size,
                    total,
                    "offer's content is not the size it said; cancelling its fetch"
                );
                let transfers = self.inner.transfers.clone();
                self.inner.tasks.spawn("cancel-offer-fetch", async move {
                    transfers.cancel(&Caller::daemon(), tid, true).await.ok();
                });
                rec.state = InboxState::Failed;
                registry.put_inbox(rec).await?;
                return Ok(false);
            }
        }
        match view.map(|v| v.rec.state) {
            Ok(TransferState::Completed) => {
                rec.state = InboxState::Completed;
                rec.receipt = Some(Receipt::Completed);
                rec.receipt_attempts = 0;
                rec.receipt_next_try = 0;
                registry.put_inbox(rec).await?;
            }
            Ok(TransferState::Failed | TransferState::Cancelled) | Err(_) => {
                rec.state = InboxState::Failed;
                registry.put_inbox(rec).await?;
            }
            Ok(_) => {}
        }
        Ok(true)
    }

    async fn auto_accept(&self, rec: &mut InboxOffer, trust: &TrustRecord) {
        // The fetch is the rule owner's: the daemon places it for its own
        // user; another user's waits `ready` for that user's client.
        let owner = self
            .inner
            .registry
            .owner(Owned::Trust, &rec.from)
            .await
            .unwrap_or_else(|_| daemon_uid());
        let me = Caller::operator(owner, owner);
        let dir = Some(fresh_entry(&trust.accept_into, &rec.name, &rec.ticket));
        let fetched = self
            .fetch_with(
                &rec.ticket,
                Dest {
                    out: dir,
                    ..Dest::default()
                },
                &me,
                Terms {
                    expect_size: Some(rec.size),
                    ..Terms::default()
                },
                None,
            )
            .await;
        match fetched {
            Ok(view) => {
                info!(
                    id = rec.id,
                    transfer = view.rec.id,
                    "offer accepted by itself"
                );
                rec.state = InboxState::Accepted;
                rec.transfer_id = Some(view.rec.id);
                rec.receipt = Some(Receipt::Accepted);
                rec.receipt_attempts = 0;
                rec.receipt_next_try = 0;
            }
            Err(e) => {
                warn!(id = rec.id, "cannot accept the offer by itself: {e}");
                rec.state = InboxState::Failed;
            }
        }
        self.inner.registry.put_inbox(rec).await.ok();
    }

    /// Bytes served for a sent offer: it is being fetched.
    async fn count_served(&self, peer: &str, share: &str, bytes: u64) -> Result<(), RegistryError> {
        let registry = &self.inner.registry;
        for rec in registry.sent().await? {
            let matches = !rec.state.is_final()
                && rec.hash.to_string() == share
                && data_encoding::HEXLOWER.encode(&rec.peer) == peer;
            if matches {
                registry
                    .update_sent(rec.id, move |r| {
                        if r.state.is_final() {
                            return;
                        }
                        r.bytes += bytes;
                        if matches!(r.state, SentState::Delivered | SentState::Accepted) {
                            r.state = SentState::Fetching;
                        }
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs until shutdown: a pass every second, or when woken.
    pub(super) async fn contacts_loop(self) {
        let stop = self.inner.shutdown.clone();
        let wake = self.contacts().wake.clone();
        let mut events = self.inner.events.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(LOOP_EVERY) => {}
                _ = wake.notified() => {}
                got = events.recv() => {
                    if let Ok(Stamped { event: Event::ShareServed { peer, share: Some(share), bytes, .. }, .. }) = got {
                        if let Err(e) = self.count_served(&peer, &share, bytes).await {
                            warn!("contacts: cannot count served bytes: {e}");
                        }
                    }
                    continue;
                }
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.contacts_pass().await {
                warn!("contacts: {e}");
            }
        }
    }
}

/// A path in `dir` where nothing is yet, named after the offer (a name the
/// sender chose, used only when it is one plain, visible component; else
/// the content's hash), with " (2)", " (3)" ... added when taken: an
/// accepted offer creates one new entry and never merges into another.
fn fresh_entry(dir: &std::path::Path, name: &str, ticket: &str) -> PathBuf {
    let plain = ringdrop_proto::place::sanitize(name)
        .ok()
        .filter(|parts| parts.len() == 1 && !name.starts_with('.'))
        .map(|_| name.to_string());
    let base = plain.unwrap_or_else(|| {
        ticket
            .parse::<crate::ticket::Ticket>()
            .map(|t| t.content.hash.to_string())
            .unwrap_or_else(|_| "offer".to_string())
    });
    let mut candidate = dir.join(&base);
    let mut n = 2u32;
    while std::fs::symlink_metadata(&candidate).is_ok() && n < 10_000 {
        candidate = dir.join(format!("{base} ({n})"));
        n += 1;
    }
    candidate
}

/// Bytes of each sender's offers accepted in the 24 hours before `now` (a
/// trusted sender's total is bounded too, not only each offer).
fn accepted_today(inbox: &[InboxOffer], now: i64) -> std::collections::HashMap<[u8; 32], u64> {
    let mut today = std::collections::HashMap::new();
    for o in inbox {
        if o.transfer_id.is_some() && o.received_at > now - 24 * 3600 {
            *today.entry(o.from).or_default() += o.size;
        }
    }
    today
}
