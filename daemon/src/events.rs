//! What happens in the daemon, for scripts: transfers that end and shares
//! served, broadcast to every `WatchEvents` reader (a slow reader misses
//! events, counted, rather than hold anything up), and the optional
//! `on_complete` command run after each completed fetch.
//!
//! The command is an argv run without a shell, as the daemon's own user,
//! with stdin closed, in `/`, at most [`HOOKS_AT_ONCE`] at a time and
//! killed after its timeout. What a peer chose (the transfer's name) reaches
//! it only as an environment value, never as an argument or code.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use tokio::sync::{broadcast, Semaphore};
use tracing::{info, warn};

use crate::{metrics::Counts, registry::TransferState, tasks::Tasks};

/// Events buffered for a slow reader before it starts missing them.
const BUFFER: usize = 1024;
/// `on_complete` commands running at once; more wait their turn.
pub const HOOKS_AT_ONCE: usize = 4;

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum Event {
    TransferEnded {
        id: u64,
        /// The uid the transfer belongs to.
        owner: u32,
        state: TransferState,
        dest: PathBuf,
        name: String,
        hash: String,
        /// Files at the destination (completed transfers).
        files: Vec<PathBuf>,
        error: Option<String>,
    },
    ShareServed {
        peer: String,
        share: Option<String>,
        bytes: u64,
        completed: bool,
    },
    /// A contact offered files; they wait in the inbox (`id`).
    OfferReceived {
        id: u64,
        from: String,
        from_name: String,
        name: String,
        size: u64,
    },
    /// A transfer gained or lost a provider.
    ProviderChanged(ProviderChange),
    /// A peer redeemed an invite and joined a ring.
    MemberJoined {
        ring: String,
        peer: String,
        /// Its name in the address book.
        name: String,
    },
}

/// A transfer gained (`connected`) or lost a provider; `path` is how it is
/// reached ("direct ADDR", "relay URL").
#[derive(Debug, Clone)]
pub struct ProviderChange {
    pub id: u64,
    /// The uid the transfer belongs to.
    pub owner: u32,
    pub peer: String,
    pub connected: bool,
    pub path: String,
}

/// An event with the time it happened (unix seconds).
#[derive(Debug, Clone)]
pub struct Stamped {
    pub at: i64,
    pub event: Event,
}

/// The daemon's event hub, and what it counts (`metrics`); cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Stamped>,
    counts: Arc<Counts>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BUFFER).0,
            counts: Arc::default(),
        }
    }
}

impl Events {
    /// Tells every current reader (nobody listening is fine), and counts
    /// what is counted by its event.
    pub fn publish(&self, event: Event) {
        match &event {
            Event::OfferReceived { .. } => {
                self.counts.offers_received.inc();
            }
            Event::ProviderChanged(c) if c.connected => self.counts.connected(&c.path),
            _ => {}
        }
        let at = ringdrop_proto::clock::now();
        self.tx.send(Stamped { at, event }).ok();
    }

    /// The daemon's counters (one set per hub).
    pub fn counts(&self) -> &Arc<Counts> {
        &self.counts
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Stamped> {
        self.tx.subscribe()
    }
}

/// The `on_complete` command and how long it may run.
#[derive(Debug, Clone)]
pub struct Hook {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

/// Runs `hook` after every completed transfer, as `tasks` (until they
/// stop); if the loop dies it is started again, reading from then on.
pub fn spawn_hooks(events: &Events, hook: Hook, tasks: &Tasks) {
    // Subscribed now, so nothing that ends after start-up is missed.
    let first = std::sync::Mutex::new(Some(events.subscribe()));
    let (events, runs) = (events.clone(), tasks.clone());
    let counts = events.counts().clone();
    let slots = Arc::new(Semaphore::new(HOOKS_AT_ONCE));
    tasks.spawn_loop("on-complete", move || {
        let taken = first.lock().ok().and_then(|mut f| f.take());
        let rx = taken.unwrap_or_else(|| events.subscribe());
        follow_hooks(
            rx,
            hook.clone(),
            slots.clone(),
            (runs.clone(), counts.clone()),
        )
    });
}

/// Starts a run of `hook` (at most [`HOOKS_AT_ONCE`] at once) for every
/// completed transfer `rx` reports.
async fn follow_hooks(
    mut rx: broadcast::Receiver<Stamped>,
    hook: Hook,
    slots: Arc<Semaphore>,
    (runs, counts): (Tasks, Arc<Counts>),
) {
    loop {
        let ended = match rx.recv().await {
            Ok(Stamped {
                event:
                    Event::TransferEnded {
                        id,
                        state: TransferState::Completed,
                        dest,
                        name,
                        hash,
                        files,
                        ..
                    },
                ..
            }) => (id, dest, name, hash, files),
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!("on_complete: {n} events were missed");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let (hook, slots, counts) = (hook.clone(), slots.clone(), counts.clone());
        runs.spawn("on-complete-run", async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            counts.hook_runs.inc();
            if !run_hook(&hook, ended).await {
                counts.hook_failures.inc();
            }
        });
    }
}

/// The command for one completed transfer: the transfer in its
/// environment, nothing else from outside.
fn hook_command(
    program: &str,
    args: &[String],
    (id, dest, name, hash, files): (u64, PathBuf, String, String, Vec<PathBuf>),
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("RINGDROP_TRANSFER_ID", id.to_string())
        .env("RINGDROP_DEST", &dest)
        .env("RINGDROP_NAME", &name)
        .env("RINGDROP_HASH", &hash)
        .env("RINGDROP_FILE_COUNT", files.len().to_string())
        .env(
            "RINGDROP_FIRST_FILE",
            files.first().cloned().unwrap_or_default(),
        )
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout ends whatever it started.
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Runs the command once; whether it ran to a successful exit.
async fn run_hook(hook: &Hook, ended: (u64, PathBuf, String, String, Vec<PathBuf>)) -> bool {
    let Some((program, args)) = hook.argv.split_first() else {
        return true;
    };
    let id = ended.0;
    let mut cmd = hook_command(program, args, ended);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            warn!(id, "on_complete: cannot run {program}: {e}");
            return false;
        }
    };
    let group = child.id().map(|p| p as i32);
    match tokio::time::timeout(hook.timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => {
            info!(id, "on_complete ran: {}", out.status);
            return true;
        }
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or_default();
            warn!(
                id,
                "on_complete failed ({}): {}",
                out.status,
                last.escape_debug()
            );
        }
        Ok(Err(e)) => warn!(id, "on_complete: {e}"),
        Err(_) => {
            if let Some(g) = group {
                // SAFETY: plain kill(2) of the group the command leads.
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
            warn!(
                id,
                "on_complete did not finish within {}s and was killed",
                hook.timeout.as_secs()
            )
        }
    }
    false
}
