//! What the daemon counts for Prometheus: the `ringdrop` group (this
//! module) beside iroh's endpoint metrics, served at `/metrics` when
//! `metrics_listen` is set (`serve`).
//!
//! Labels are closed sets named in code (a failure's kind, a refusal's
//! reason, a path's kind, a direction, a state): never a peer id, a name
//! or a path, so the number of series is fixed and nothing a peer chose
//! or a user named leaves the machine through a scrape.

pub mod serve;

use iroh_metrics::{Counter, EncodeLabelSet, EncodeLabelValue, Family, Gauge, MetricsGroup};

/// The daemon's own counters; one per daemon, shared by the parts that
/// count (through the event hub, which every part already has).
#[derive(Debug, MetricsGroup)]
#[metrics(name = "ringdrop", default)]
pub struct Counts {
    /// Payload bytes received from peers for fetches (a piece asked of two
    /// providers and sent by both counts twice).
    pub fetched_bytes: Counter,
    /// Payload bytes served to peers, since the registry was made.
    pub served_bytes: Counter,
    /// Fetch attempts started (a transfer retries after a failure).
    pub fetch_attempts: Counter,
    /// Fetch attempts that failed, by kind.
    pub fetch_failures: Family<ByKind, Counter>,
    /// Requests of peers the gate refused, by reason.
    pub gate_refusals: Family<ByReason, Counter>,
    /// Connections to providers made for fetches, by path.
    pub provider_connections: Family<ByPath, Counter>,
    /// Times data waited for a bandwidth limit, by direction.
    pub throttle_waits: Family<ByDirection, Counter>,
    /// Offers delivered to their receiver.
    pub offers_sent: Counter,
    /// Offers received into the inbox.
    pub offers_received: Counter,
    /// `on_complete` commands run.
    pub hook_runs: Counter,
    /// `on_complete` commands that could not start, failed or timed out.
    pub hook_failures: Counter,
    /// Transfers in the registry, by state.
    pub transfers: Family<ByState, Gauge>,
    /// Shares in the registry.
    pub shares: Gauge,
    /// Size of the registry file in bytes.
    pub registry_bytes: Gauge,
}

/// Why a fetch attempt failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum FailureKind {
    Unreachable,
    Interrupted,
    Store,
    Refused,
    BadContent,
    Destination,
    NoSpace,
    Local,
    NotHeld,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ByKind {
    pub kind: FailureKind,
}

/// Why the gate refused a request (the peer is told only "permission").
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum Refusal {
    /// No share of the content allows this peer (not shared, not a
    /// member, expired, suspended: a peer is not told which).
    NotPermitted,
    /// Ranges beyond the collection.
    OutOfRange,
    /// A request on a connection the gate did not see open, or without an
    /// endpoint id.
    UnknownConnection,
    /// Pushes are never taken.
    Push,
    /// The registry could not be read (fails closed).
    Registry,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ByReason {
    pub reason: Refusal,
}

/// How a provider is reached.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum PathKind {
    Direct,
    Relay,
    /// Not known yet when the connection opened.
    Unknown,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ByPath {
    pub path: PathKind,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum Direction {
    Up,
    Down,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ByDirection {
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
pub enum StateLabel {
    Queued,
    Running,
    Paused,
    Ready,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct ByState {
    pub state: StateLabel,
}

impl Counts {
    pub fn failed(&self, kind: FailureKind) {
        self.fetch_failures.get_or_create(&ByKind { kind }).inc();
    }

    pub fn refused(&self, reason: Refusal) {
        self.gate_refusals.get_or_create(&ByReason { reason }).inc();
    }

    /// A provider connection whose path reads "direct ADDR", "relay URL"
    /// or "" (not known yet).
    pub fn connected(&self, path: &str) {
        let path = if path.starts_with("direct") {
            PathKind::Direct
        } else if path.starts_with("relay") {
            PathKind::Relay
        } else {
            PathKind::Unknown
        };
        self.provider_connections
            .get_or_create(&ByPath { path })
            .inc();
    }
}
