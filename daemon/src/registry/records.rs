//! Records stored in the registry (postcard-encoded rows).

use std::path::PathBuf;

use iroh_blobs::Hash;
use serde::{Deserialize, Serialize};

/// A shared collection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareRecord {
    /// Collection hash: the share's identity.
    pub hash: Hash,
    pub name: String,
    /// Absolute source path it was imported from.
    pub path: PathBuf,
    /// Sum of the file sizes.
    pub size: u64,
    pub files: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Every blob of the collection but the root: meta blob and files.
    pub children: Vec<Hash>,
    /// Rings that may fetch it (`open`: anyone holding the ticket).
    pub rings: Vec<String>,
    /// The files it was imported from, as they were then.
    pub sources: Vec<Source>,
}

/// A shared file as it was when imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// An address-book entry: a name for an endpoint and where it was last seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerRecord {
    pub name: String,
    pub id: [u8; 32],
    pub relay: Option<String>,
    pub addrs: Vec<std::net::SocketAddr>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Lifecycle of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferState {
    Queued,
    Running,
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl TransferState {
    /// Lowercase name, as clients print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Completed, failed and cancelled transfers never run again by themselves.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A fetch, persisted so it outlives clients and restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferRecord {
    pub id: u64,
    /// The ticket as given by the user.
    pub ticket: String,
    /// Endpoint id of the provider.
    pub provider: String,
    /// Destination as resolved by the daemon (absolute).
    pub dest: PathBuf,
    pub force: bool,
    pub name: String,
    pub hash: Hash,
    pub state: TransferState,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_received: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Files placed at the destination (set when completed).
    pub files: Vec<PathBuf>,
}
