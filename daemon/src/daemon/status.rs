//! The facade's view of the node: status, its addresses and the event
//! feed, each as its caller may see it.

use std::{path::PathBuf, sync::atomic::Ordering};

use tracing::info;

use iroh::EndpointAddr;
use iroh_blobs::Hash;

use super::Daemon;
use crate::{authority::Caller, events::Stamped, registry::RegistryError};

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

/// One caller's view of the event feed ([`Daemon::watch_events`]).
pub struct EventFeed {
    rx: tokio::sync::broadcast::Receiver<Stamped>,
    daemon: Daemon,
    caller: Caller,
}

/// What an [`EventFeed`] yields.
pub enum Seen {
    /// An event the caller may see.
    Event(Stamped),
    /// This many events went by while the reader was slow.
    Lost(u64),
}

impl EventFeed {
    /// The next event the caller may see; `None` once the daemon stops.
    pub async fn next(&mut self) -> Option<Seen> {
        use tokio::sync::broadcast::error::RecvError;
        let stop = self.daemon.inner.shutdown.clone();
        loop {
            let got = tokio::select! {
                got = self.rx.recv() => got,
                _ = stop.cancelled() => return None,
            };
            match got {
                Ok(s) => {
                    if self.daemon.event_visible(&self.caller, &s.event).await {
                        return Some(Seen::Event(s));
                    }
                }
                Err(RecvError::Lagged(n)) => return Some(Seen::Lost(n)),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

impl Daemon {
    /// The events `caller` may see from now on, until shutdown.
    pub fn watch_events(&self, caller: Caller) -> EventFeed {
        EventFeed {
            rx: self.inner.events.subscribe(),
            daemon: self.clone(),
            caller,
        }
    }

    /// Whether `caller` may see `event`: its own transfers, serving of its
    /// own shares, offers from its contacts, joins to its rings (an admin:
    /// all).
    async fn event_visible(&self, caller: &Caller, event: &crate::events::Event) -> bool {
        use crate::{events::Event, registry::Owned};
        if caller.is_admin() {
            return true;
        }
        let registry = &self.inner.registry;
        match event {
            Event::TransferEnded { owner, .. } => *owner == caller.uid,
            Event::ProviderChanged(change) => change.owner == caller.uid,
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

    /// Serves Prometheus metrics at `metrics_listen`, if set, until
    /// shutdown; an address that cannot be bound, or a token file that
    /// cannot be read or made, is an error now.
    pub async fn serve_metrics(&self) -> Result<(), String> {
        use crate::metrics::serve;
        let config = &self.inner.config;
        let Some(addr) = config.metrics_listen else {
            return Ok(());
        };
        let file = config
            .metrics_token_file
            .clone()
            .unwrap_or_else(|| serve::default_token_file(&config.data_dir));
        let auth = serve::Auth::load(config.metrics_public, &file)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("metrics_listen {addr}: {e}"))?;
        info!(%addr, public = config.metrics_public, "serving metrics at /metrics");
        let (daemon, stop) = (self.clone(), self.shutdown_token());
        let counts = self.inner.events.counts().clone();
        self.spawn("metrics", async move {
            let endpoint = daemon.inner.endpoint.clone();
            serve::serve(listener, auth, endpoint.metrics(), counts, daemon, stop).await;
        });
        Ok(())
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
}

impl crate::metrics::serve::Sampler for Daemon {
    async fn sample(&self) -> Result<crate::metrics::serve::Sample, String> {
        let registry = self
            .inner
            .registry
            .counts()
            .await
            .map_err(|e| e.to_string())?;
        let file = self.inner.config.data_dir.join("registry.redb");
        Ok(crate::metrics::serve::Sample {
            registry,
            registry_bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
            waits: self.inner.bandwidth.waits(),
        })
    }
}
