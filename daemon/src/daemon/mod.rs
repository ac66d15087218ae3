//! The `Daemon` facade: owns endpoint, store, registry, gate and transfer
//! manager. RPC handlers call one method of it each.

mod access;
mod offers;
mod peers;
mod rings;
mod transfers;

pub use access::AccessError;
pub use offers::{ContactError, OFFER_EXPIRES};
pub use peers::{PeerNames, PeerRef};
pub use rings::{MAX_INVITE_USES, MAX_INVITE_VALID};

use crate::access::slots::Limited;

use std::{
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use iroh::{protocol::Router, Endpoint, EndpointAddr};
use iroh_blobs::{
    store::{
        fs::{options::Options, FsStore},
        GcConfig,
    },
    Hash,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    authority::Caller,
    catalog::{self, CatalogServer},
    config::Config,
    node::{self, NodeError},
    provider::{spawn_gate, BlobsGate, GateStats, RateLimit, Uploads},
    registry::{Placement, Registry, RegistryError, ShareRecord},
    shares::{self, ShareError, ShareEvent, Shared},
    ticket::{Ticket, TicketError, TicketKind},
    transfers::{FetchRequest, TransferError, TransferManager, TransferView},
};

/// Who places the files of a fetch by `caller`: the daemon writes only
/// for its own user; everyone else's files (root's and every operator's)
/// are written by that user's own client, as that user, so nothing lands
/// where its owner could not have written it (docs/ARCHITECTURE.md,
/// "Authority").
pub fn placement_for(caller: &Caller) -> Placement {
    if caller.uid == crate::authority::my_uid() {
        Placement::Daemon
    } else {
        Placement::Client
    }
}

/// Why the daemon itself may not write `dest`, in words that say what to do.
fn daemon_cannot_write(dest: &Path) -> Result<(), String> {
    ringdrop_proto::place::check_writable(dest).map_err(|(dir, err)| {
        format!(
            "ringdropd runs as user {}, which cannot write {} ({err}); nothing was fetched: choose a destination it may write (its download_dir, or a ReadWritePaths= of the service), or run ringdropctl as a user who can write there",
            ringdrop_proto::place::user_name(crate::authority::my_uid()),
            dir.display()
        )
    })
}

/// How long finished transfers and ended offers are kept.
pub const KEEP_HISTORY: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// How often history older than that is forgotten.
const FORGET_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// How often a system daemon looks for users who are no longer operators.
const MEMBERS_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// How often live uploads are judged again (expiry, revocation, edits).
const LIVE_ACCESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Errors starting the daemon.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {msg}")]
    DataDir { path: PathBuf, msg: String },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot open the blob store: {0}")]
    Store(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A snapshot of the daemon for `status`.
#[derive(Debug, Clone)]
pub struct Status {
    pub endpoint_id: String,
    pub addrs: Vec<String>,
    pub relay_url: Option<String>,
    pub relay_mode: String,
    pub mdns: bool,
    pub data_dir: PathBuf,
    pub shares: u64,
    pub transfers_active: u64,
    pub transfers_total: u64,
    pub bytes_served: u64,
    pub uptime_secs: u64,
    pub requests_allowed: u64,
    pub requests_refused: u64,
    pub uploads: u64,
}

/// Which ticket text to hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketFormat {
    Ringdrop,
    Blob,
}

struct Inner {
    config: Config,
    endpoint: Endpoint,
    store: FsStore,
    registry: Registry,
    router: Router,
    transfers: TransferManager,
    gate: BlobsGate,
    gate_stats: Arc<GateStats>,
    policy: Arc<crate::access::policy::Policy>,
    uploads: Uploads,
    handoffs: shares::handed::Handoffs,
    events: crate::events::Events,
    contacts: crate::offers::protocol::Shared,
    started: Instant,
    shutdown: CancellationToken,
    /// The background loops, tracked (restarted if one dies).
    tasks: crate::tasks::Tasks,
    /// The gate's task: it ends when the endpoint's provider is gone.
    gate_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The running node; cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("endpoint_id", &self.inner.endpoint.id())
            .finish_non_exhaustive()
    }
}

/// The data dir is private and `download_dir` is not inside it.
fn check_dirs(config: &Config) -> Result<(), StartError> {
    create_private_dir(&config.data_dir)?;
    let data = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    let downloads =
        std::fs::canonicalize(&config.download_dir).unwrap_or(config.download_dir.clone());
    if downloads.starts_with(&data) {
        return Err(StartError::DataDir {
            path: config.data_dir.clone(),
            msg: format!(
                "download_dir {} is inside it; the data dir is the daemon's alone: set download_dir elsewhere (the system default is /var/lib/ringdrop-downloads)",
                config.download_dir.display()
            ),
        });
    }
    Ok(())
}

/// Whether a peer is a contact (ring member, address-book peer, owner of
/// a ring we joined): contacts may use every connection slot, strangers
/// together only half.
fn contacts_of(registry: &Registry) -> crate::access::slots::Known {
    let registry = registry.clone();
    Arc::new(move |peer: iroh::EndpointId| {
        let registry = registry.clone();
        Box::pin(async move {
            let now = ringdrop_proto::clock::now();
            matches!(registry.is_contact(peer.as_bytes(), now).await, Ok(true))
        })
    })
}

/// The protocols peers reach: blobs through the gate, and our small ones
/// (catalog, invites, offers) behind connection slots.
fn serve_peers(
    endpoint: &Endpoint,
    gate: &BlobsGate,
    registry: &Registry,
    policy: &Arc<crate::access::policy::Policy>,
    hub: &crate::events::Events,
    contacts: &crate::offers::protocol::Shared,
) -> Router {
    let known = contacts_of(registry);
    Router::builder(endpoint.clone())
        .accept(iroh_blobs::ALPN, gate.clone())
        .accept(
            catalog::ALPN,
            Limited::small(
                "catalog",
                CatalogServer::new(registry.clone(), policy.clone()),
                known.clone(),
            ),
        )
        .accept(
            crate::rings::invites::ALPN,
            Limited::small(
                "invite",
                crate::rings::invites::InviteServer::new(registry.clone(), hub.clone()),
                known.clone(),
            ),
        )
        .accept(
            crate::offers::protocol::ALPN,
            Limited::small(
                "offer",
                crate::offers::protocol::OfferServer::new(
                    registry.clone(),
                    hub.clone(),
                    contacts.clone(),
                ),
                known,
            ),
        )
        .spawn()
}

/// Creates the data dir (0700) or checks the one there: it must be a
/// directory of the daemon's own user that no one else may read, write or
/// enter (it holds the node's key, the registry and small shared files
/// inline in the store's database).
fn create_private_dir(path: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let err = |msg: String| StartError::DataDir {
        path: path.to_path_buf(),
        msg,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| err(e.to_string()))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err(
            "is not a directory (a symlink is not accepted either): give --data-dir a directory"
                .into(),
        ));
    }
    if meta.uid() != crate::authority::my_uid() {
        return Err(err(format!(
            "belongs to uid {}, not to the user ringdropd runs as ({}): chown it, or choose another --data-dir",
            meta.uid(),
            crate::authority::my_uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(err(format!(
            "other users may open it (mode {:o}); it holds the node's secret key and registry: run `chmod 700 {}` (the unit sets StateDirectoryMode=0700)",
            meta.mode() & 0o7777,
            path.display()
        )));
    }
    Ok(())
}

/// The nice value of the store's threads (bulk hashing and imports): only
/// felt when the CPU is contended.
const BULK_NICE: i32 = 10;

/// The blob store in the data dir, with its garbage collection.
async fn open_store(config: &Config) -> Result<FsStore, StartError> {
    let blobs_dir = config.data_dir.join("blobs");
    let mut opts = Options::new(&blobs_dir);
    opts.gc = Some(GcConfig {
        interval: config.gc_interval,
        add_protected: None,
    });
    let store = FsStore::load_with_opts(blobs_dir.join("blobs.db"), opts)
        .await
        .map_err(|e| StartError::Store(e.to_string()))?;
    // Hashing and importing are bulk work: they yield the CPU to the
    // control socket and the network (as syncthing's hashers do).
    crate::tasks::lower_priority("iroh-blob-store", BULK_NICE);
    Ok(store)
}

impl Daemon {
    /// Opens store and registry, binds the endpoint and starts serving
    /// peers. Never waits for the internet.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        check_dirs(&config)?;
        let registry = Registry::open(&config.data_dir.join("registry.redb")).await?;
        let store = open_store(&config).await?;
        let endpoint = node::bind_endpoint(&config).await?;

        let gate_stats = Arc::new(GateStats::default());
        let policy = Arc::new(crate::access::policy::Policy::new(registry.clone()));
        let hub = crate::events::Events::default();
        let contacts = crate::offers::protocol::Shared::default();
        let uploads = Uploads::new(hub.clone());
        let limit = config.max_upload_rate.map(|r| Arc::new(RateLimit::new(r)));
        let (events, gate_task) = spawn_gate(
            registry.clone(),
            policy.clone(),
            gate_stats.clone(),
            uploads.clone(),
            limit,
        );
        let gate = BlobsGate::new((*store).clone(), events, contacts_of(&registry));
        let router = serve_peers(&endpoint, &gate, &registry, &policy, &hub, &contacts);

        let shutdown = CancellationToken::new();
        let transfers = TransferManager::new(
            registry.clone(),
            (*store).clone(),
            endpoint.clone(),
            config.data_dir.clone(),
            config.max_concurrent_transfers,
            shutdown.clone(),
            hub.clone(),
        );
        if !config.on_complete.is_empty() {
            let hook = crate::events::Hook {
                argv: config.on_complete.clone(),
                timeout: config.on_complete_timeout,
            };
            crate::events::spawn_hooks(&hub, hook, shutdown.clone());
        }
        let daemon = Self {
            inner: Arc::new(Inner {
                config,
                endpoint,
                store,
                registry,
                router,
                transfers,
                gate,
                gate_stats,
                policy,
                uploads,
                handoffs: Default::default(),
                events: hub,
                contacts,
                started: Instant::now(),
                tasks: crate::tasks::Tasks::new(shutdown.child_token()),
                gate_task: std::sync::Mutex::new(Some(gate_task)),
                shutdown,
            }),
        };
        daemon.begin().await;
        Ok(daemon)
    }

    /// The first steps of a started daemon: the store's tags checked, the
    /// background loops started, unfinished transfers resumed.
    async fn begin(&self) {
        self.reconcile().await;
        self.spawn_loops();
        let resumed = self
            .inner
            .transfers
            .resume_unfinished()
            .await
            .unwrap_or_else(|e| {
                warn!("cannot resume transfers: {e}");
                0
            });
        info!(
            endpoint_id = %self.inner.endpoint.id(),
            resumed,
            "ringdropd started"
        );
    }

    /// Whether `caller` may see `event`: its own transfers, serving of its
    /// own shares, offers from its contacts, joins to its rings (an admin:
    /// all).
    pub async fn event_visible(&self, caller: &Caller, event: &crate::events::Event) -> bool {
        use crate::{events::Event, registry::Owned};
        if caller.is_admin() {
            return true;
        }
        let registry = &self.inner.registry;
        match event {
            Event::TransferEnded { owner, .. } => *owner == caller.uid,
            Event::ShareServed { share, .. } => {
                let Some(h) = share.as_deref().and_then(|h| h.parse::<Hash>().ok()) else {
                    return false;
                };
                let rows = registry.shares_of(&h).await;
                rows.is_ok_and(|rows| rows.iter().any(|s| s.owner == caller.uid))
            }
            Event::OfferReceived { from, .. } => {
                let Ok(id) = from.parse::<iroh::EndpointId>() else {
                    return false;
                };
                let now = ringdrop_proto::clock::now();
                let contact = registry.is_contact_of(caller.uid, id.as_bytes(), now).await;
                matches!(contact, Ok(true))
            }
            Event::MemberJoined { ring, .. } => {
                let owner = registry.owner(Owned::Ring, ring.as_bytes()).await;
                matches!(owner, Ok(uid) if uid == caller.uid)
            }
        }
    }

    /// The loops that run for the daemon's lifetime, each until shutdown.
    fn spawn_loops(&self) {
        let tasks = &self.inner.tasks;
        let me = self.clone();
        tasks.spawn_loop("enforce-live-access", move || {
            me.clone().enforce_live_access()
        });
        let me = self.clone();
        tasks.spawn_loop("contacts", move || me.clone().contacts_loop());
        let me = self.clone();
        tasks.spawn_loop("expire-ready", move || me.clone().expire_ready());
        let me = self.clone();
        tasks.spawn_loop("forget-history", move || me.clone().forget_history());
        if self.inner.config.system {
            let me = self.clone();
            tasks.spawn_loop("track-departures", move || me.clone().track_departures());
        }
    }

    /// Files operators handed over, waiting for their `Share` or `Send`.
    pub fn handoffs(&self) -> &shares::handed::Handoffs {
        &self.inner.handoffs
    }

    /// The files `caller` handed over under `token` (none: an empty token).
    pub fn handed(
        &self,
        caller: &Caller,
        token: &[u8],
    ) -> Result<Option<shares::handed::HandedFiles>, ShareError> {
        if token.is_empty() {
            return Ok(None);
        }
        self.inner
            .handoffs
            .take(token, caller.uid)
            .map(Some)
            .ok_or(ShareError::HandoffGone)
    }

    /// A read-only descriptor of file `index` of `ready` transfer `id`, for
    /// its owner `uid` only (`None`: a file of no bytes). Opens files: for
    /// a blocking thread (`Handle::block_on`).
    pub async fn ready_file(
        &self,
        uid: u32,
        id: u64,
        index: u32,
    ) -> Result<Option<std::fs::File>, String> {
        let caller = Caller::operator(uid, uid);
        self.inner
            .transfers
            .ready_file(&caller, id, index)
            .await
            .map_err(|e| e.to_string())
    }

    /// User `uid`'s client offers its directory again for the files of
    /// its transfer `id` (see `transfers::hosted`).
    pub async fn rehost(
        &self,
        uid: u32,
        id: u64,
        host: crate::transfers::hosted::Host,
    ) -> Result<(), String> {
        self.inner.transfers.rehost(uid, id, host).await
    }

    /// Runs `work` for a request as a tracked task (shutdown waits for it;
    /// a panic is logged with `name`).
    pub fn spawn(
        &self,
        name: &'static str,
        work: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.inner.tasks.spawn(name, work);
    }

    /// The daemon's event hub (`WatchEvents`).
    pub fn events(&self) -> &crate::events::Events {
        &self.inner.events
    }

    /// Every second, every live upload is judged again by the policy:
    /// membership that expired, a ring or member removed between the
    /// decision and the start, a share unshared, a source file edited, a
    /// GET_MANY spanning a share that was revoked. A peer that may no
    /// longer fetch what it is being served is disconnected.
    async fn enforce_live_access(self) {
        let mut tick = tokio::time::interval(LIVE_ACCESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            let live = self.inner.uploads.list();
            if live.is_empty() {
                continue;
            }
            let this = self.clone();
            let cut = tokio::task::spawn_blocking(move || {
                let now = ringdrop_proto::clock::now();
                let mut cut = std::collections::BTreeSet::new();
                for u in live {
                    // Any owner's share of the content may allow it.
                    let allowed = u.shares.iter().all(|h| {
                        this.inner
                            .registry
                            .blocking()
                            .shares_of(h)
                            .is_ok_and(|rows| {
                                rows.iter().any(|rec| {
                                    matches!(
                                        this.inner.policy.may_fetch(rec, u.peer.as_bytes(), now),
                                        Ok(true)
                                    )
                                })
                            })
                    });
                    if !allowed {
                        cut.insert(u.peer);
                    }
                }
                cut
            })
            .await
            .unwrap_or_default();
            for peer in cut {
                info!(%peer, "access ended during an upload (expired, revoked or source changed): disconnecting");
                self.inner.gate.disconnect(peer);
            }
        }
    }

    /// Forgets history every hour: finished transfers, ended sent offers
    /// and answered inbox offers older than [`KEEP_HISTORY`], so the
    /// registry is bounded by what is live, not by what ever happened.
    async fn forget_history(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FORGET_EVERY) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            match self.inner.transfers.forget_finished(KEEP_HISTORY).await {
                Ok(0) => {}
                Ok(n) => info!(transfers = n, "forgot transfers finished over 30 days ago"),
                Err(e) => warn!("forgetting old transfers: {e}"),
            }
            let before = ringdrop_proto::clock::now() - KEEP_HISTORY.as_secs() as i64;
            match self.inner.registry.prune_offers(before).await {
                Ok((0, 0)) => {}
                Ok((sent, inbox)) => info!(sent, inbox, "forgot offers over 30 days old"),
                Err(e) => warn!("forgetting old offers: {e}"),
            }
        }
    }

    /// System mode: every [`MEMBERS_EVERY`], users who own shares or
    /// transfers but are no longer operators (left group `ringdrop`, or were
    /// deleted) lose them: their shares are no longer served or listed
    /// (until they are members again), their unfinished transfers are
    /// cancelled and freed.
    async fn track_departures(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(MEMBERS_EVERY) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            let Ok((suspended, cancel)) = self.departed().await else {
                continue;
            };
            self.inner.policy.suspend(suspended);
            for (id, uid) in cancel {
                warn!(
                    id,
                    uid, "its owner is no longer in group ringdrop: cancelling the transfer"
                );
                self.inner
                    .transfers
                    .cancel(&Caller::daemon(), id, true)
                    .await
                    .ok();
            }
        }
    }

    /// The shares of users who are no longer operators, and their
    /// unfinished transfers (id, owner).
    #[allow(clippy::type_complexity)]
    async fn departed(
        &self,
    ) -> Result<(std::collections::HashSet<(Hash, u32)>, Vec<(u64, u32)>), TransferError> {
        use crate::registry::daemon_uid;
        let shares = self.inner.registry.shares().await?;
        let transfers = self.inner.registry.transfers().await?;
        let mut uids: std::collections::HashSet<u32> = shares.iter().map(|s| s.owner).collect();
        uids.extend(transfers.iter().map(|r| r.owner_uid));
        uids.retain(|&uid| uid != 0 && uid != daemon_uid());
        // The group database is files (NSS): read off the runtime.
        let gone: std::collections::HashSet<u32> = tokio::task::spawn_blocking(move || {
            uids.into_iter()
                .filter(|&uid| {
                    crate::authority::still_member(uid, crate::SOCKET_GROUP) == Some(false)
                })
                .collect()
        })
        .await
        .unwrap_or_default();
        let suspended = shares
            .iter()
            .filter(|s| gone.contains(&s.owner))
            .map(|s| (s.hash, s.owner))
            .collect();
        let cancel = transfers
            .into_iter()
            .filter(|r| !r.state.is_terminal() && gone.contains(&r.owner_uid))
            .map(|r| (r.id, r.owner_uid))
            .collect();
        Ok((suspended, cancel))
    }

    /// Fails `ready` transfers nobody collected within `keep_ready`.
    async fn expire_ready(self) {
        let keep = self.inner.config.keep_ready;
        let every = (keep / 4).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            if let Err(e) = self.inner.transfers.expire_ready(keep).await {
                warn!("expiring ready transfers: {e}");
            }
        }
    }

    /// Registry and store are two databases: make every share's tag exist
    /// (a crash may have lost a batched tag write).
    async fn reconcile(&self) {
        let Ok(shares) = self.inner.registry.shares().await else {
            return;
        };
        for s in shares {
            let tag = shares::share_tag(&s.hash, s.owner);
            let present = matches!(self.inner.store.tags().get(&tag).await, Ok(Some(_)));
            if !present {
                warn!(hash = %s.hash, "share tag missing in the store, restoring it");
                let content = iroh_blobs::HashAndFormat::hash_seq(s.hash);
                if let Err(e) = self.inner.store.tags().set(&tag, content).await {
                    warn!(hash = %s.hash, "cannot restore share tag: {e}");
                }
            }
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This node's endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Address to put in tickets: the endpoint's known addresses plus any
    /// specific bound socket.
    pub fn ticket_addr(&self) -> EndpointAddr {
        let mut addr = self.inner.endpoint.addr();
        for s in self.inner.endpoint.bound_sockets() {
            if !s.ip().is_unspecified() {
                addr = addr.with_ip_addr(s);
            }
        }
        addr
    }

    /// Status snapshot.
    pub async fn status(&self) -> Result<Status, RegistryError> {
        let addr = self.ticket_addr();
        let relay_url = addr.relay_urls().next().map(|u| u.to_string());
        let counts = self.inner.registry.counts().await?;
        Ok(Status {
            endpoint_id: self.inner.endpoint.id().to_string(),
            addrs: addr.ip_addrs().map(|a| a.to_string()).collect(),
            relay_url,
            relay_mode: self.inner.config.relay.to_string(),
            mdns: self.inner.config.mdns,
            data_dir: self.inner.config.data_dir.clone(),
            shares: counts.shares,
            transfers_active: counts.active,
            transfers_total: counts.transfers,
            bytes_served: counts.served,
            uptime_secs: self.inner.started.elapsed().as_secs(),
            requests_allowed: self.inner.gate_stats.allowed.load(Ordering::Relaxed),
            requests_refused: self.inner.gate_stats.refused.load(Ordering::Relaxed),
            uploads: self.inner.uploads.list().len() as u64,
        })
    }

    /// A ticket for a share, with the node's current addresses.
    pub fn ticket(&self, hash: Hash, name: &str, format: TicketFormat) -> String {
        let mut t = Ticket::new(self.ticket_addr(), hash, Some(name.to_string()));
        if format == TicketFormat::Blob {
            t.kind = TicketKind::Blob;
        }
        t.to_string()
    }

    /// Shares a file or directory (absolute path on this host) as
    /// [`shares::share`] says. Peers fetching a share this one replaced
    /// (its files changed) are disconnected.
    pub async fn share(
        &self,
        caller: &Caller,
        req: shares::ShareRequest,
        events: mpsc::Sender<ShareEvent>,
    ) -> Result<Shared, ShareError> {
        let path = req.path.clone();
        if !caller.is_admin() && req.handed.is_none() {
            return Err(ShareError::NotHanded("share"));
        }
        let shared = shares::share(
            &self.inner.store,
            &self.inner.registry,
            &self.inner.config.data_dir,
            caller,
            req,
            events,
        )
        .await?;
        info!(uid = caller.uid, hash = %shared.share.hash, path = %path.display(), "shared");
        for old in &shared.replaced {
            self.disconnect_share(&old.hash);
        }
        Ok(shared)
    }

    /// All shares with the bytes served for each and whether they are
    /// "changed" (the policy's verdict: their files, or another file their
    /// content was imported from, changed since sharing; not served).
    pub async fn shares(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(ShareRecord, u64, bool)>, RegistryError> {
        let mut rows = Vec::new();
        for s in self.inner.registry.shares().await? {
            if caller.controls(s.owner) {
                let served = self.inner.registry.served(&s.hash).await?;
                rows.push((s, served));
            }
        }
        // The verdicts stat every source file: off the runtime.
        let policy = self.inner.policy.clone();
        tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|(s, served)| {
                    let changed = !policy.fresh_now(&s);
                    (s, served, changed)
                })
                .collect()
        })
        .await
        .map_err(|e| RegistryError::Db(format!("the share check failed: {e}")))
    }

    /// The names of the shares `caller` controls, by content (no file is
    /// looked at).
    pub async fn share_names(
        &self,
        caller: &Caller,
    ) -> Result<std::collections::HashMap<Hash, String>, RegistryError> {
        let all = self.inner.registry.shares().await?;
        Ok(all
            .into_iter()
            .filter(|s| caller.controls(s.owner))
            .map(|s| (s.hash, s.name))
            .collect())
    }

    /// Stops sharing; peers fetching it are disconnected.
    pub async fn unshare(
        &self,
        caller: &Caller,
        hash_or_prefix: &str,
    ) -> Result<ShareRecord, ShareError> {
        let rec = shares::unshare(
            &self.inner.store,
            &self.inner.registry,
            caller,
            hash_or_prefix,
        )
        .await?;
        info!(uid = caller.uid, hash = %rec.hash, "unshared");
        self.disconnect_share(&rec.hash);
        Ok(rec)
    }

    /// Closes the connections of every peer being served `share` now.
    fn disconnect_share(&self, share: &Hash) {
        for peer in self.inner.uploads.peers_of(share) {
            self.inner.gate.disconnect(peer);
        }
    }

    /// Decodes a ticket.
    pub fn inspect_ticket(&self, ticket: &str) -> Result<Ticket, TicketError> {
        ticket.parse()
    }

    /// Starts a fetch for the control-socket client `caller`; `out` empty
    /// means the configured download dir (the daemon's own user; other
    /// callers' clients name their destination).
    ///
    /// Who writes the files ([`placement_for`]): the daemon itself only for
    /// its own user; for anyone else their own client, running as them.
    /// Whoever writes must be able to, checked before any byte is fetched
    /// (a client's report can only refuse, never grant: its own process
    /// writes, so the kernel judges).
    pub async fn fetch(
        &self,
        ticket: &str,
        out: Option<PathBuf>,
        force: bool,
        caller: &Caller,
        caller_cannot_write: Option<String>,
        host: &[u8],
    ) -> Result<TransferView, TransferError> {
        let host = match host {
            [] => None,
            token => Some(self.inner.handoffs.take_host(token, caller.uid).ok_or_else(|| {
                TransferError::NotWritable(
                    "the directory your ringdropctl offered to host the files is gone (over a minute old, or not yours): run the fetch again".into(),
                )
            })?),
        };
        self.fetch_expecting(ticket, out, force, caller, caller_cannot_write, None, host)
            .await
    }

    /// [`Self::fetch`] of content that must be `expect_size` bytes (an
    /// offer's), into what `host` offers if its client hosts the files.
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch_expecting(
        &self,
        ticket: &str,
        out: Option<PathBuf>,
        force: bool,
        caller: &Caller,
        caller_cannot_write: Option<String>,
        expect_size: Option<u64>,
        host: Option<crate::transfers::hosted::Host>,
    ) -> Result<TransferView, TransferError> {
        let placement = placement_for(caller);
        let dest = match out {
            Some(out) => out,
            None if placement == Placement::Daemon => self.inner.config.download_dir.clone(),
            None => {
                return Err(TransferError::NotWritable(format!(
                    "user {} did not name a destination, and the daemon's download_dir is its own: pass --out DIR (a directory you can write)",
                    ringdrop_proto::place::user_name(caller.uid)
                )))
            }
        };
        match (placement, caller_cannot_write) {
            (Placement::Daemon, _) => daemon_cannot_write(&dest).map_err(TransferError::NotWritable)?,
            (Placement::Client, Some(why)) => {
                return Err(TransferError::NotWritable(format!(
                    "user {} cannot write {}: {why}; nothing was fetched: choose a destination you can write",
                    ringdrop_proto::place::user_name(caller.uid),
                    dest.display(),
                )))
            }
            (Placement::Client, None) => {}
        }
        let view = self
            .inner
            .transfers
            .start(
                FetchRequest {
                    ticket: ticket.to_string(),
                    dest,
                    force,
                    owner_uid: caller.uid,
                    placement,
                    expect_size,
                },
                host,
            )
            .await?;
        info!(uid = caller.uid, id = view.rec.id, "fetch started");
        // The ticket's addresses refresh the provider's address-book entry.
        if let Ok(t) = ticket.parse::<Ticket>() {
            self.remember_addr(&t.addr).await;
        }
        Ok(view)
    }

    /// A token cancelled when the daemon shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Shutdown in this order (the RPC server has already stopped
    /// accepting): cancel everything; wait for the background loops, then
    /// for the transfer workers to persist their states; sync the store;
    /// shut the router (endpoint) down and wait for the gate it fed; then
    /// the store and the registry.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.stop().await;
        self.inner.transfers.wait_stopped().await;
        if let Err(e) = self.inner.store.sync_db().await {
            warn!("store sync on shutdown failed: {e}");
        }
        if let Err(e) = self.inner.router.shutdown().await {
            warn!("endpoint shutdown: {e}");
        }
        // The endpoint's provider is gone, so the gate's channel closes.
        let gate = self.inner.gate_task.lock().ok().and_then(|mut g| g.take());
        if let Some(gate) = gate {
            match tokio::time::timeout(std::time::Duration::from_secs(5), gate).await {
                Ok(Err(e)) if e.is_panic() => tracing::error!(task = "gate", "task panicked: {e}"),
                Ok(_) => {}
                Err(_) => warn!("the gate did not end within 5 s of the endpoint"),
            }
        }
        if let Err(e) = self.inner.store.shutdown().await {
            warn!("store shutdown: {e}");
        }
        self.inner.registry.close().await;
        info!("ringdropd stopped");
    }
}
