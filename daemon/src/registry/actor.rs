//! The registry thread: it owns the [`Tables`] (and so the redb
//! `Database`); everything else holds a [`Registry`], a cheap handle whose
//! requests are each one read or one write transaction. No redb call,
//! commit or fsync runs on a runtime worker.
//!
//! Writes go to the registry thread and run one after another, in the
//! order they were sent. Reads run on the blocking pool (or the calling
//! blocking thread) beside them: redb's read transactions see the last
//! commit and never wait for a writer, so a status query is not queued
//! behind a commit. A write that panics is logged and answered
//! [`RegistryError::Lost`]; the thread goes on with the next one.

use std::{
    panic::AssertUnwindSafe,
    path::Path,
    sync::{atomic::AtomicU64, mpsc, Arc, Weak},
};

use super::{RegistryError, Result, Tables};

/// One write: run against the tables (`None` once closed).
type Job = Box<dyn FnOnce(Option<&Tables>) + Send>;

enum Msg {
    Run(Job),
    /// Drop the database (releasing its file lock), then answer.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// Handle to the registry thread; cheap to clone. Its methods (one per
/// request, see `registry::api`) are async; [`Registry::blocking`] has
/// them for code already on a blocking thread.
#[derive(Debug, Clone)]
pub struct Registry {
    jobs: mpsc::Sender<Msg>,
    /// For reads; gone once closed (the thread holds the only strong one).
    tables: Weak<Tables>,
    /// Bumped after every committed change of a share row.
    shares_gen: Arc<AtomicU64>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Run(_) => "Run",
            Msg::Close(_) => "Close",
        })
    }
}

impl Registry {
    /// Opens (or creates) the registry at `path` on a thread of its own,
    /// migrating older schemas; a newer schema is refused.
    pub async fn open(path: &Path) -> Result<Self> {
        let (opened_tx, opened) = tokio::sync::oneshot::channel();
        let (jobs, queue) = mpsc::channel();
        let shares_gen = Arc::<AtomicU64>::default();
        let (path, gen) = (path.to_owned(), shares_gen.clone());
        std::thread::Builder::new()
            .name("rdrop-registry".into())
            .spawn(move || run(&path, gen, queue, opened_tx))
            .map_err(|e| RegistryError::Task(e.into()))?;
        let tables = opened.await.map_err(|_| RegistryError::Lost)??;
        Ok(Self {
            jobs,
            tables,
            shares_gen,
        })
    }

    /// Changes whenever a share row changed.
    pub fn shares_generation(&self) -> u64 {
        self.shares_gen.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs the read `f` on the blocking pool and awaits its answer.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let tables = self.tables.upgrade().ok_or(RegistryError::Closed)?;
        match tokio::task::spawn_blocking(move || f(&tables)).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(task = "registry", "a registry read failed: {e}");
                Err(RegistryError::Lost)
            }
        }
    }

    /// Runs the read `f` here, on a blocking thread.
    pub(super) fn read_blocking<T>(&self, f: impl FnOnce(&Tables) -> Result<T>) -> Result<T> {
        let tables = self.tables.upgrade().ok_or(RegistryError::Closed)?;
        f(&tables)
    }

    /// Runs the write `f` on the registry thread and awaits its answer.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(reply, f)?;
        answer.await.map_err(|_| RegistryError::Lost)?
    }

    /// Runs the write `f` on the registry thread and waits for its answer,
    /// from a blocking thread (`spawn_blocking`, a thread of our own): it panics
    /// on a runtime worker, which must use the async methods.
    pub(super) fn run_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Tables) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(reply, f)?;
        answer.blocking_recv().map_err(|_| RegistryError::Lost)?
    }

    fn send<T: Send + 'static>(
        &self,
        reply: tokio::sync::oneshot::Sender<Result<T>>,
        f: impl FnOnce(&Tables) -> Result<T> + Send + 'static,
    ) -> Result<()> {
        let job: Job = Box::new(move |tables| {
            let answer = match tables {
                Some(t) => f(t),
                None => Err(RegistryError::Closed),
            };
            reply.send(answer).ok();
        });
        self.jobs
            .send(Msg::Run(job))
            .map_err(|_| RegistryError::Closed)
    }

    /// Closes the database once the writes sent before are answered (and
    /// the reads under way end); later requests fail with
    /// [`RegistryError::Closed`].
    pub async fn close(&self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.jobs.send(Msg::Close(done)).is_ok() {
            closed.await.ok();
        }
    }
}

/// The registry thread: opens the tables, then answers requests until
/// every handle is gone.
fn run(
    path: &Path,
    shares_gen: Arc<AtomicU64>,
    queue: mpsc::Receiver<Msg>,
    opened: tokio::sync::oneshot::Sender<Result<Weak<Tables>>>,
) {
    let mut tables = match Tables::open(path, shares_gen) {
        Ok(t) => {
            let t = Arc::new(t);
            opened.send(Ok(Arc::downgrade(&t))).ok();
            Some(t)
        }
        Err(e) => {
            opened.send(Err(e)).ok();
            return;
        }
    };
    while let Ok(msg) = queue.recv() {
        match msg {
            Msg::Run(job) => {
                let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(tables.as_deref())));
                if let Err(panic) = ran {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    tracing::error!(task = "registry", "a registry request panicked: {what}");
                }
            }
            // Reads under way keep the database until they end.
            Msg::Close(done) => {
                tables = None;
                done.send(()).ok();
            }
        }
    }
}
