//! Following transfers (`WatchTransfer`, `WatchTransfers`): feeds that
//! hand the rpc layer the transfers that changed, never a signal to read
//! everything again. Each ends when the daemon stops.

use std::{collections::HashMap, time::Duration};

use tokio::sync::watch;

use super::Daemon;
use crate::{
    authority::Caller,
    registry::TransferState,
    transfers::{TransferError, TransferView},
};

/// At most this often a followed transfer's snapshot is sent.
const ONE_EVERY: Duration = Duration::from_millis(100);
/// Bursts of changes among many transfers are taken together this long.
const ALL_EVERY: Duration = Duration::from_millis(200);

/// What a follower of many transfers is told about again: a change of
/// state, sizes, attempts or error (not of the rate alone).
type Seen = (TransferState, u64, u64, u64, u32, Option<String>);

fn seen(v: &TransferView) -> Seen {
    let r = &v.rec;
    let error = r.last_error.clone();
    (
        r.state,
        r.bytes_total,
        r.bytes_done,
        r.bytes_received,
        r.attempts,
        error,
    )
}

/// One transfer followed: its live view while it runs, then its final row.
pub struct TransferWatch {
    daemon: Daemon,
    caller: Caller,
    id: u64,
    live: Option<watch::Receiver<TransferView>>,
    /// Whether a live snapshot was sent (the next one waits for a change).
    sent: bool,
    ended: bool,
}

impl TransferWatch {
    /// The next snapshot: at once, then on a change (at most one per
    /// [`ONE_EVERY`]); the final row once it ended; `None` after that or
    /// when the daemon stops.
    pub async fn next(&mut self) -> Option<Result<TransferView, TransferError>> {
        if self.ended {
            return None;
        }
        if let Some(live) = &mut self.live {
            if self.sent {
                let stop = self.daemon.inner.shutdown.clone();
                tokio::select! {
                    changed = live.changed() => if changed.is_err() { self.live = None },
                    _ = stop.cancelled() => return None,
                }
                // Changes meanwhile are taken together.
                tokio::time::sleep(ONE_EVERY).await;
            }
            if let Some(live) = &mut self.live {
                self.sent = true;
                return Some(Ok(live.borrow_and_update().clone()));
            }
        }
        // Ended (or had already): the final row from the registry.
        self.ended = true;
        Some(self.daemon.get_transfer(&self.caller, self.id).await)
    }
}

/// All of a caller's transfers followed: first what is still going on,
/// then each transfer that changed.
pub struct TransferFeed {
    daemon: Daemon,
    caller: Caller,
    changes: watch::Receiver<u64>,
    /// What each transfer was when last told.
    told: HashMap<u64, Seen>,
    /// The stored rows' generation last read (`None`: never).
    rows: Option<u64>,
}

impl TransferFeed {
    /// The transfers that changed since the last call, waiting until some
    /// did (the first call: those still going on); `None` once the daemon
    /// stops.
    pub async fn next(&mut self) -> Option<Result<Vec<TransferView>, TransferError>> {
        loop {
            let first = self.rows.is_none();
            if !first {
                let stop = self.daemon.inner.shutdown.clone();
                tokio::select! {
                    r = self.changes.changed() => r.ok()?,
                    _ = stop.cancelled() => return None,
                }
                tokio::time::sleep(ALL_EVERY).await;
            }
            self.changes.borrow_and_update();
            // Rows are read again only when a stored row changed; the
            // progress of running transfers comes from memory.
            let (list, now) = match self.daemon.transfers_changed(&self.caller, self.rows).await {
                Ok(got) => got,
                Err(e) => return Some(Err(e)),
            };
            self.rows = Some(now);
            let news: Vec<TransferView> = list
                .into_iter()
                .filter(|v| {
                    let now = seen(v);
                    let news = match self.told.get(&v.rec.id) {
                        Some(before) => *before != now,
                        // At first only what is still going on.
                        None => !first || !v.rec.state.as_pb().is_ended(),
                    };
                    self.told.insert(v.rec.id, now);
                    news
                })
                .collect();
            if !news.is_empty() {
                return Some(Ok(news));
            }
        }
    }
}

impl Daemon {
    /// Follows transfer `id`, which `caller` must be able to see.
    pub async fn watch_transfer(
        &self,
        caller: &Caller,
        id: u64,
    ) -> Result<TransferWatch, TransferError> {
        let live = self.inner.transfers.subscribe(caller, id).await?;
        Ok(TransferWatch {
            daemon: self.clone(),
            caller: caller.clone(),
            id,
            live,
            sent: false,
            ended: false,
        })
    }

    /// Follows every transfer `caller` may see.
    pub fn watch_transfers(&self, caller: &Caller) -> TransferFeed {
        TransferFeed {
            daemon: self.clone(),
            caller: caller.clone(),
            changes: self.inner.transfers.changes(),
            told: HashMap::new(),
            rows: None,
        }
    }
}
