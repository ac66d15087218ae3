//! The transfer manager: every fetch is a persistent row in the registry and
//! a worker task owned by the manager. A bounded number run at once; the
//! rest wait in `queued`. Unfinished transfers are re-queued on start.

mod attempt;
mod control;
mod deliver;
pub use deliver::FileChunk;
pub mod hosted;
pub(crate) mod incoming;
mod many;
mod reserve;
pub use ringdrop_proto::place as plan;
mod select;
pub use select::{SelectError, Selection};
mod worker;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use iroh::Endpoint;
use iroh_blobs::api::Store;
use tokio::sync::{watch, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

use crate::{
    authority::Caller,
    limits::{Bandwidth, Pace},
    registry::{Placement, Registry, RegistryError, Terms, TransferRecord, TransferState},
    ticket::{Ticket, TicketError},
};

/// Errors of the transfer API.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Ticket(#[from] TicketError),
    #[error(transparent)]
    Selection(#[from] SelectError),
    #[error("no transfer with id {0}: see `ringdropctl transfers ls`")]
    NotFound(u64),
    #[error("destination must be an absolute path: {0}")]
    RelativeDest(PathBuf),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("the blob store failed: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("transfer {id} is {state}: it cannot be {action}")]
    InvalidState {
        id: u64,
        state: &'static str,
        action: &'static str,
    },
    #[error("{0}")]
    NotWritable(String),
    #[error(
        "transfer {id} was started by user {owner}: only that user may receive its files (root too would write them with root's authority): run `sudo -u {owner} ringdropctl transfers wait {id}`"
    )]
    NotOwner { id: u64, owner: String },
    #[error("{0}")]
    BadFinish(String),
    #[error("transfer {0} is placed by the daemon itself: there are no files to receive")]
    PlacedByDaemon(u64),
    #[error("the store cannot read transfer {id}'s content: {msg}")]
    Content { id: u64, msg: String },
}

/// Who starts a fetch and where its files go.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub ticket: String,
    /// Absolute destination.
    pub dest: PathBuf,
    pub force: bool,
    /// Uid of the control-socket client.
    pub owner_uid: u32,
    pub placement: Placement,
    /// What it must be (an offer's size) and which files (`--only`).
    pub terms: Terms,
}

/// A transfer as clients see it: the row plus live figures.
#[derive(Debug, Clone)]
pub struct TransferView {
    pub rec: TransferRecord,
    /// Bytes per second over the last seconds (running transfers).
    pub rate: u64,
    /// The providers of its running attempts, and what each sent.
    pub providers: Vec<ProviderView>,
    /// Whether what it holds is re-served to its ring, or why not.
    pub serving: String,
}

impl TransferView {
    /// A transfer no worker runs: its row alone.
    pub fn at_rest(rec: TransferRecord) -> Self {
        Self {
            rec,
            rate: 0,
            providers: Vec::new(),
            serving: String::new(),
        }
    }

    /// Provider `id` of its running attempts, if it has been one.
    pub(crate) fn provider_mut(&mut self, id: iroh::EndpointId) -> Option<&mut ProviderView> {
        self.providers.iter_mut().find(|p| p.id == id)
    }
}

/// A provider a transfer fetches from: who, what it sent this run, and
/// the path to it now.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderView {
    pub id: iroh::EndpointId,
    /// Payload bytes received from it since the worker started.
    pub bytes: u64,
    /// Connected now.
    pub connected: bool,
    /// "direct 192.0.2.1:4433" or "relay https://...", empty until known.
    pub path: String,
    pub rtt: std::time::Duration,
}

/// The tag that pins a transfer's data from its first byte.
pub fn transfer_tag(id: u64) -> String {
    format!("transfer/{id}")
}

/// The event of `rec` having ended as it is.
pub(crate) fn ended_event(rec: &TransferRecord) -> crate::events::Event {
    crate::events::Event::TransferEnded {
        id: rec.id,
        owner: rec.owner_uid,
        state: rec.state,
        dest: rec.dest.clone(),
        name: rec.name.clone(),
        hash: rec.hash.to_string(),
        files: rec.files.clone(),
        error: rec.last_error.clone(),
    }
}

/// Why a worker was asked to stop (none: the daemon shuts down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Pause,
    Cancel { purge: bool },
}

/// A transfer that has a worker right now.
struct Live {
    publish: watch::Sender<TransferView>,
    stop: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
    /// Its own download limit.
    pace: Arc<Pace>,
}

struct Inner {
    registry: Registry,
    store: Store,
    endpoint: Endpoint,
    data_dir: PathBuf,
    slots: Arc<Semaphore>,
    live: Mutex<HashMap<u64, Live>>,
    /// Bumped on every change of any transfer, for `watch`.
    changes: watch::Sender<u64>,
    /// Bumped when a stored row changed (not mere progress of a live one).
    rows_changed: std::sync::atomic::AtomicU64,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    events: crate::events::Events,
    hosts: hosted::Hosts,
    bandwidth: Bandwidth,
    swarm: crate::swarm::Swarm,
}

/// What transfers use of the node.
pub struct Services {
    pub registry: Registry,
    pub store: Store,
    pub endpoint: Endpoint,
    pub events: crate::events::Events,
    /// The limits every fetched byte passes.
    pub bandwidth: Bandwidth,
    /// What this node holds of ring shares, and the rosters.
    pub swarm: crate::swarm::Swarm,
}

/// Owns all transfers; cheap to clone.
#[derive(Clone)]
pub struct TransferManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TransferManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferManager").finish_non_exhaustive()
    }
}

impl TransferManager {
    pub fn new(
        Services {
            registry,
            store,
            endpoint,
            events,
            bandwidth,
            swarm,
        }: Services,
        data_dir: PathBuf,
        max_concurrent: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                store,
                endpoint,
                data_dir,
                slots: Arc::new(Semaphore::new(max_concurrent.max(1))),
                live: Mutex::new(HashMap::new()),
                changes: watch::channel(0).0,
                rows_changed: Default::default(),
                tasks: TaskTracker::new(),
                shutdown,
                events,
                hosts: Default::default(),
                bandwidth,
                swarm,
            }),
        }
    }

    /// User `uid`'s client offers `host` for the files of its transfer
    /// `id` again (after a daemon restart): taken if the transfer is that
    /// user's, placed by its client and still fetching.
    pub async fn rehost(&self, uid: u32, id: u64, host: hosted::Host) -> Result<(), String> {
        let rec = self
            .inner
            .registry
            .transfer(id)
            .await
            .map_err(|e| e.to_string())?
            .filter(|r| r.owner_uid == uid)
            .ok_or_else(|| format!("no transfer {id} of yours"))?;
        if rec.placement != Placement::Client
            || rec.state.is_terminal()
            || rec.state == TransferState::Ready
        {
            return Err(format!("transfer {id} does not need its files hosted"));
        }
        if !self.inner.hosts.attach(id, host) {
            return Err("too many hosted fetches wait already".into());
        }
        Ok(())
    }

    /// Records a new transfer and starts it; its files go to what `host`
    /// offers, if its client places them.
    pub async fn start(
        &self,
        req: FetchRequest,
        host: Option<hosted::Host>,
    ) -> Result<TransferView, TransferError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(TransferError::ShuttingDown);
        }
        let FetchRequest {
            ticket,
            dest,
            force,
            owner_uid,
            placement,
            terms,
        } = req;
        let parsed: Ticket = ticket.parse()?;
        let only = Selection::new(&terms.only)?;
        if !dest.is_absolute() {
            return Err(TransferError::RelativeDest(dest));
        }
        let t = ringdrop_proto::clock::now();
        let rec = TransferRecord {
            id: 0,
            ticket: ticket.trim().to_string(),
            provider: parsed.provider().to_string(),
            dest,
            force,
            name: parsed.name.clone().unwrap_or_default(),
            hash: parsed.content.hash,
            state: TransferState::Queued,
            bytes_total: 0,
            bytes_done: 0,
            bytes_received: 0,
            attempts: 0,
            last_error: None,
            created_at: t,
            updated_at: t,
            files: Vec::new(),
            owner_uid,
            placement,
        };
        let rec = self
            .inner
            .registry
            .insert_transfer(rec, terms.clone())
            .await?;
        if let Some(host) = host.filter(|_| placement == Placement::Client) {
            if !self.inner.hosts.attach(rec.id, host) {
                debug!(
                    id = rec.id,
                    "too many hosted fetches wait: this one is written in the data dir"
                );
            }
        }
        Ok(self.spawn_with(rec, parsed, &terms, only))
    }

    /// Serves again what completed transfers held before a restart.
    pub async fn hold_again(&self) -> Result<usize, TransferError> {
        let mut n = 0;
        for (id, rec) in self.inner.registry.held().await? {
            if let Some(holding) = crate::swarm::Holding::from_record(id, rec) {
                self.inner.swarm.holdings.add(holding);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Re-queues every transfer that had not finished when the daemon stopped.
    pub async fn resume_unfinished(&self) -> Result<usize, TransferError> {
        let mut n = 0;
        for mut rec in self.inner.registry.transfers().await? {
            // Ended while its incoming files were being removed: finish that.
            let ended = rec.state.is_terminal();
            if ended && self.inner.registry.partial(rec.id).await?.is_some() {
                self.discard_incoming(rec.id).await;
            }
            if rec.state.is_at_rest() {
                continue;
            }
            match rec.ticket.parse::<Ticket>() {
                Ok(ticket) => {
                    rec.state = TransferState::Queued;
                    self.spawn(rec, ticket).await;
                    n += 1;
                }
                Err(e) => {
                    warn!(id = rec.id, "cannot resume transfer: {e}");
                    rec.state = TransferState::Failed;
                    rec.last_error = Some(format!("cannot resume: {e}"));
                    self.inner.registry.put_transfer(&rec).await?;
                }
            }
        }
        Ok(n)
    }

    /// Starts a worker for a stored transfer with its recorded terms (the
    /// size an offer said, the `--only` patterns), so a restart or a
    /// resume never loses them. Terms that cannot be read fail it: it must
    /// not fetch more, or other content, than it was asked for.
    async fn spawn(&self, mut rec: TransferRecord, ticket: Ticket) -> TransferView {
        let terms = self.inner.registry.terms(rec.id).await;
        let only = match terms {
            Ok(terms) => Selection::new(&terms.only)
                .map(|only| (terms, only))
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("cannot read what it was asked for: {e}")),
        };
        match only {
            Ok((terms, only)) => self.spawn_with(rec, ticket, &terms, only),
            Err(msg) => {
                warn!(id = rec.id, "cannot resume transfer: {msg}");
                rec.state = TransferState::Failed;
                rec.last_error = Some(format!("cannot resume: {msg}"));
                if let Err(e) = self.inner.registry.put_transfer(&rec).await {
                    warn!(id = rec.id, "cannot record the failure: {e}");
                }
                self.touch();
                TransferView::at_rest(rec)
            }
        }
    }

    fn spawn_with(
        &self,
        rec: TransferRecord,
        ticket: Ticket,
        terms: &Terms,
        only: Selection,
    ) -> TransferView {
        let view = TransferView::at_rest(rec);
        let id = view.rec.id;
        let (tx, _) = watch::channel(view.clone());
        let stop = self.inner.shutdown.child_token();
        let reason = Arc::new(Mutex::new(None));
        let pace = Arc::new(Pace::new(terms.down_limit));
        if let Ok(mut live) = self.inner.live.lock() {
            live.insert(
                id,
                Live {
                    publish: tx.clone(),
                    stop: stop.clone(),
                    reason: reason.clone(),
                    pace: pace.clone(),
                },
            );
        }
        let limit = self.inner.bandwidth.downlink(ticket.addr.id, pace.clone());
        let worker = worker::Worker {
            registry: self.inner.registry.clone(),
            store: self.inner.store.clone(),
            endpoint: self.inner.endpoint.clone(),
            data_dir: self.inner.data_dir.clone(),
            slots: self.inner.slots.clone(),
            stop,
            reason,
            ticket,
            publish: tx,
            changes: self.inner.changes.clone(),
            id,
            dest: view.rec.dest.clone(),
            force: view.rec.force,
            placement: view.rec.placement,
            container: worker::container_name(&view.rec),
            writing: Default::default(),
            events: self.inner.events.clone(),
            hosts: self.inner.hosts.clone(),
            expect_size: terms.expect_size,
            only,
            limit,
            links: (self.inner.bandwidth.clone(), pace),
            swarm: self.inner.swarm.clone(),
            no_reserve: terms.no_reserve,
        };
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            worker.run().await;
            this.inner.hosts.drop_offer(id);
            if let Ok(mut live) = this.inner.live.lock() {
                live.remove(&id);
            }
            this.touch();
        });
        self.touch();
        view
    }

    fn incoming_place(&self, id: u64) -> incoming::Place {
        incoming::Place {
            id,
            registry: self.inner.registry.clone(),
            root: PathBuf::new(),
            hosted_root: None,
            outboards: worker::outboards_of(&self.inner.data_dir, id),
        }
    }

    /// Removes a transfer's incoming files and outboards (it has no worker).
    pub(crate) async fn discard_incoming(&self, id: u64) {
        let place = self.incoming_place(id);
        tokio::task::spawn_blocking(move || incoming::Incoming::discard(&place))
            .await
            .ok();
    }

    /// Tells event readers that a transfer without a worker ended.
    pub(crate) fn ended(&self, rec: &TransferRecord) {
        self.inner.events.publish(ended_event(rec));
    }

    fn touch(&self) {
        self.inner
            .rows_changed
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Changes when a stored row changed; while it stays, only live
    /// transfers moved (their views are in memory).
    pub fn rows_generation(&self) -> u64 {
        self.inner
            .rows_changed
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The live views of the transfers `caller` may see (no registry read).
    pub fn live_for(&self, caller: &Caller) -> Vec<TransferView> {
        let Ok(live) = self.inner.live.lock() else {
            return Vec::new();
        };
        let mut out: Vec<TransferView> = live
            .values()
            .map(|l| l.publish.borrow().clone())
            .filter(|v| caller.controls(v.rec.owner_uid))
            .map(|v| self.serving(v))
            .collect();
        out.sort_by_key(|v| v.rec.id);
        out
    }

    /// `v` with what it says of re-serving.
    fn serving(&self, mut v: TransferView) -> TransferView {
        v.serving = self.inner.swarm.holdings.describe(v.rec.id);
        v
    }

    /// Receives a new value whenever any transfer changed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// One transfer `caller` may see (its own; an admin's: any), live if
    /// it is running. Another user's is "not found".
    pub async fn get_for(&self, caller: &Caller, id: u64) -> Result<TransferView, TransferError> {
        let v = self.get(id).await?;
        if !caller.controls(v.rec.owner_uid) {
            return Err(TransferError::NotFound(id));
        }
        Ok(v)
    }

    /// The stored row of a transfer `caller` may control.
    pub(super) async fn stored_for(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<TransferRecord, TransferError> {
        let rec = self.stored(id).await?;
        if !caller.controls(rec.owner_uid) {
            return Err(TransferError::NotFound(id));
        }
        Ok(rec)
    }

    /// One transfer, live if it is running.
    pub async fn get(&self, id: u64) -> Result<TransferView, TransferError> {
        if let Some(v) = self.live_view(id) {
            return Ok(self.serving(v));
        }
        let rec = self
            .inner
            .registry
            .transfer(id)
            .await?
            .ok_or(TransferError::NotFound(id))?;
        Ok(self.serving(TransferView::at_rest(rec)))
    }

    fn live_view(&self, id: u64) -> Option<TransferView> {
        let live = self.inner.live.lock().ok()?;
        let v = live.get(&id)?.publish.borrow().clone();
        Some(v)
    }

    /// The transfers `caller` may see, newest first.
    pub async fn list_for(&self, caller: &Caller) -> Result<Vec<TransferView>, TransferError> {
        let mut all = self.list().await?;
        all.retain(|v| caller.controls(v.rec.owner_uid));
        Ok(all)
    }

    /// All transfers, newest first.
    pub async fn list(&self) -> Result<Vec<TransferView>, TransferError> {
        let live: HashMap<u64, TransferView> = self
            .inner
            .live
            .lock()
            .map(|l| {
                l.iter()
                    .map(|(id, l)| (*id, l.publish.borrow().clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut out: Vec<TransferView> = self
            .inner
            .registry
            .transfers()
            .await?
            .into_iter()
            .map(|rec| {
                let v = live
                    .get(&rec.id)
                    .cloned()
                    .unwrap_or(TransferView::at_rest(rec));
                self.serving(v)
            })
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Follows one transfer: a receiver that sees every update until it ends
    /// (`None` when it has already ended; use [`Self::get`]).
    pub async fn subscribe(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<Option<watch::Receiver<TransferView>>, TransferError> {
        self.stored_for(caller, id).await?;
        let rx = self
            .inner
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(&id).map(|l| l.publish.subscribe()));
        if rx.is_some() {
            return Ok(rx);
        }
        self.inner
            .registry
            .transfer(id)
            .await?
            .ok_or(TransferError::NotFound(id))?;
        Ok(None)
    }

    /// Waits for every worker to stop after the shutdown token was cancelled;
    /// each persists its state on the way out.
    pub async fn wait_stopped(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
