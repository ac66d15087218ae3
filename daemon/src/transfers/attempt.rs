//! One attempt of a fetch: connect, learn the collection and its sizes,
//! fetch the missing chunks. Only missing ranges are ever requested, so an
//! attempt after an interruption continues where the last one stopped.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use iroh::{endpoint::Connection, Endpoint};
use iroh_blobs::{
    api::{
        proto::{Bitfield, BlobStatus},
        remote::GetProgressItem,
        Store,
    },
    format::collection::Collection,
    get::{
        fsm::{self, DecodeError},
        GetError,
    },
    protocol::{ChunkRanges, ChunkRangesExt, GetRequest, ERR_PERMISSION},
    BlobFormat, Hash,
};

use super::plan::Entry;
use crate::ticket::Ticket;

/// Verified payload bytes `held` of `entries`.
pub fn held_bytes(entries: &[Entry], held: &[Bitfield]) -> u64 {
    entries.iter().zip(held).fold(0u64, |sum, (e, b)| {
        sum.saturating_add(b.total_bytes().min(e.size))
    })
}

/// Largest blob iroh-blobs' store keeps in memory, then in its database,
/// instead of in files (its default inline limit).
const STORE_INLINE_MAX: u64 = 16 * 1024;
/// Store lookups in flight at once: the store answers them in batches.
const LOOKUPS_AT_ONCE: usize = 64;
/// Collection root plus names may not exceed this (about 2M files).
pub const MAX_METADATA: u64 = 64 * 1024 * 1024;
/// Payload of one last-chunk (size) request per blob.
const LAST_CHUNK: u64 = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How an attempt failed; `Permanent` errors end the transfer.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// What the attempt learned about the content.
#[derive(Debug, Clone)]
pub struct Content {
    pub entries: Vec<Entry>,
    /// What the store's database recorded for each entry when the content
    /// was learned (the size pass stores nothing), for [`Session::holdings`].
    recorded: Vec<BlobStatus>,
}

impl Content {
    pub fn total(&self) -> u64 {
        // Saturating: a hostile hash can describe a blob of any size.
        self.entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.size))
    }
}

fn store_err(e: impl std::fmt::Display) -> AttemptError {
    AttemptError::Transient(format!("blob store: {e}"))
}

/// Dials the provider on the blobs ALPN.
pub async fn connect(endpoint: &Endpoint, ticket: &Ticket) -> Result<Connection, AttemptError> {
    let provider = ticket.provider();
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        endpoint.connect(ticket.addr.clone(), iroh_blobs::ALPN),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(AttemptError::Transient(format!(
            "cannot reach {provider}: {e}"
        ))),
        Err(_) => Err(AttemptError::Transient(format!(
            "cannot reach {provider}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// What the store's database records for each of `hashes`: one lookup
/// each, 64 in flight, where `observe` wakes a per-blob actor (~40 us
/// each, which adds up over 10,000 files). May lag what just arrived; the
/// worst that does is one more size request or one more range asked for.
async fn recorded(store: &Store, hashes: Vec<Hash>) -> Result<Vec<BlobStatus>, AttemptError> {
    futures::stream::iter(hashes)
        .map(|hash| {
            let store = store.clone();
            async move { store.blobs().status(hash).await.map_err(store_err) }
        })
        .buffered(LOOKUPS_AT_ONCE)
        .try_collect()
        .await
}

/// The verified size a recorded status gives, if any.
fn recorded_size(status: &BlobStatus) -> Option<u64> {
    match status {
        BlobStatus::Complete { size } => Some(*size),
        BlobStatus::Partial { size } => *size,
        BlobStatus::NotFound => None,
    }
}

/// Which chunks of one blob of `size` bytes the store holds, given what
/// its database recorded (see [`Session::holdings`]).
async fn held(
    store: Store,
    hash: Hash,
    size: u64,
    status: BlobStatus,
) -> Result<Bitfield, AttemptError> {
    Ok(match status {
        BlobStatus::Complete { size } => Bitfield::complete(size),
        BlobStatus::NotFound if size <= STORE_INLINE_MAX => Bitfield::empty(),
        _ => store.observe(hash).await.map_err(store_err)?,
    })
}

/// One attempt's view of the provider: our store, the connection, the ticket.
pub struct Session<'a> {
    pub store: &'a Store,
    pub conn: Connection,
    pub ticket: &'a Ticket,
    pub me: &'a Endpoint,
}

impl Session<'_> {
    /// Maps a get failure to transient or permanent, with a message a
    /// person can act on.
    fn classify(&self, e: &GetError) -> AttemptError {
        if e.iroh_error_code() == Some(ERR_PERMISSION) {
            return AttemptError::Permanent(format!(
                "refused by {}: this endpoint ({}) may not fetch this share (it is not shared with you, or you are not in its rings)",
                self.ticket.provider(),
                self.me.id()
            ));
        }
        if let Some(io) = e.local_write() {
            return AttemptError::Permanent(format!("cannot write to the local store: {io}"));
        }
        match e {
            GetError::BadRequest { .. } => {
                AttemptError::Permanent(format!("the provider sent invalid content: {e}"))
            }
            // QUIC already rules out corruption on the way: the provider
            // itself serves bytes that are not what the ticket names, and
            // asking again would get the same.
            GetError::Decode {
                source: DecodeError::LeafHashMismatch { .. } | DecodeError::ParentHashMismatch { .. },
                ..
            } => AttemptError::Permanent(format!(
                "{} sent data that does not match the ticket's hash ({e}); nothing unverified was kept",
                self.ticket.provider()
            )),
            _ => AttemptError::Transient(format!("transfer interrupted: {e}")),
        }
    }

    /// Runs a small request to completion, counting payload into
    /// `received` and failing permanently past `limit` bytes.
    async fn small_get(
        &self,
        req: GetRequest,
        limit: u64,
        received: &mut u64,
    ) -> Result<(), AttemptError> {
        let mut stream = self
            .store
            .remote()
            .execute_get(self.conn.clone(), req)
            .stream();
        let mut last = 0;
        while let Some(item) = stream.next().await {
            match item {
                GetProgressItem::Progress(n) => {
                    *received += n.saturating_sub(last);
                    last = n;
                    if n > limit {
                        return Err(AttemptError::Permanent(format!(
                            "the provider sent more than the {limit} bytes this request allows; refusing the content"
                        )));
                    }
                }
                GetProgressItem::Done(_) => return Ok(()),
                GetProgressItem::Error(e) => return Err(self.classify(&e)),
            }
        }
        Err(AttemptError::Transient(
            "request ended without a result".into(),
        ))
    }

    async fn validated_size(&self, hash: Hash) -> Result<Option<u64>, AttemptError> {
        let bf = self.store.observe(hash).await.map_err(store_err)?;
        Ok(bf.validated_size())
    }

    /// Which chunks of each entry the store holds. Complete and absent
    /// blobs are answered by the database; partial ones, and absent ones
    /// big enough to have been written to a file the database does not
    /// list yet, by the blob's own bitfield. (An absent small blob may be
    /// held in memory unrecorded: it is asked for again, at most 16 KiB.)
    pub async fn holdings(&self, content: &Content) -> Result<Vec<Bitfield>, AttemptError> {
        let wanted: Vec<(Hash, u64, BlobStatus)> = content
            .entries
            .iter()
            .zip(&content.recorded)
            .map(|(e, status)| (Hash::from_bytes(e.hash), e.size, status.clone()))
            .collect();
        futures::stream::iter(wanted)
            .map(|(hash, size, status)| held(self.store.clone(), hash, size, status))
            .buffered(LOOKUPS_AT_ONCE)
            .try_collect()
            .await
    }

    /// Verified sizes of the hash-seq children `wanted` (index, hash), in
    /// order, from one request for each one's last chunk. The chunks are
    /// checked against their hashes (that proves the size) and dropped,
    /// not stored: a partial entry costs the store files on disk, which
    /// for thousands of small files took longer than fetching them.
    async fn remote_sizes(
        &self,
        root: Hash,
        wanted: &[(u64, Hash)],
        received: &mut u64,
    ) -> Result<Vec<u64>, AttemptError> {
        let mut req = GetRequest::builder();
        for (index, _) in wanted {
            req = req.child(*index, ChunkRanges::last_chunk());
        }
        let fail = |e: GetError| self.classify(&e);
        let connected = fsm::start(self.conn.clone(), req.build(root), Default::default())
            .next()
            .await
            .map_err(|e| fail(e.into()))?;
        let mut next = match connected.next().await.map_err(|e| fail(e.into()))? {
            fsm::ConnectedNext::StartChild(child) => fsm::EndBlobNext::MoreChildren(child),
            fsm::ConnectedNext::StartRoot(root) => fsm::EndBlobNext::Closing(root.finish()),
            fsm::ConnectedNext::Closing(closing) => fsm::EndBlobNext::Closing(closing),
        };
        let mut sizes = Vec::with_capacity(wanted.len());
        let mut expected = wanted.iter();
        let closing = loop {
            let child = match next {
                fsm::EndBlobNext::MoreChildren(child) => child,
                fsm::EndBlobNext::Closing(closing) => break closing,
            };
            // The machine walks our own request: position 0 is the root,
            // child `index` is at `index + 1`.
            let Some((index, hash)) = expected.next().filter(|(i, _)| i + 1 == child.offset())
            else {
                return Err(AttemptError::Transient(format!(
                    "size request out of step at position {}",
                    child.offset()
                )));
            };
            let (content, size) = child.next(*hash).next().await.map_err(|e| fail(e.into()))?;
            let end = content.drain().await.map_err(|e| fail(e.into()))?;
            sizes.push(size);
            tracing::trace!(index, size, "size learned");
            next = end.next();
        };
        let stats = closing.next().await.map_err(|e| fail(e.into()))?;
        *received += stats.payload_bytes_read;
        if sizes.len() != wanted.len() {
            return Err(AttemptError::Transient(format!(
                "the provider sent {} of {} sizes",
                sizes.len(),
                wanted.len()
            )));
        }
        Ok(sizes)
    }

    /// Fetches (if needed) the collection root and names, then every
    /// file's verified size (one last-chunk request for all unknown sizes).
    pub async fn learn_content(&self, received: &mut u64) -> Result<Content, AttemptError> {
        let root = self.ticket.content.hash;
        if self.ticket.content.format == BlobFormat::Raw {
            if self.validated_size(root).await?.is_none() {
                let req = GetRequest::builder()
                    .root(ChunkRanges::last_chunk())
                    .build(root);
                self.small_get(req, LAST_CHUNK, received).await?;
            }
            let size = self
                .validated_size(root)
                .await?
                .ok_or_else(|| AttemptError::Transient("provider did not send the size".into()))?;
            let name = self.ticket.name.clone().unwrap_or_else(|| root.to_string());
            return Ok(Content {
                entries: vec![Entry {
                    name,
                    hash: *root.as_bytes(),
                    size,
                }],
                recorded: recorded(self.store, vec![root]).await?,
            });
        }

        let meta_req = GetRequest::builder()
            .root(ChunkRanges::all())
            .child(0, ChunkRanges::all())
            .build(root);
        let local = self
            .store
            .remote()
            .local_for_request(meta_req)
            .await
            .map_err(store_err)?;
        if !local.is_complete() {
            self.small_get(local.missing(), MAX_METADATA, received)
                .await?;
        }
        let collection = Collection::load(root, self.store).await.map_err(|e| {
            AttemptError::Permanent(format!(
                "the ticket does not point at a valid collection: {e}"
            ))
        })?;
        let hashes: Vec<Hash> = collection.iter().map(|(_, hash)| *hash).collect();
        let recorded = recorded(self.store, hashes).await?;
        let mut sizes: Vec<Option<u64>> = recorded.iter().map(recorded_size).collect();
        let unknown: Vec<(u64, Hash)> = collection
            .iter()
            .zip(&sizes)
            .enumerate()
            .filter(|(_, (_, size))| size.is_none())
            // hash-seq index 0 is the names blob, files start at 1
            .map(|(i, ((_, hash), _))| (i as u64 + 1, *hash))
            .collect();
        if !unknown.is_empty() {
            let learned = self.remote_sizes(root, &unknown, received).await?;
            let mut learned = learned.into_iter();
            for size in sizes.iter_mut().filter(|s| s.is_none()) {
                *size = learned.next();
            }
        }
        let mut entries = Vec::with_capacity(collection.len());
        for ((name, hash), size) in collection.iter().zip(sizes) {
            let size = size.ok_or_else(|| {
                AttemptError::Transient(format!("provider did not send the size of {name:?}"))
            })?;
            entries.push(Entry {
                name: name.clone(),
                hash: *hash.as_bytes(),
                size,
            });
        }
        Ok(Content { entries, recorded })
    }

    /// Fetches every chunk `held` lacks in one request, calling
    /// `progress` with this attempt's payload byte count as it grows.
    /// `progress` may stop the fetch by returning an error.
    pub async fn fetch_missing(
        &self,
        held: &[Bitfield],
        mut progress: impl FnMut(u64) -> Result<(), AttemptError>,
    ) -> Result<(), AttemptError> {
        if held.iter().all(Bitfield::is_complete) {
            return Ok(());
        }
        let missing = |b: &Bitfield| ChunkRanges::all().difference(&b.ranges);
        let hash = self.ticket.content.hash;
        let request = if self.ticket.content.format == BlobFormat::Raw {
            GetRequest::builder().root(missing(&held[0])).build(hash)
        } else {
            // hash-seq index 0 is the names blob (held already), files from 1
            held.iter()
                .enumerate()
                .filter(|(_, b)| !b.is_complete())
                .fold(GetRequest::builder(), |r, (i, b)| {
                    r.child(i as u64 + 1, missing(b))
                })
                .build(hash)
        };
        let mut stream = self
            .store
            .remote()
            .execute_get(self.conn.clone(), request)
            .stream();
        while let Some(item) = stream.next().await {
            match item {
                GetProgressItem::Progress(n) => progress(n)?,
                GetProgressItem::Done(_) => return Ok(()),
                GetProgressItem::Error(e) => return Err(self.classify(&e)),
            }
        }
        Err(AttemptError::Transient(
            "transfer ended without a result".into(),
        ))
    }
}
