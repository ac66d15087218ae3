//! One attempt of a fetch: connect, learn the collection and its sizes,
//! fetch the missing chunks. Only missing ranges are ever requested, so an
//! attempt after an interruption continues where the last one stopped.

use std::time::Duration;

use futures::StreamExt;
use iroh::{endpoint::Connection, Endpoint};
use iroh_blobs::{
    api::{remote::GetProgressItem, Store},
    format::collection::Collection,
    get::{fsm::DecodeError, GetError},
    hashseq::HashSeq,
    protocol::{ChunkRanges, ChunkRangesExt, GetRequest, ERR_PERMISSION},
    BlobFormat, Hash,
};

use super::plan::Entry;
use crate::ticket::Ticket;

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
    /// Bytes of root and names that are not file payload.
    pub overhead: u64,
}

impl Content {
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
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
                    hash: root,
                    size,
                }],
                overhead: 0,
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
        let mut overhead = self.validated_size(root).await?.unwrap_or(0);
        let seq = self.store.get_bytes(root).await.map_err(store_err)?;
        if let Some(meta) = HashSeq::try_from(seq).ok().and_then(|s| s.iter().next()) {
            overhead += self.validated_size(meta).await?.unwrap_or(0);
        }

        let mut sizes = Vec::with_capacity(collection.len());
        for (_, hash) in collection.iter() {
            sizes.push(self.validated_size(*hash).await?);
        }
        let unknown = sizes.iter().filter(|s| s.is_none()).count() as u64;
        if unknown > 0 {
            let mut b = GetRequest::builder();
            for (i, s) in sizes.iter().enumerate() {
                if s.is_none() {
                    // hash-seq index 0 is the names blob, files start at 1
                    b = b.child(i as u64 + 1, ChunkRanges::last_chunk());
                }
            }
            self.small_get(b.build(root), unknown * LAST_CHUNK, received)
                .await?;
            for (i, (_, hash)) in collection.iter().enumerate() {
                if sizes[i].is_none() {
                    sizes[i] = self.validated_size(*hash).await?;
                }
            }
        }
        let mut entries = Vec::with_capacity(collection.len());
        for ((name, hash), size) in collection.iter().zip(sizes) {
            let size = size.ok_or_else(|| {
                AttemptError::Transient(format!("provider did not send the size of {name:?}"))
            })?;
            entries.push(Entry {
                name: name.clone(),
                hash: *hash,
                size,
            });
        }
        Ok(Content { entries, overhead })
    }

    /// Verified payload bytes held locally for the content (files only).
    pub async fn local_payload(&self, overhead: u64) -> Result<u64, AttemptError> {
        let local = self
            .store
            .remote()
            .local(self.ticket.content)
            .await
            .map_err(store_err)?;
        Ok(local.local_bytes().saturating_sub(overhead))
    }

    /// Fetches every missing chunk, calling `progress` with this attempt's
    /// payload byte count as it grows.
    /// `progress` may stop the fetch by returning an error.
    pub async fn fetch_missing(
        &self,
        mut progress: impl FnMut(u64) -> Result<(), AttemptError>,
    ) -> Result<(), AttemptError> {
        let mut stream = self
            .store
            .remote()
            .fetch(self.conn.clone(), self.ticket.content)
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
