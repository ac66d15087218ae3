//! The limits in force: the node's paces (the schedule's choice, checked
//! every second) and each limited peer's, shared by the serving side and
//! every fetch.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use iroh::EndpointId;

use super::{Limits, LocalTime, Pace};

/// Peer id -> its (up, down) paces.
type PeerPaces = HashMap<[u8; 32], (Arc<Pace>, Arc<Pace>)>;

/// The limits in force; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Bandwidth {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Held while a change is read, made, kept and applied, so two
    /// changes at once never lose one.
    editing: tokio::sync::Mutex<()>,
    settings: RwLock<Limits>,
    up: Pace,
    down: Pace,
    peers: RwLock<PeerPaces>,
    /// Takes that had to wait, up and down (metrics).
    waits: [std::sync::atomic::AtomicU64; 2],
}

impl Bandwidth {
    /// Limits in force from `limits`.
    pub fn new(limits: Limits) -> Self {
        let this = Self::default();
        this.apply(limits);
        this
    }

    /// Waits for any other change of the settings to end; hold the guard
    /// while reading, keeping and applying a change.
    pub async fn editing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.editing.lock().await
    }

    /// The settings.
    pub fn settings(&self) -> Limits {
        self.inner
            .settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Puts `limits` in force at once, on running transfers too.
    pub fn apply(&self, limits: Limits) {
        if let Ok(mut peers) = self.inner.peers.write() {
            peers.retain(|id, _| limits.peers.iter().any(|p| p.id == *id));
            for p in &limits.peers {
                let (up, down) = peers.entry(p.id).or_default();
                up.set(p.up);
                down.set(p.down);
            }
        }
        if let Ok(mut s) = self.inner.settings.write() {
            *s = limits;
        }
        self.follow_schedule(LocalTime::now());
    }

    /// Sets the node's paces to what the schedule says at `at`.
    fn follow_schedule(&self, at: LocalTime) {
        let (up, down) = self.settings().in_force(at);
        self.inner.up.set(up);
        self.inner.down.set(down);
    }

    /// The node's (up, down) limits in force now.
    pub fn in_force(&self) -> (Option<u64>, Option<u64>) {
        (self.inner.up.rate(), self.inner.down.rate())
    }

    /// Follows the schedule: checks it every second until dropped.
    pub async fn run_schedule(self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            self.follow_schedule(LocalTime::now());
        }
    }

    /// Waits until `bytes` more may pass `way` with `peer`: the node's
    /// limit, then the peer's (looked up each time, so a limit set later
    /// applies to an open connection), then `own` (a transfer's); counts
    /// the take if any of them made it wait.
    async fn take(&self, way: Way, peer: &EndpointId, bytes: u64, own: Option<&Pace>) {
        let node = match way {
            Way::Up => &self.inner.up,
            Way::Down => &self.inner.down,
        };
        let mut waited = node.take(bytes).await;
        let peer_pace = self.inner.peers.read().ok().and_then(|peers| {
            let (up, down) = peers.get(peer.as_bytes())?;
            Some(match way {
                Way::Up => up.clone(),
                Way::Down => down.clone(),
            })
        });
        if let Some(pace) = peer_pace {
            waited |= pace.take(bytes).await;
        }
        if let Some(pace) = own {
            waited |= pace.take(bytes).await;
        }
        if waited {
            self.inner.waits[way as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Takes that had to wait for a limit since start: up, down.
    pub fn waits(&self) -> (u64, u64) {
        let [up, down] = &self.inner.waits;
        let read = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        (read(up), read(down))
    }

    /// What bytes sent to `peer` pass.
    pub fn uplink(&self, peer: EndpointId) -> Uplink {
        Uplink {
            bandwidth: self.clone(),
            peer,
        }
    }
}

/// Which way bytes go.
#[derive(Debug, Clone, Copy)]
enum Way {
    Up = 0,
    Down = 1,
}

/// The upload limits bytes sent to one peer pass: the node's, then the
/// peer's.
#[derive(Debug, Clone)]
pub struct Uplink {
    bandwidth: Bandwidth,
    peer: EndpointId,
}

impl Uplink {
    /// Waits until `bytes` more may be sent.
    pub async fn take(&self, bytes: u64) {
        self.bandwidth.take(Way::Up, &self.peer, bytes, None).await;
    }
}

/// The download limits the bytes of one fetch from one provider pass: the
/// node's, the provider's and the transfer's own.
#[derive(Debug, Clone)]
pub struct Downlink {
    bandwidth: Bandwidth,
    peer: EndpointId,
    own: Arc<Pace>,
}

impl Bandwidth {
    /// The limits of a fetch from `peer` whose own limit is `own`.
    pub fn downlink(&self, peer: EndpointId, own: Arc<Pace>) -> Downlink {
        Downlink {
            bandwidth: self.clone(),
            peer,
            own,
        }
    }
}

impl Downlink {
    /// Waits until `bytes` more may come.
    pub async fn take(&self, bytes: u64) {
        let own = Some(&*self.own);
        self.bandwidth.take(Way::Down, &self.peer, bytes, own).await;
    }
}
