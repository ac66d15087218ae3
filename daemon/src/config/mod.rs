//! Daemon configuration: every knob with its default. `load` layers the
//! TOML file, `RINGDROP_*` variables and flags on top of the defaults.

mod load;

pub use load::{load, ConfigError, Layer, Mode};

use std::{net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use iroh::RelayUrl;

/// Which relays the endpoint uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayChoice {
    /// n0's public relays (used when reachable, never waited for).
    Default,
    /// No relays and no internet address lookup: direct addresses only.
    Disabled,
    /// One relay server of your own.
    Url(RelayUrl),
}

impl FromStr for RelayChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Self::Default),
            "disabled" | "off" | "none" => Ok(Self::Disabled),
            url => RelayUrl::from_str(url).map(Self::Url).map_err(|e| {
                format!("relay must be 'default', 'disabled' or a relay URL (https://...): {e}")
            }),
        }
    }
}

impl std::fmt::Display for RelayChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Disabled => f.write_str("disabled"),
            Self::Url(u) => write!(f, "{u}"),
        }
    }
}

/// Effective configuration of one daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// Store, registry, secret key and endpoint state.
    pub data_dir: PathBuf,
    /// gRPC control socket.
    pub socket: PathBuf,
    pub relay: RelayChoice,
    /// LAN discovery via mDNS.
    pub mdns: bool,
    /// UDP socket of the endpoint; `None`: all interfaces on the port kept
    /// in the data dir (chosen on first start).
    pub bind: Option<SocketAddr>,
    pub max_concurrent_transfers: usize,
    /// Where fetches go when the caller names no destination.
    pub download_dir: PathBuf,
    /// How often unreferenced blobs are collected.
    pub gc_interval: Duration,
    /// The node's bandwidth limits (`max_upload_rate`, `max_download_rate`,
    /// `alt_*`) until `ringdropctl limits` changes them.
    pub limits: crate::limits::Limits,
    /// How long a silent peer is given before its connection is dropped
    /// (transfers then reconnect and resume); 1 s to 15 s.
    pub peer_timeout: Duration,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log: String,
    /// System mode: socket 0660 for the `ringdrop` group, system paths.
    pub system: bool,
    /// Command (argv, no shell) run after each completed fetch; empty: none.
    pub on_complete: Vec<String>,
    /// How long it may run before it is killed.
    pub on_complete_timeout: Duration,
    /// How long a fetch its owner's client is to place (`ready`) waits for
    /// it; then its files are removed and it is `failed` (resumable).
    pub keep_ready: Duration,
    /// How long a ring roster this node signs is valid: a member removed
    /// from a ring is refused by every member within it.
    pub roster_valid: Duration,
    /// Serve what this node fetched of a ring share to the ring's members.
    pub reserve: bool,
    /// Where Prometheus metrics are served (`/metrics`); `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Serve metrics without the bearer token.
    pub metrics_public: bool,
    /// The bearer token a scrape must send; `None`: `<data_dir>/metrics-token`
    /// (made, 0600, on the first start with metrics on).
    pub metrics_token_file: Option<PathBuf>,
}

/// Default of [`Config::roster_valid`].
pub const DEFAULT_ROSTER_VALID: Duration = Duration::from_secs(60);

/// Default of [`Config::keep_ready`]: a week.
pub const DEFAULT_KEEP_READY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The default log filter: our info, the libraries' warnings.
pub const DEFAULT_LOG: &str = "info,iroh=warn,noq=warn,iroh_blobs=warn,swarm_discovery=warn";

pub use ringdrop_proto::units::parse_bytes;

impl Config {
    /// Defaults for a user daemon (XDG data dir and runtime socket).
    pub fn user_defaults() -> Self {
        let dirs = directories::ProjectDirs::from("", "", "ringdrop");
        let data_dir = dirs
            .as_ref()
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".ringdrop"));
        let download_dir = directories::UserDirs::new()
            .and_then(|u| {
                u.download_dir()
                    .map(|p| p.to_path_buf())
                    .or_else(|| Some(u.home_dir().to_path_buf()))
            })
            .unwrap_or_else(std::env::temp_dir);
        Self {
            data_dir,
            socket: ringdrop_proto::paths::user_socket(),
            relay: RelayChoice::Default,
            mdns: true,
            bind: None,
            max_concurrent_transfers: 4,
            download_dir,
            gc_interval: Duration::from_secs(60),
            limits: Default::default(),
            peer_timeout: MAX_PEER_TIMEOUT,
            log: DEFAULT_LOG.to_string(),
            system: false,
            on_complete: Vec::new(),
            on_complete_timeout: DEFAULT_HOOK_TIMEOUT,
            keep_ready: DEFAULT_KEEP_READY,
            roster_valid: DEFAULT_ROSTER_VALID,
            reserve: true,
            metrics_listen: None,
            metrics_public: false,
            metrics_token_file: None,
        }
    }

    /// Defaults for the system service (systemd unit): state under
    /// `$STATE_DIRECTORY` (or /var/lib/ringdrop), downloads of the daemon's
    /// own user beside it (never inside: the data dir is the daemon's
    /// alone), socket in /run/ringdrop.
    pub fn system_defaults() -> Self {
        // The unit lists two state directories: systemd passes both,
        // colon-separated, data first.
        let mut state = std::env::var("STATE_DIRECTORY")
            .unwrap_or_default()
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect::<Vec<_>>()
            .into_iter();
        let data_dir = state
            .next()
            .unwrap_or_else(|| PathBuf::from("/var/lib/ringdrop"));
        let download_dir = state
            .next()
            .unwrap_or_else(|| PathBuf::from("/var/lib/ringdrop-downloads"));
        Self {
            download_dir,
            data_dir,
            socket: PathBuf::from(ringdrop_proto::paths::SYSTEM_SOCKET),
            system: true,
            ..Self::user_defaults()
        }
    }

    /// Defaults for tests and scripts: everything under `dir`, relays and
    /// mDNS off, loopback only.
    pub fn isolated(dir: &std::path::Path) -> Self {
        Self {
            data_dir: dir.join("data"),
            socket: dir.join("ringdropd.sock"),
            relay: RelayChoice::Disabled,
            mdns: false,
            bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            max_concurrent_transfers: 4,
            download_dir: dir.join("downloads"),
            gc_interval: Duration::from_secs(60),
            limits: Default::default(),
            peer_timeout: MAX_PEER_TIMEOUT,
            log: DEFAULT_LOG.to_string(),
            system: false,
            on_complete: Vec::new(),
            on_complete_timeout: DEFAULT_HOOK_TIMEOUT,
            keep_ready: DEFAULT_KEEP_READY,
            roster_valid: DEFAULT_ROSTER_VALID,
            reserve: true,
            metrics_listen: None,
            metrics_public: false,
            metrics_token_file: None,
        }
    }
}

/// How long `on_complete` may run by default, and at most.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_HOOK_TIMEOUT: Duration = Duration::from_secs(3600);

/// The longest `peer_timeout`: iroh abandons a silent path after 15 s anyway.
pub const MAX_PEER_TIMEOUT: Duration = Duration::from_secs(15);
