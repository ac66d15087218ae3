//! The daemon's long-lived tasks, tracked: each has a name, a panic is
//! logged as a panic with that name, a background loop that ends or
//! panics before shutdown is started again (after a pause), and shutdown
//! waits for all of them ([`Tasks::stop`]) after cancelling their token.

use std::{
    collections::HashMap,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::FutureExt;
use tokio::task::AbortHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, warn};

/// How long a loop that died waits before it starts again.
const RESTART_AFTER: Duration = Duration::from_secs(5);

/// Tracked tasks of one owner; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
    /// What [`Tasks::stop`] aborts: the tasks of [`Tasks::spawn`] still
    /// running, by number. (Aborting, rather than racing each task against
    /// the stop token, keeps a busy task's every poll free of the token:
    /// a request stream sending a GiB is polled per packet.)
    running: Arc<Mutex<Running>>,
}

#[derive(Debug, Default)]
struct Running {
    next: u64,
    tasks: HashMap<u64, AbortHandle>,
}

/// The text of a panic's payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl Default for Tasks {
    /// Tasks with a token of their own (cancelled only by [`Tasks::stop`]).
    fn default() -> Self {
        Self::new(CancellationToken::new())
    }
}

impl Tasks {
    /// Tasks that end when `stop` is cancelled.
    pub fn new(stop: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            stop,
            running: Default::default(),
        }
    }

    /// Runs `fut` as task `name` until it ends or the tasks stop (then it
    /// is aborted); a panic is logged with the name. After a stop nothing
    /// new starts.
    pub fn spawn(&self, name: &'static str, fut: impl Future<Output = ()> + Send + 'static) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        if self.stop.is_cancelled() {
            return;
        }
        let id = running.next;
        running.next += 1;
        let done = self.running.clone();
        // Registered before the task can end: it waits for this lock.
        let task = self.tracker.spawn(async move {
            if let Err(payload) = AssertUnwindSafe(fut).catch_unwind().await {
                error!(
                    task = name,
                    "task panicked: {}",
                    panic_text(payload.as_ref())
                );
            }
            if let Ok(mut running) = done.lock() {
                running.tasks.remove(&id);
            }
        });
        running.tasks.insert(id, task.abort_handle());
    }

    /// Runs blocking `work` on the blocking pool as task `name`: tracked
    /// (shutdown waits for it; it cannot be cancelled, so it must end by
    /// itself), a panic logged with the name.
    pub fn spawn_blocking(&self, name: &'static str, work: impl FnOnce() + Send + 'static) {
        self.tracker.spawn_blocking(move || {
            if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(work)) {
                error!(
                    task = name,
                    "task panicked: {}",
                    panic_text(payload.as_ref())
                );
            }
        });
    }

    /// Runs the loop `make()` as task `name` for the daemon's lifetime:
    /// if it ends or panics before shutdown, that is logged and it starts
    /// again after [`RESTART_AFTER`].
    pub fn spawn_loop<F, Fut>(&self, name: &'static str, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            loop {
                let ran = tokio::select! {
                    ran = AssertUnwindSafe(make()).catch_unwind() => ran,
                    _ = stop.cancelled() => return,
                };
                match ran {
                    Err(payload) => error!(
                        task = name,
                        "background loop panicked: {}; starting it again",
                        panic_text(payload.as_ref())
                    ),
                    Ok(()) if stop.is_cancelled() => return,
                    Ok(()) => warn!(
                        task = name,
                        "background loop ended early; starting it again"
                    ),
                }
                tokio::select! {
                    _ = tokio::time::sleep(RESTART_AFTER) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// Cancels every task and waits until all have ended.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        if let Ok(mut running) = self.running.lock() {
            for (_, task) in running.tasks.drain() {
                task.abort();
            }
        }
        self.tracker.wait().await;
    }

    /// Waits up to `grace` for every task to end by itself (their inputs
    /// are gone), then cancels the rest and waits for them; the names of
    /// what had to be cancelled are not known, so their count is logged.
    pub async fn stop_within(&self, grace: Duration, owner: &'static str) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                owner,
                tasks = self.tracker.len(),
                "tasks still running {grace:?} after their inputs closed: cancelling them"
            );
            self.stop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_panics_is_started_again_and_stop_waits_for_all() {
        let tasks = Tasks::new(CancellationToken::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        tasks.spawn_loop("test-loop", move || {
            let runs = counted.clone();
            async move {
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
                std::future::pending::<()>().await;
            }
        });
        tasks.spawn("test-task", async { panic!("once") });
        tokio::time::sleep(RESTART_AFTER * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        tasks.stop().await;
        assert!(tasks.tracker.is_empty());
    }

    /// A task that ends by itself within the grace is not cancelled; one
    /// that does not is, and stop_within still returns.
    #[tokio::test(start_paused = true)]
    async fn stop_within_lets_tasks_end_then_cancels_the_rest() {
        let tasks = Tasks::new(CancellationToken::new());
        let finished = Arc::new(AtomicUsize::new(0));
        let f = finished.clone();
        tasks.spawn("ends", async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            f.fetch_add(1, Ordering::SeqCst);
        });
        tasks.stop_within(Duration::from_secs(2), "test").await;
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert!(tasks.tracker.is_empty());

        let tasks = Tasks::new(CancellationToken::new());
        tasks.spawn("hangs", std::future::pending::<()>());
        tasks.stop_within(Duration::from_secs(2), "test").await;
        assert!(tasks.tracker.is_empty());
    }
}
