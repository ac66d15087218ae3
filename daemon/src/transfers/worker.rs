//! The worker of one transfer: waits for a slot, then runs attempts with
//! capped exponential backoff and jitter until the content is exported, a
//! permanent error ends it, or the daemon shuts down (then the transfer is
//! left `queued` for the next start).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bao_tree::{BaoTree, ChunkNum, ChunkRanges};
use iroh::Endpoint;
use iroh_blobs::{api::Store, protocol::ChunkRangesExt, store::IROH_BLOCK_SIZE, Hash};
use ringdrop_proto::place::{PartialDir, Staging};
use tokio::sync::{watch, Semaphore};
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use tracing::{debug, info, warn};

use super::{
    attempt::{self, AttemptError, Cause, Want},
    hosted::{Hosts, REHOST_WITHIN},
    incoming::{self, Incoming, Opened, Place},
    plan, transfer_tag, StopReason, TransferView,
};
use crate::{
    registry::{Placement, Registry, TransferState},
    ticket::Ticket,
};

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Room kept free in the data dir beyond a transfer's outboards: the
/// registry and the store's database have to be able to commit.
const DATA_DIR_HEADROOM: u64 = 16 * 1024 * 1024;
/// How often free space is checked during a fetch.
const SPACE_CHECK_EVERY: Duration = Duration::from_millis(250);
/// Data-dir directories of the incoming files of transfers whose client
/// places them, and of every transfer's outboards.
pub(super) const CLIENT_INCOMING: &str = "incoming";
pub(super) const OUTBOARDS: &str = "outboards";

pub(super) struct Worker {
    pub registry: Registry,
    pub store: Store,
    pub endpoint: Endpoint,
    pub data_dir: PathBuf,
    pub slots: Arc<Semaphore>,
    /// Cancelled on pause, cancel and daemon shutdown.
    pub stop: CancellationToken,
    pub reason: Arc<Mutex<Option<StopReason>>>,
    pub ticket: Ticket,
    pub publish: watch::Sender<TransferView>,
    pub changes: watch::Sender<u64>,
    /// The transfer's fixed inputs.
    pub id: u64,
    pub dest: PathBuf,
    pub force: bool,
    pub placement: Placement,
    /// The directory a collection with several top-level names gets.
    pub container: String,
    /// Held by the writer of the running attempt until it has recorded
    /// what it wrote.
    pub writing: Arc<tokio::sync::Mutex<()>>,
    pub events: crate::events::Events,
    /// Clients' offers to host files.
    pub hosts: Hosts,
    /// What an offer said the content's size is.
    pub expect_size: Option<u64>,
    /// The files it fetches (`--only`).
    pub only: super::Selection,
    /// The download limits its bytes pass.
    pub limit: crate::limits::Downlink,
    /// The node's limits and its own, for the bytes of other providers.
    pub links: (crate::limits::Bandwidth, Arc<crate::limits::Pace>),
    /// What this node holds of ring shares, and the rosters.
    pub swarm: crate::swarm::Swarm,
    /// What it holds is not served to the ring (`fetch --no-reserve`).
    pub no_reserve: bool,
}

/// Outcome of the attempt loop.
enum End {
    Done(Vec<PathBuf>),
    /// Fetched and verified; the owner's client places the files.
    Ready,
    Failed(String),
    Stopped,
}

/// The directory a collection with several top-level names gets inside an
/// existing destination: the ticket's name, or the hash.
pub(crate) fn container_name(rec: &crate::registry::TransferRecord) -> String {
    if rec.name.is_empty() {
        rec.hash.to_string()
    } else {
        rec.name.clone()
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.75..1.25))
}

impl Worker {
    fn update(&self, f: impl FnOnce(&mut TransferView)) {
        self.publish.send_modify(|v| {
            f(v);
            v.rec.updated_at = ringdrop_proto::clock::now();
        });
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    async fn persist(&self) {
        let rec = self.publish.borrow().rec.clone();
        if let Err(e) = self.registry.put_transfer(&rec).await {
            warn!(id = self.id, "cannot persist transfer: {e}");
        }
    }

    /// Persists the latest progress once a second while the attempt runs:
    /// a child task, so the attempts' hot loop is not polled with its timer,
    /// ended when its handle drops (a write cut short was either queued to
    /// the registry, before what the worker writes next, or never sent).
    fn spawn_persister(&self) -> AbortOnDropHandle<()> {
        let registry = self.registry.clone();
        let rx = self.publish.subscribe();
        AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERSIST_EVERY);
            let mut last = None;
            loop {
                tick.tick().await;
                let rec = rx.borrow().rec.clone();
                let key = (rec.bytes_received, rec.bytes_done, rec.bytes_total);
                if last != Some(key) {
                    last = Some(key);
                    registry.put_transfer(&rec).await.ok();
                }
            }
        }))
    }

    pub async fn run(self) {
        let id = self.id;
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p.ok(),
            _ = self.stop.cancelled() => None,
        };
        let end = match permit {
            None => End::Stopped,
            Some(_permit) => {
                self.update(|v| v.rec.state = TransferState::Running);
                self.persist().await;
                let _persister = self.spawn_persister();
                tokio::select! {
                    end = self.attempts() => end,
                    _ = self.stop.cancelled() => End::Stopped,
                }
            }
        };
        self.finish(id, end).await;
    }

    /// Records how the worker ended.
    async fn finish(&self, id: u64, end: End) {
        // An attempt dropped half way (pause, cancel, shutdown) leaves its
        // writer syncing and recording what it wrote, or its placement
        // running: both end before the worker does, so that nothing else
        // touches the incoming files meanwhile.
        let _writer = self.writing.clone().lock_owned().await;
        let (state, error) = self.outcome(id, end);
        // Completed: the files are at the destination. Failed or cancelled:
        // the incoming files go (a failed transfer resumed starts again),
        // before the state says so: whoever sees `failed` finds nothing
        // left at the destination.
        if state.is_terminal() {
            if state != TransferState::Completed {
                self.swarm.holdings.remove(id);
            }
            let place = self.place();
            tokio::task::spawn_blocking(move || Incoming::discard(&place))
                .await
                .ok();
        }
        self.update(|v| {
            v.rec.state = state;
            v.rec.last_error = error;
            v.rate = 0;
        });
        self.persist().await;
        if state != TransferState::Queued && state != TransferState::Paused {
            self.events
                .publish(super::ended_event(&self.publish.borrow().rec));
        }
        // The metadata pinned in the store (and, for a transfer begun by an
        // older ringdropd, its data there) goes once it is not needed.
        let purge = matches!(
            self.reason.lock().ok().and_then(|r| *r),
            Some(StopReason::Cancel { purge: true })
        );
        if state == TransferState::Completed || (state == TransferState::Cancelled && purge) {
            if let Err(e) = self.store.tags().delete(transfer_tag(id)).await {
                warn!(id, "cannot release transfer data: {e}");
            }
        }
    }

    /// The state (and error) a worker's end leaves its transfer in.
    fn outcome(&self, id: u64, end: End) -> (TransferState, Option<String>) {
        match end {
            End::Done(files) => {
                info!(id, "transfer completed");
                self.update(|v| {
                    v.rec.bytes_done = v.rec.bytes_total;
                    v.rec.files = files;
                });
                (TransferState::Completed, None)
            }
            End::Ready => {
                info!(
                    id,
                    "transfer fetched; waiting for its client to place the files"
                );
                self.update(|v| v.rec.bytes_done = v.rec.bytes_total);
                (TransferState::Ready, None)
            }
            End::Failed(msg) => {
                warn!(id, "transfer failed: {msg}");
                (TransferState::Failed, Some(msg))
            }
            End::Stopped => {
                let reason = self.reason.lock().ok().and_then(|r| *r);
                let state = match reason {
                    None => TransferState::Queued,
                    Some(StopReason::Pause) => TransferState::Paused,
                    Some(StopReason::Cancel { .. }) => TransferState::Cancelled,
                };
                info!(id, state = state.name(), "transfer stopped");
                let error = self.publish.borrow().rec.last_error.clone();
                (state, error)
            }
        }
    }

    async fn attempts(&self) -> End {
        // Pin the content from its first byte, durably.
        let pinned = async {
            self.store
                .tags()
                .set(transfer_tag(self.id), self.ticket.content)
                .await?;
            self.store.sync_db().await
        };
        if let Err(e) = pinned.await {
            return End::Failed(format!("cannot pin the transfer in the store: {e}"));
        }
        let mut backoff = BACKOFF_START;
        loop {
            self.update(|v| v.rec.attempts += 1);
            self.events.counts().fetch_attempts.inc();
            let before = self.publish.borrow().rec.bytes_done;
            let result = self.attempt().await;
            if let Err(e) = &result {
                self.events.counts().failed(e.kind());
            }
            match result {
                Ok(Some(files)) => return End::Done(files),
                Ok(None) => return End::Ready,
                Err(e) if !e.retry() => return End::Failed(e.to_string()),
                Err(e) => {
                    let msg = e.to_string();
                    let progressed = self.publish.borrow().rec.bytes_done > before;
                    if progressed {
                        backoff = BACKOFF_START;
                    }
                    let wait = jittered(backoff);
                    info!(
                        id = self.id,
                        "attempt failed, retrying in {wait:.1?}: {msg}"
                    );
                    self.update(|v| {
                        v.rec.last_error = Some(msg);
                        v.rate = 0;
                    });
                    self.persist().await;
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
    }

    /// Where this transfer's incoming files and outboards are kept: beneath
    /// the destination's directory when the daemon places the files (the
    /// finished files are renamed into place), else in the data dir.
    fn place(&self) -> Place {
        let root = match self.placement {
            Placement::Daemon => plan::root_of(&self.dest),
            Placement::Client => self.data_dir.join(CLIENT_INCOMING),
        };
        Place {
            id: self.id,
            registry: self.registry.clone(),
            root,
            // Where the client made it, as the client sees it: the daemon
            // never looks at an operator's path (this is a label).
            hosted_root: (self.placement == Placement::Client).then(|| self.dest.clone()),
            outboards: outboards_of(&self.data_dir, self.id),
        }
    }

    /// One attempt: the files placed (`None`: fetched for a client that
    /// places them itself).
    async fn attempt(&self) -> Result<Option<Vec<PathBuf>>, AttemptError> {
        let mut session = attempt::Session {
            store: &self.store,
            conn: attempt::connect(&self.endpoint, &self.ticket).await?,
            ticket: &self.ticket,
            me: &self.endpoint,
            positions: Vec::new(),
            limit: &self.limit,
        };
        let _following = self.follow_provider(&session.conn);
        let mut received = 0;
        let learned = session.learn_collection(&mut received).await;
        self.update(|v| v.rec.bytes_received += received);
        let named = session.select(learned?, &self.only)?;
        debug!(id = self.id, files = named.len(), "collection known");
        check_names(&named).await?;
        let hashes: Arc<Vec<[u8; 32]>> =
            Arc::new(named.iter().map(|(_, h)| *h.as_bytes()).collect());

        let (inc, mut have) = self.open_incoming(hashes.clone(), named.len()).await?;
        let hosted = inc.dir.own().is_none();

        debug!(id = self.id, "incoming files open");
        let rosters = self.ring_rosters(&session).await;
        let holding = self.hold(&session, &inc, &named, &have, &rosters);
        let serving = self.swarm.holdings.describe(self.id);
        self.update(|v| v.serving = serving);
        let mut sizes = inc.rec.sizes.clone();
        let sink = incoming::start(inc, hashes.clone(), &self.writing, holding.clone());
        let fetched = self
            .fetch_into(
                &session,
                &sink,
                &named,
                (&mut sizes, &mut have),
                (hosted, &rosters, holding.as_deref()),
            )
            .await;
        // What arrived is synced and recorded whatever happened.
        let closed = sink.close().await;
        let (plan, inc) = match (fetched, closed) {
            (Ok(plan), Ok(inc)) => (plan, inc),
            (_, Err(e)) => return Err(local(e)),
            (Err(e), Ok(_)) => return Err(e),
        };
        let Some(plan) = plan else {
            return Ok(None);
        };
        self.place_fetched(plan, inc, &named).await.map(Some)
    }

    /// Renames the verified files into place by `plan` (renames, fsync and
    /// directory syncs block: off the runtime); the files placed.
    async fn place_fetched(
        &self,
        plan: plan::Plan,
        inc: Incoming,
        named: &[(String, Hash)],
    ) -> Result<Vec<PathBuf>, AttemptError> {
        let total = self.publish.borrow().rec.bytes_total;
        info!(
            id = self.id,
            total, "fetched and verified; placing the files"
        );
        let index: HashMap<String, usize> = named
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let targets: Vec<(usize, PathBuf)> = plan
            .items
            .iter()
            .filter_map(|(e, path)| index.get(&e.name).map(|i| (*i, path.clone())))
            .collect();
        let placing = self.writing.clone().lock_owned().await;
        let placed = blocking(move || {
            let placed = match inc.dir.own() {
                Some(dir) => place_files(plan, dir, &index),
                None => Err(plan::ExportError::Io {
                    path: inc.dir.path().to_path_buf(),
                    msg: "the files are a client's to place".into(),
                }),
            };
            drop(placing);
            placed
        })
        .await?
        .map_err(AttemptError::Destination)?;
        self.held_in_place(targets).await;
        Ok(placed)
    }

    /// Opens the incoming files (the ones the owner's client hosts, if it
    /// offered them) and recovers what a previous run wrote: the files and
    /// the chunks known of each. Files a client hosted before a restart
    /// wait for it to offer them again, a while.
    async fn open_incoming(
        &self,
        hashes: Arc<Vec<[u8; 32]>>,
        files: usize,
    ) -> Result<(Incoming, Vec<ChunkRanges>), AttemptError> {
        let mut host = match self.placement {
            Placement::Client => self.hosts.take(self.id),
            Placement::Daemon => None,
        };
        let mut abandon = false;
        loop {
            let place = self.place();
            let in_data_dir = self.placement == Placement::Client;
            let hashes = hashes.clone();
            let opened = blocking(move || {
                if in_data_dir {
                    incoming::private_dir(&place.root).map_err(|e| {
                        incoming::IncomingError::Io {
                            path: place.root.clone(),
                            source: e,
                        }
                    })?;
                }
                match Incoming::open(place, files, host, abandon)? {
                    Opened::Ready(mut inc) => {
                        let have = inc.recover(&hashes)?;
                        Ok(Some((*inc, have)))
                    }
                    Opened::AwaitsHost => Ok::<_, incoming::IncomingError>(None),
                }
            })
            .await?
            .map_err(local)?;
            if let Some(opened) = opened {
                debug!(
                    id = self.id,
                    hosted = opened.0.dir.own().is_none(),
                    "incoming files open"
                );
                return Ok(opened);
            }
            info!(
                id = self.id,
                "its files are its owner's client's: waiting for that client to offer them again"
            );
            self.update(|v| {
                v.rec.last_error = Some(format!(
                    "waiting up to {}s for its owner's ringdropctl (`ringdropctl transfers wait {}`), which holds the files fetched so far",
                    REHOST_WITHIN.as_secs(),
                    self.id
                ))
            });
            host = self.hosts.wait(self.id, REHOST_WITHIN).await;
            abandon = true;
        }
    }

    /// Proves unknown sizes, plans, checks space and fetches every missing
    /// chunk through `sink`. Returns the plan (`None`: the client places).
    async fn fetch_into(
        &self,
        session: &attempt::Session<'_>,
        sink: &incoming::Sink,
        named: &[(String, Hash)],
        (sizes, have): (&mut [Option<u64>], &mut [ChunkRanges]),
        (hosted, rosters, holding): (
            bool,
            &[crate::access::roster::Held],
            Option<&crate::swarm::Holding>,
        ),
    ) -> Result<Option<plan::Plan>, AttemptError> {
        // In a ring the owner proves sizes with the last chunk alone: the
        // members send the rest.
        let first = if rosters.is_empty() { 16 } else { 0 };
        let entries = self
            .prove_sizes(session, sink, named, (sizes, have), first)
            .await?;
        let (total, done) = self.content_known(&entries, have).await?;
        let plan = self.plan_for(&entries).await?;
        info!(
            id = self.id,
            verified = done,
            total,
            "content known, fetching what is missing"
        );
        self.fetch_missing(
            session,
            sink,
            &entries,
            have,
            (total, done),
            (hosted, rosters, holding),
        )
        .await?;
        self.update(|v| v.rec.bytes_done = total);
        Ok(plan)
    }

    /// Proves the sizes not known yet: one request for each one's first
    /// chunk group and last chunk (which proves the size; a file of up to
    /// 16 KiB comes whole), kept like any other chunk. Every file's entry.
    /// `first`: chunks asked from the start (0 or 16) beside the last.
    async fn prove_sizes(
        &self,
        session: &attempt::Session<'_>,
        sink: &incoming::Sink,
        named: &[(String, Hash)],
        (sizes, have): (&mut [Option<u64>], &mut [ChunkRanges]),
        first: u64,
    ) -> Result<Vec<plan::Entry>, AttemptError> {
        let unknown: Vec<Want> = named
            .iter()
            .enumerate()
            .filter(|(i, _)| sizes[*i].is_none())
            .map(|(file, (_, hash))| Want {
                file,
                hash: *hash,
                size: None,
                ranges: ChunkRanges::from(..ChunkNum(first)) | ChunkRanges::last_chunk(),
            })
            .collect();
        let proven = session
            .receive(&unknown, sink, |file, offset, len| {
                have[file] |= incoming::leaf_chunks(offset, len);
                self.events.counts().fetched_bytes.inc_by(len as u64);
                self.update(|v| v.rec.bytes_received += len as u64);
                Ok(())
            })
            .await?;
        debug!(id = self.id, proven = proven.len(), "sizes proven");
        if !proven.is_empty() && !sink.send(incoming::Item::RecordSizes).await {
            return Err(AttemptError::Local("the writer stopped".into()));
        }
        for (file, size) in proven {
            sizes[file] = Some(size);
        }
        named
            .iter()
            .zip(sizes.iter())
            .map(|((name, hash), size)| {
                let size = size.ok_or_else(|| {
                    AttemptError::Interrupted(
                        format!("the provider did not send the size of {name:?}").into(),
                    )
                })?;
                Ok(plan::Entry {
                    name: name.clone(),
                    hash: *hash.as_bytes(),
                    size,
                })
            })
            .collect()
    }

    /// The content's size is known: checks it against the offer's, records
    /// it with what is verified already; (total, verified) bytes.
    async fn content_known(
        &self,
        entries: &[plan::Entry],
        have: &[ChunkRanges],
    ) -> Result<(u64, u64), AttemptError> {
        let total = entries.iter().fold(0u64, |t, e| t.saturating_add(e.size));
        if let Some(said) = self.expect_size.filter(|s| *s != total) {
            return Err(AttemptError::BadContent(format!(
                "the offer said {said} bytes but the content is {total} bytes; nothing of it was kept"
            ).into()));
        }
        let done: u64 = entries
            .iter()
            .zip(have.iter())
            .map(|(e, h)| crate::content::ranges::covered(h, e.size))
            .sum();
        let top = entries
            .first()
            .map(|e| e.name.split('/').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        self.update(|v| {
            // A transfer that ran before (its size is known) may find more
            // verified data than it last recorded: what arrived after the
            // last persist before a crash. That came over the wire too.
            if v.rec.bytes_total > 0 {
                v.rec.bytes_received += done.saturating_sub(v.rec.bytes_done);
            }
            v.rec.bytes_total = total;
            v.rec.bytes_done = done.min(total);
            if v.rec.name.is_empty() {
                v.rec.name = top;
            }
        });
        self.persist().await;
        Ok((total, done))
    }

    /// The daemon plans only where it writes; a client that places the
    /// files plans against the destination it can see (`None`).
    async fn plan_for(&self, entries: &[plan::Entry]) -> Result<Option<plan::Plan>, AttemptError> {
        let (dest, force, placement) = (self.dest.clone(), self.force, self.placement);
        let (container, entries) = (self.container.clone(), entries.to_vec());
        blocking(move || match placement {
            Placement::Daemon => plan::plan(&dest, &entries, force, &container).map(Some),
            Placement::Client => Ok(None),
        })
        .await?
        .map_err(AttemptError::Destination)
    }

    /// Fetches every chunk of `entries` not in `have`, checking the room
    /// left as it goes; fails unless every chunk arrived.
    async fn fetch_missing(
        &self,
        session: &attempt::Session<'_>,
        sink: &incoming::Sink,
        entries: &[plan::Entry],
        have: &mut [ChunkRanges],
        (total, mut done): (u64, u64),
        (hosted, rosters, holding): (
            bool,
            &[crate::access::roster::Held],
            Option<&crate::swarm::Holding>,
        ),
    ) -> Result<(), AttemptError> {
        // Hosted files are on the client's filesystem, which the daemon may
        // not even see: the client checked its room; a full disk there
        // fails the write with its own error.
        let root = if hosted {
            self.data_dir.clone()
        } else {
            self.place().root
        };
        let outboards: u64 = entries
            .iter()
            .map(|e| BaoTree::new(e.size, IROH_BLOCK_SIZE).outboard_size())
            .sum();
        let space = Space::new(&root, &self.data_dir, outboards);
        space.check(total - done.min(total))?;
        let wants = missing_wants(entries, have);
        let mut window = (Instant::now(), self.publish.borrow().rec.bytes_received);
        let mut space_checked = Instant::now();
        let owner = self.ticket.addr.id;
        let mut leaf = |from: iroh::EndpointId, file: usize, offset: u64, len: usize| {
            let chunks = incoming::leaf_chunks(offset, len);
            // The same piece asked of two providers arrives twice.
            let new = !(chunks.clone() - &have[file]).is_empty();
            have[file] |= chunks;
            if new {
                done = (done + len as u64).min(total);
            }
            self.progress(from, len as u64, done, &mut window);
            // Something else may be filling the disk meanwhile: stop
            // while there is room to record what arrived.
            if space_checked.elapsed() >= SPACE_CHECK_EVERY {
                space_checked = Instant::now();
                space.check(total - done)?;
            }
            Ok(())
        };
        if rosters.is_empty() || wants.is_empty() {
            session
                .receive(&wants, sink, |file, offset, len| {
                    leaf(owner, file, offset, len)
                })
                .await?;
        } else {
            self.fetch_ring(session, (sink, holding), rosters, &wants, leaf)
                .await?;
        }
        let complete = entries
            .iter()
            .zip(have.iter())
            .all(|(e, h)| (crate::content::ranges::all_chunks(e.size) - h).is_empty());
        if !complete {
            return Err(AttemptError::Interrupted(
                "the provider did not send every chunk asked for".into(),
            ));
        }
        Ok(())
    }

    /// Shows `conn`'s provider as connected while the attempt runs, with
    /// its path and round-trip time refreshed every second, and says when
    /// it is gained and lost (events).
    pub(super) fn follow_provider(&self, conn: &iroh::endpoint::Connection) -> Following {
        let peer = conn.remote_id();
        let (path, rtt) = path_of(conn);
        self.update(|v| match v.provider_mut(peer) {
            Some(p) => {
                (p.connected, p.path, p.rtt) = (true, path.clone(), rtt);
            }
            None => v.providers.push(super::ProviderView {
                id: peer,
                bytes: 0,
                connected: true,
                path: path.clone(),
                rtt,
            }),
        });
        let following = Following {
            publish: self.publish.clone(),
            changes: self.changes.clone(),
            events: self.events.clone(),
            transfer: self.id,
            owner: self.publish.borrow().rec.owner_uid,
            peer,
            _refresh: AbortOnDropHandle::new(tokio::spawn(refresh_path(
                conn.clone(),
                self.publish.clone(),
            ))),
        };
        following.said(true, path);
        following
    }

    /// `len` more bytes arrived, `done` are verified: published, with the
    /// rate over the last second (`window`: its start and bytes then).
    fn progress(&self, from: iroh::EndpointId, len: u64, done: u64, window: &mut (Instant, u64)) {
        self.events.counts().fetched_bytes.inc_by(len);
        self.changes.send_modify(|c| *c = c.wrapping_add(1));
        self.publish.send_modify(|v| {
            if let Some(p) = v.provider_mut(from) {
                p.bytes += len;
            }
            v.rec.bytes_received += len;
            v.rec.bytes_done = done;
            let elapsed = window.0.elapsed();
            if elapsed >= Duration::from_secs(1) {
                let moved = v.rec.bytes_received - window.1;
                v.rate = (moved as f64 / elapsed.as_secs_f64()) as u64;
                *window = (Instant::now(), v.rec.bytes_received);
            }
        });
    }
}

/// The path `conn` uses now ("direct ADDR", "relay URL") and its
/// round-trip time; empty while none is chosen.
fn path_of(conn: &iroh::endpoint::Connection) -> (String, Duration) {
    let paths = conn.paths();
    let Some(p) = paths.iter().find(|p| p.is_selected()) else {
        return (String::new(), Duration::ZERO);
    };
    let path = match p.remote_addr() {
        iroh::TransportAddr::Relay(url) => format!("relay {url}"),
        iroh::TransportAddr::Ip(addr) => format!("direct {addr}"),
        other => other.to_string(),
    };
    (path, p.rtt())
}

/// Refreshes the path and round-trip time of `conn`'s provider in the
/// published view every second, until aborted.
async fn refresh_path(conn: iroh::endpoint::Connection, publish: watch::Sender<TransferView>) {
    let peer = conn.remote_id();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (path, rtt) = path_of(&conn);
        publish.send_if_modified(|v| match v.provider_mut(peer) {
            Some(p) if p.path != path || p.rtt != rtt => {
                (p.path, p.rtt) = (path, rtt);
                true
            }
            _ => false,
        });
    }
}

/// An attempt's provider while it is connected: on drop (the attempt
/// ended, however) it is shown disconnected and the loss is said.
pub(super) struct Following {
    publish: watch::Sender<TransferView>,
    changes: watch::Sender<u64>,
    events: crate::events::Events,
    transfer: u64,
    owner: u32,
    peer: iroh::EndpointId,
    _refresh: AbortOnDropHandle<()>,
}

impl Following {
    fn said(&self, connected: bool, path: String) {
        let change = crate::events::ProviderChange {
            id: self.transfer,
            owner: self.owner,
            peer: self.peer.to_string(),
            connected,
            path,
        };
        self.events
            .publish(crate::events::Event::ProviderChanged(change));
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let peer = self.peer;
        self.publish.send_modify(|v| {
            if let Some(p) = v.provider_mut(peer) {
                p.connected = false;
            }
        });
        self.changes.send_modify(|c| *c = c.wrapping_add(1));
        self.said(false, String::new());
    }
}

/// Names are refused before any byte of the files is fetched.
async fn check_names(named: &[(String, Hash)]) -> Result<(), AttemptError> {
    let names: Vec<plan::Entry> = named
        .iter()
        .map(|(name, hash)| plan::Entry {
            name: name.clone(),
            hash: *hash.as_bytes(),
            size: 0,
        })
        .collect();
    blocking(move || plan::check_names(&names))
        .await?
        .map_err(AttemptError::Destination)
}

/// The data-dir directory of transfer `id`'s outboards.
pub(super) fn outboards_of(data_dir: &std::path::Path, id: u64) -> PathBuf {
    data_dir.join(OUTBOARDS).join(id.to_string())
}

/// Runs blocking work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AttemptError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

fn local(e: incoming::IncomingError) -> AttemptError {
    let host_lost = matches!(&e, incoming::IncomingError::Io { source, .. }
        if super::hosted::is_host_lost(source));
    if host_lost {
        // Retried: the client offers its directory again (or, after a
        // while, the data dir takes over).
        AttemptError::Interrupted(Cause::from_err(e))
    } else if e.no_space() {
        AttemptError::NoSpace(Cause::from_err(e))
    } else {
        AttemptError::Local(Cause::from_err(e))
    }
}

/// What is missing of each of `entries`, given what is `have`.
fn missing_wants(entries: &[plan::Entry], have: &[ChunkRanges]) -> Vec<Want> {
    entries
        .iter()
        .enumerate()
        .filter_map(|(file, e)| {
            let missing = crate::content::ranges::all_chunks(e.size) - &have[file];
            (!missing.is_empty()).then(|| Want {
                file,
                hash: Hash::from_bytes(e.hash),
                size: Some(e.size),
                ranges: missing,
            })
        })
        .collect()
}

/// Moves every planned file from the private directory to its place: all
/// or nothing, durable, never over a file that appeared meanwhile (unless
/// `--force`). Blocking.
fn place_files(
    plan: plan::Plan,
    from: &PartialDir,
    index: &HashMap<String, usize>,
) -> Result<Vec<PathBuf>, plan::ExportError> {
    let mut staging = Staging::prepare(plan)?;
    let items: Vec<(usize, String)> = staging.items().map(|(i, e)| (i, e.name.clone())).collect();
    for (i, name) in items {
        let file = *index
            .get(&name)
            .ok_or_else(|| plan::ExportError::UnsafeName(name.clone()))?;
        staging.adopt(i, from, file)?;
    }
    // Verified on the way in, written and synced by this daemon in its own
    // private directory: neither hashed nor synced again.
    staging.finish(false)
}

/// Free space the rest of a fetch needs: the data where the incoming files
/// are, the outboards plus headroom in the data dir; one figure when both
/// are on one filesystem.
struct Space {
    root: PathBuf,
    data_dir: PathBuf,
    data_dir_need: u64,
    shared: bool,
}

impl Space {
    fn new(root: &std::path::Path, data_dir: &std::path::Path, outboards: u64) -> Self {
        use std::os::unix::fs::MetadataExt;
        let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        let shared = dev(root).is_some() && dev(root) == dev(data_dir);
        Self {
            root: root.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            data_dir_need: outboards + DATA_DIR_HEADROOM,
            shared,
        }
    }

    fn check(&self, remaining: u64) -> Result<(), AttemptError> {
        let check = |path: &std::path::Path, need| {
            plan::check_space(path, need).map_err(|e| AttemptError::NoSpace(Cause::from_err(e)))
        };
        if self.shared {
            return check(&self.root, remaining + self.data_dir_need);
        }
        check(&self.root, remaining)?;
        check(&self.data_dir, self.data_dir_need)
    }
}
