//! Records stored in the registry (postcard-encoded rows).

use std::path::PathBuf;

use iroh_blobs::Hash;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::RegistryError;

/// Decodes a registry row: corrupt bytes are an error, never a panic.
pub fn decode_row<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RegistryError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// Encodes a record as the registry stores it.
pub fn encode_row<T: Serialize>(rec: &T) -> Result<Vec<u8>, RegistryError> {
    Ok(postcard::to_stdvec(rec)?)
}

/// A shared collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Shown in the catalog to peers who may fetch it only because it is
    /// `open` (`share --listed`); ring shares are listed to their members.
    pub listed: bool,
    /// The uid whose share this is: shares are keyed by (content, owner),
    /// so two users sharing the same content have a row each.
    pub owner: u32,
}

/// A share row as schema 2 stored it (one per content hash, its owner in
/// the owners table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecordV2 {
    pub hash: Hash,
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub files: u64,
    pub created_at: i64,
    pub children: Vec<Hash>,
    pub rings: Vec<String>,
    pub sources: Vec<Source>,
    pub listed: bool,
}

impl ShareRecordV2 {
    pub fn with_owner(self, owner: u32) -> ShareRecord {
        ShareRecord {
            hash: self.hash,
            name: self.name,
            path: self.path,
            size: self.size,
            files: self.files,
            created_at: self.created_at,
            children: self.children,
            rings: self.rings,
            sources: self.sources,
            listed: self.listed,
            owner,
        }
    }
}

/// A shared file as it was when imported: everything `touch` and `cp -p`
/// cannot set back (inode, change time) besides size and mtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch: any write, rename
    /// or `touch` moves it, and nothing but the clock sets it.
    pub ctime_ns: i128,
    pub dev: u64,
    pub ino: u64,
}

/// What a file is now, as [`Source`] records it.
pub fn source_of(path: &std::path::Path, m: &std::fs::Metadata) -> Source {
    use std::os::unix::fs::MetadataExt;
    Source {
        path: path.to_path_buf(),
        size: m.len(),
        mtime_ns: mtime_ns(m),
        ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        dev: m.dev(),
        ino: m.ino(),
    }
}

/// Modification time of `m` in nanoseconds since the epoch.
pub fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    use std::os::unix::fs::MetadataExt;
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

/// A share row as schema 1 stored it (before `listed` and source identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecordV1 {
    pub hash: Hash,
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub files: u64,
    pub created_at: i64,
    pub children: Vec<Hash>,
    pub rings: Vec<String>,
    pub sources: Vec<SourceV1>,
}

/// A source as schema 1 stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceV1 {
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i128,
}

impl ShareRecordV1 {
    /// Schema 1 knew sources by size and mtime only. A source that still
    /// has them takes today's inode and change time (the trust schema 1
    /// gave it); one that does not keeps zeros, which match no file, so
    /// the share is not served until shared again. Unlisted.
    pub fn upgrade(
        self,
        stat: impl Fn(&std::path::Path) -> Option<(u64, i128, i128, u64, u64)>,
    ) -> ShareRecord {
        let sources = self
            .sources
            .into_iter()
            .map(|s| {
                let (ctime_ns, dev, ino) = match stat(&s.path) {
                    Some((size, mtime_ns, ctime_ns, dev, ino))
                        if size == s.size && mtime_ns == s.mtime_ns =>
                    {
                        (ctime_ns, dev, ino)
                    }
                    _ => (0, 0, 0),
                };
                Source {
                    path: s.path,
                    size: s.size,
                    mtime_ns: s.mtime_ns,
                    ctime_ns,
                    dev,
                    ino,
                }
            })
            .collect();
        ShareRecord {
            hash: self.hash,
            name: self.name,
            path: self.path,
            size: self.size,
            files: self.files,
            created_at: self.created_at,
            children: self.children,
            rings: self.rings,
            sources,
            listed: false,
            owner: super::owners::daemon_uid(),
        }
    }
}

/// What a completed transfer holds to re-serve to its ring's members:
/// its collection, the ring owner it came from, and each file as placed
/// with its outboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecord {
    pub root: Hash,
    pub owner: [u8; 32],
    pub owner_addrs: Vec<std::net::SocketAddr>,
    /// (position in the collection, hash, size, the file as placed, outboard)
    pub files: Vec<(u64, [u8; 32], u64, Source, PathBuf)>,
}

/// An address-book entry: a name for an endpoint and where it was last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Fetched and verified into the store, waiting for its owner's client
    /// to place the files (`ringdropctl transfers wait ID`).
    Ready,
}

impl TransferState {
    /// Every state, in the order of their numbers.
    pub const ALL: [TransferState; 7] = [
        TransferState::Queued,
        TransferState::Running,
        TransferState::Paused,
        TransferState::Completed,
        TransferState::Failed,
        TransferState::Cancelled,
        TransferState::Ready,
    ];

    /// Lowercase name, as clients print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Ready => "ready",
        }
    }

    /// The state as the API (and ctl) know it.
    pub fn as_pb(self) -> ringdrop_proto::v1::TransferState {
        use ringdrop_proto::v1::TransferState as Pb;
        match self {
            Self::Queued => Pb::Queued,
            Self::Running => Pb::Running,
            Self::Paused => Pb::Paused,
            Self::Completed => Pb::Completed,
            Self::Failed => Pb::Failed,
            Self::Cancelled => Pb::Cancelled,
            Self::Ready => Pb::Ready,
        }
    }

    /// Ended for good (`ringdrop_proto::state`, the one copy of the rule).
    pub fn is_terminal(self) -> bool {
        self.as_pb().is_ended()
    }

    /// No worker runs for it, and none is started on a restart.
    pub fn is_at_rest(self) -> bool {
        self.as_pb().is_at_rest()
    }
}

/// Who writes a transfer's files at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    /// The daemon itself: its own user's fetches, and destinations inside
    /// its `download_dir`.
    Daemon,
    /// The client of the user who started it, running as that user: the
    /// daemon writes the verified data into files that client opened for it
    /// (hosting), or into its data dir for the client to copy; the client
    /// renames them into place (the system service may not write a home).
    Client,
}

/// A fetch, persisted so it outlives clients and restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The uid of the control-socket client that started it.
    pub owner_uid: u32,
    pub placement: Placement,
}

/// What a transfer was asked for beyond its ticket, kept beside its row
/// (whose encoding stays as it was), so a restart or a resume keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terms {
    /// The content must be exactly this many bytes (what an offer said),
    /// checked before the files' data is fetched.
    pub expect_size: Option<u64>,
    /// `fetch --only` patterns ([`crate::transfers::Selection`]); empty:
    /// every file.
    pub only: Vec<String>,
    /// Its own download limit, bytes per second (changed at run time by
    /// its owner, `ringdropctl limits --transfer ID`).
    pub down_limit: Option<u64>,
    /// What it holds is not served to the share's ring (`fetch --no-reserve`).
    pub no_reserve: bool,
}

/// A transfer row as schema 1 stored it (before owner and placement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecordV1 {
    pub id: u64,
    pub ticket: String,
    pub provider: String,
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
    pub files: Vec<PathBuf>,
}

impl TransferRecordV1 {
    /// A schema-1 transfer was started by the daemon's own user (or root)
    /// and placed by the daemon.
    pub fn upgrade(self, owner_uid: u32) -> TransferRecord {
        let Self {
            id,
            ticket,
            provider,
            dest,
            force,
            name,
            hash,
            state,
            bytes_total,
            bytes_done,
            bytes_received,
            attempts,
            last_error,
            created_at,
            updated_at,
            files,
        } = self;
        TransferRecord {
            id,
            ticket,
            provider,
            dest,
            force,
            name,
            hash,
            state,
            bytes_total,
            bytes_done,
            bytes_received,
            attempts,
            last_error,
            created_at,
            updated_at,
            files,
            owner_uid,
            placement: Placement::Daemon,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hash() -> impl Strategy<Value = Hash> {
        any::<[u8; 32]>().prop_map(Hash::from_bytes)
    }

    fn path() -> impl Strategy<Value = PathBuf> {
        "\\PC{0,40}".prop_map(PathBuf::from)
    }

    fn source() -> impl Strategy<Value = Source> {
        (
            path(),
            any::<u64>(),
            any::<(i128, i128)>(),
            any::<(u64, u64)>(),
        )
            .prop_map(|(path, size, (mtime_ns, ctime_ns), (dev, ino))| Source {
                path,
                size,
                mtime_ns,
                ctime_ns,
                dev,
                ino,
            })
    }

    prop_compose! {
        fn share()(
            hash in hash(),
            name in "\\PC{0,40}",
            path in path(),
            (size, files, created_at) in any::<(u64, u64, i64)>(),
            children in proptest::collection::vec(hash(), 0..8),
            rings in proptest::collection::vec("[a-z0-9-]{1,16}", 0..4),
            sources in proptest::collection::vec(source(), 0..4),
            listed in any::<bool>(),
            owner in any::<u32>(),
        ) -> ShareRecord {
            ShareRecord { hash, name, path, size, files, created_at, children, rings, sources, listed, owner }
        }
    }

    prop_compose! {
        fn peer()(
            name in "\\PC{0,40}",
            id in any::<[u8; 32]>(),
            relay in proptest::option::of("\\PC{0,40}"),
            addrs in proptest::collection::vec(any::<std::net::SocketAddr>(), 0..4),
            updated_at in any::<i64>(),
        ) -> PeerRecord {
            // serde keeps only the IP and port of a V6 address.
            let addrs = addrs
                .into_iter()
                .map(|a| std::net::SocketAddr::new(a.ip(), a.port()))
                .collect();
            PeerRecord { name, id, relay, addrs, updated_at }
        }
    }

    fn state() -> impl Strategy<Value = TransferState> {
        prop_oneof![
            Just(TransferState::Queued),
            Just(TransferState::Running),
            Just(TransferState::Paused),
            Just(TransferState::Completed),
            Just(TransferState::Failed),
            Just(TransferState::Cancelled),
            Just(TransferState::Ready),
        ]
    }

    prop_compose! {
        fn transfer()(
            (id, ticket, provider, dest, force, name) in
                (any::<u64>(), "\\PC{0,80}", "[0-9a-f]{64}", path(), any::<bool>(), "\\PC{0,40}"),
            (hash, state) in (hash(), state()),
            (bytes_total, bytes_done, bytes_received, attempts) in any::<(u64, u64, u64, u32)>(),
            last_error in proptest::option::of("\\PC{0,80}"),
            (created_at, updated_at) in any::<(i64, i64)>(),
            files in proptest::collection::vec(path(), 0..4),
            (owner_uid, client) in any::<(u32, bool)>(),
        ) -> TransferRecord {
            let placement = if client { Placement::Client } else { Placement::Daemon };
            TransferRecord {
                id, ticket, provider, dest, force, name, hash, state, bytes_total,
                bytes_done, bytes_received, attempts, last_error, created_at, updated_at, files,
                owner_uid, placement,
            }
        }
    }

    /// Encodes, decodes, and checks every strict prefix of the row is
    /// refused (a torn write is never read as a shorter record).
    fn round_trip<T>(rec: &T) -> Result<(), TestCaseError>
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = encode_row(rec).unwrap();
        prop_assert_eq!(&decode_row::<T>(&bytes).unwrap(), rec);
        for n in 0..bytes.len() {
            prop_assert!(
                decode_row::<T>(&bytes[..n]).is_err(),
                "prefix of {} bytes",
                n
            );
        }
        Ok(())
    }

    /// Decoding garbage never panics; what decodes re-encodes the same.
    fn garbage<T>(bytes: &[u8])
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        if let Ok(rec) = decode_row::<T>(bytes) {
            let again = encode_row(&rec).unwrap();
            assert_eq!(decode_row::<T>(&again).unwrap(), rec);
        }
    }

    proptest! {
        #![proptest_config(crate::proptest_config())]

        #[test]
        fn shares_round_trip(rec in share()) {
            round_trip(&rec)?;
        }

        #[test]
        fn peers_round_trip(rec in peer()) {
            round_trip(&rec)?;
        }

        #[test]
        fn transfers_round_trip(rec in transfer()) {
            round_trip(&rec)?;
        }

        #[test]
        fn garbage_is_an_error_or_a_record(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            garbage::<ShareRecord>(&bytes);
            garbage::<PeerRecord>(&bytes);
            garbage::<TransferRecord>(&bytes);
        }

        #[test]
        fn mutated_rows_never_panic(rec in transfer(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut bytes = encode_row(&rec).unwrap();
            let i = at.index(bytes.len());
            bytes[i] = b;
            garbage::<TransferRecord>(&bytes);
        }
    }
}

/// What is on disk of a transfer that is being fetched in place: its
/// private directory of incoming files and, per file in collection order,
/// the proven size and the chunks verified and synced (as the boundaries of
/// the chunk ranges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRecord {
    /// The directory the private directory is in.
    pub root: PathBuf,
    /// The private directory's name there.
    pub dir: String,
    pub sizes: Vec<Option<u64>>,
    pub done: Vec<Vec<u64>>,
}
