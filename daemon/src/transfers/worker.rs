//! The worker of one transfer: waits for a slot, then runs attempts with
//! capped exponential backoff and jitter until the content is exported, a
//! permanent error ends it, or the daemon shuts down (then the transfer is
//! left `queued` for the next start).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use iroh::Endpoint;
use iroh_blobs::api::Store;
use tokio::{
    sync::{watch, Semaphore},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    attempt::{self, AttemptError},
    export, now, plan, transfer_tag, StopReason, TransferView,
};
use crate::{
    registry::{Placement, Registry, TransferState},
    ticket::Ticket,
};

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Room kept free in the data dir beyond what a transfer still needs: the
/// store's own database has to be able to commit.
const STORE_HEADROOM: u64 = 16 * 1024 * 1024;
/// How often free space in the data dir is checked during a fetch.
const SPACE_CHECK_EVERY: Duration = Duration::from_millis(250);

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
}

/// Outcome of the attempt loop.
enum End {
    Done(Vec<PathBuf>),
    /// In the store, verified; the owner's client places the files.
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
    fn id(&self) -> u64 {
        self.publish.borrow().rec.id
    }

    fn update(&self, f: impl FnOnce(&mut TransferView)) {
        self.publish.send_modify(|v| {
            f(v);
            v.rec.updated_at = now();
        });
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    async fn persist(&self) {
        let registry = self.registry.clone();
        let rec = self.publish.borrow().rec.clone();
        match tokio::task::spawn_blocking(move || registry.put_transfer(&rec)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(id = self.id(), "cannot persist transfer: {e}"),
            Err(e) => warn!(id = self.id(), "cannot persist transfer: {e}"),
        }
    }

    /// Persists the latest progress once a second while the attempt runs.
    fn spawn_persister(&self, stop: CancellationToken) -> JoinHandle<()> {
        let registry = self.registry.clone();
        let rx = self.publish.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PERSIST_EVERY);
            let mut last = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => break,
                }
                let rec = rx.borrow().rec.clone();
                let key = (rec.bytes_received, rec.bytes_done, rec.bytes_total);
                if last != Some(key) {
                    last = Some(key);
                    let registry = registry.clone();
                    tokio::task::spawn_blocking(move || registry.put_transfer(&rec))
                        .await
                        .ok();
                }
            }
        })
    }

    pub async fn run(self) {
        let id = self.id();
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p.ok(),
            _ = self.stop.cancelled() => None,
        };
        let end = match permit {
            None => End::Stopped,
            Some(_permit) => {
                self.update(|v| v.rec.state = TransferState::Running);
                self.persist().await;
                let stop = CancellationToken::new();
                let persister = self.spawn_persister(stop.clone());
                let end = tokio::select! {
                    end = self.attempts() => end,
                    _ = self.stop.cancelled() => End::Stopped,
                };
                stop.cancel();
                persister.await.ok();
                end
            }
        };
        self.finish(id, end).await;
    }

    /// Records how the worker ended.
    async fn finish(&self, id: u64, end: End) {
        let (state, error) = match end {
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
        };
        self.update(|v| {
            v.rec.state = state;
            v.rec.last_error = error;
            v.rate = 0;
        });
        self.persist().await;
        // Completed: the files are at the destination, the store's copy may
        // go. Cancelled with purge: the partial data goes too.
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

    async fn attempts(&self) -> End {
        // Pin the content from its first byte, durably.
        let pinned = async {
            self.store
                .tags()
                .set(transfer_tag(self.id()), self.ticket.content)
                .await?;
            self.store.sync_db().await
        };
        if let Err(e) = pinned.await {
            return End::Failed(format!("cannot pin the transfer in the store: {e}"));
        }
        let mut backoff = BACKOFF_START;
        loop {
            self.update(|v| v.rec.attempts += 1);
            let before = self.publish.borrow().rec.bytes_done;
            match self.attempt().await {
                Ok(Some(files)) => return End::Done(files),
                Ok(None) => return End::Ready,
                Err(AttemptError::Permanent(msg)) => return End::Failed(msg),
                Err(AttemptError::Transient(msg)) => {
                    let progressed = self.publish.borrow().rec.bytes_done > before;
                    if progressed {
                        backoff = BACKOFF_START;
                    }
                    let wait = jittered(backoff);
                    info!(
                        id = self.id(),
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

    /// One attempt: the files placed (`None`: fetched for a client that
    /// places them itself).
    async fn attempt(&self) -> Result<Option<Vec<PathBuf>>, AttemptError> {
        let session = attempt::Session {
            store: &self.store,
            conn: attempt::connect(&self.endpoint, &self.ticket).await?,
            ticket: &self.ticket,
            me: &self.endpoint,
        };
        let mut received = 0;
        let learned = session.learn_content(&mut received).await;
        self.update(|v| v.rec.bytes_received += received);
        let content = learned?;
        let total = content.total();
        let (dest, force, placement, container) = {
            let rec = &self.publish.borrow().rec;
            (
                rec.dest.clone(),
                rec.force,
                rec.placement,
                container_name(rec),
            )
        };
        // The daemon plans only where it writes; for a client that places
        // the files, it refuses bad names before fetching, and the client
        // plans against the destination it can see.
        let plan = {
            let (dest, entries) = (dest.clone(), content.entries.clone());
            tokio::task::spawn_blocking(move || match placement {
                Placement::Daemon => plan::plan(&dest, &entries, force, &container).map(Some),
                Placement::Client => plan::check_names(&entries).map(|()| None),
            })
            .await
            .map_err(|e| AttemptError::Transient(e.to_string()))?
            .map_err(|e| AttemptError::Permanent(e.to_string()))?
        };
        let held = session.holdings(&content).await?;
        let done = attempt::held_bytes(&content.entries, &held);
        let top = content
            .entries
            .first()
            .map(|e| e.name.split('/').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        self.update(|v| {
            // A transfer that ran before (its size is known) may find more
            // verified data than it last recorded: what arrived after the
            // last persist before a crash. That came over the wire too.
            // Data that was already here before a first attempt did not.
            if v.rec.bytes_total > 0 {
                v.rec.bytes_received += done.saturating_sub(v.rec.bytes_done);
            }
            v.rec.bytes_total = total;
            v.rec.bytes_done = done.min(total);
            if v.rec.name.is_empty() {
                v.rec.name = top;
            }
        });
        // Recorded at once: a crash before the next periodic persist must
        // still find the size, or the data that arrives next would look
        // like data that was here before the transfer.
        self.persist().await;
        info!(
            id = self.id(),
            verified = done,
            total,
            "content known, fetching what is missing"
        );
        let space = |path: &std::path::Path, need| {
            plan::check_space(path, need).map_err(|e| AttemptError::Permanent(e.to_string()))
        };
        space(&self.data_dir, total.saturating_sub(done) + STORE_HEADROOM)?;
        if plan.is_some() {
            space(&dest, total)?;
        }

        let base_received = self.publish.borrow().rec.bytes_received;
        let mut window = (Instant::now(), base_received);
        let mut space_checked = Instant::now();
        session
            .fetch_missing(&held, |n| {
                let received = base_received + n;
                self.changes.send_modify(|c| *c = c.wrapping_add(1));
                self.publish.send_modify(|v| {
                    v.rec.bytes_received = received;
                    v.rec.bytes_done = (done + n).min(total);
                    let elapsed = window.0.elapsed();
                    if elapsed >= Duration::from_secs(1) {
                        v.rate = ((received - window.1) as f64 / elapsed.as_secs_f64()) as u64;
                        window = (Instant::now(), received);
                    }
                });
                // Something else may be filling the disk meanwhile: stop
                // while the store can still commit (a store that hits
                // ENOSPC stops until ringdropd restarts).
                if space_checked.elapsed() >= SPACE_CHECK_EVERY {
                    space_checked = Instant::now();
                    let need = total.saturating_sub(done + n) + STORE_HEADROOM;
                    space(&self.data_dir, need)?;
                }
                Ok(())
            })
            .await?;
        self.update(|v| v.rec.bytes_done = total);
        // Data this transfer downloaded was verified on the way in; data
        // that was complete before may refer to a shared file since edited.
        let verify = done >= total;
        let Some(plan) = plan else {
            return Ok(None);
        };
        info!(
            id = self.id(),
            total, "fetched and verified; placing the files"
        );
        export::export(&self.store, plan, verify)
            .await
            .map(Some)
            .map_err(|e| AttemptError::Permanent(e.to_string()))
    }
}
