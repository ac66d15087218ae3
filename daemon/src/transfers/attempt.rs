//! One attempt of a fetch: connect, learn the collection and its sizes,
//! fetch the missing chunks. Only missing ranges are ever requested, so an
//! attempt after an interruption continues where the last one stopped.

use std::time::Duration;

use futures::StreamExt;
use iroh::{endpoint::Connection, Endpoint};
use iroh_blobs::{
    api::{remote::GetProgressItem, Store},
    format::collection::Collection,
    get::GetError,
    hashseq::HashSeq,
    protocol::{ChunkRanges, ChunkRangesExt, GetRequest, ERR_PERMISSION},
    BlobFormat, Hash, HashAndFormat,
};

use super::export::Entry;
use crate::ticket::Ticket;

/// Collection root plus names may not exceed this (about 2M files).
pub const MAX_METADATA: u64 = 64 * 1024 * 1024;
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

/// Maps a get failure to transient or permanent, with a message a person can act on.
pub fn classify(e: &GetError, ticket: &Ticket, me: &Endpoint) -> AttemptError {
    if e.iroh_error_code() == Some(ERR_PERMISSION) {
        return AttemptError::Permanent(format!(
            "refused by {}: this endpoint ({}) may not fetch this share (it is not shared with you, or you are not in its rings)",
            ticket.provider(),
            me.id()
        ));
    }
    if let Some(io) = e.local_write() {
        return AttemptError::Permanent(format!("cannot write to the local store: {io}"));
    }
    match e {
        GetError::BadRequest { .. } => {
            AttemptError::Permanent(format!("the provider sent invalid content: {e}"))
        }
        _ => AttemptError::Transient(format!("transfer interrupted: {e}")),
    }
}

/// Dials the provider on the blobs ALPN.
pub async fn connect(endpoint: &Endpoint, ticket: &Ticket) -> Result<Connection, AttemptError> {
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        endpoint.connect(ticket.addr.clone(), iroh_blobs::ALPN),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(AttemptError::Transient(format!(
            "cannot reach {}: {e}",
            ticket.provider()
        ))),
        Err(_) => Err(AttemptError::Transient(format!(
            "cannot reach {}: no answer within {}s",
            ticket.provider(),
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Runs a small request to completion, counting payload into `received`
/// and failing permanently past `limit` bytes.
async fn small_get(
    store: &Store,
    conn: &Connection,
    req: GetRequest,
    limit: u64,
    received: &mut u64,
    ticket: &Ticket,
    me: &Endpoint,
) -> Result<(), AttemptError> {
    let mut stream = store.remote().execute_get(conn.clone(), req).stream();
    let mut last = 0;
    while let Some(item) = stream.next().await {
        match item {
            GetProgressItem::Progress(n) => {
                *received += n.saturating_sub(last);
                last = n;
                if n > limit {
                    return Err(AttemptError::Permanent(format!(
                        "the collection's metadata is larger than {limit} bytes; refusing to fetch it"
                    )));
                }
            }
            GetProgressItem::Done(_) => return Ok(()),
            GetProgressItem::Error(e) => return Err(classify(&e, ticket, me)),
        }
    }
    Err(AttemptError::Transient(
        "request ended without a result".into(),
    ))
}

async fn validated_size(store: &Store, hash: Hash) -> Result<Option<u64>, AttemptError> {
    let bf = store.observe(hash).await.map_err(store_err)?;
    Ok(bf.validated_size())
}

/// Fetches (if needed) the collection root and names, then every file's
/// verified size (one last-chunk request for all unknown sizes).
pub async fn learn_content(
    store: &Store,
    conn: &Connection,
    ticket: &Ticket,
    me: &Endpoint,
    received: &mut u64,
) -> Result<Content, AttemptError> {
    let root = ticket.content.hash;
    if ticket.content.format == BlobFormat::Raw {
        if validated_size(store, root).await?.is_none() {
            let req = GetRequest::builder()
                .root(ChunkRanges::last_chunk())
                .build(root);
            small_get(store, conn, req, u64::MAX, received, ticket, me).await?;
        }
        let size = validated_size(store, root)
            .await?
            .ok_or_else(|| AttemptError::Transient("provider did not send the size".into()))?;
        let name = ticket.name.clone().unwrap_or_else(|| root.to_string());
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
    let local = store
        .remote()
        .local_for_request(meta_req)
        .await
        .map_err(store_err)?;
    if !local.is_complete() {
        small_get(
            store,
            conn,
            local.missing(),
            MAX_METADATA,
            received,
            ticket,
            me,
        )
        .await?;
    }
    let collection = Collection::load(root, store).await.map_err(|e| {
        AttemptError::Permanent(format!(
            "the ticket does not point at a valid collection: {e}"
        ))
    })?;
    let mut overhead = validated_size(store, root).await?.unwrap_or(0);
    let seq = store.get_bytes(root).await.map_err(store_err)?;
    if let Some(meta) = HashSeq::try_from(seq).ok().and_then(|s| s.iter().next()) {
        overhead += validated_size(store, meta).await?.unwrap_or(0);
    }

    let mut sizes = Vec::with_capacity(collection.len());
    for (_, hash) in collection.iter() {
        sizes.push(validated_size(store, *hash).await?);
    }
    if sizes.iter().any(Option::is_none) {
        let mut b = GetRequest::builder();
        for (i, s) in sizes.iter().enumerate() {
            if s.is_none() {
                // hash-seq index 0 is the names blob, files start at 1
                b = b.child(i as u64 + 1, ChunkRanges::last_chunk());
            }
        }
        small_get(
            store,
            conn,
            b.build(root),
            MAX_METADATA,
            received,
            ticket,
            me,
        )
        .await?;
        for (i, (_, hash)) in collection.iter().enumerate() {
            if sizes[i].is_none() {
                sizes[i] = validated_size(store, *hash).await?;
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
pub async fn local_payload(
    store: &Store,
    content: HashAndFormat,
    overhead: u64,
) -> Result<u64, AttemptError> {
    let local = store.remote().local(content).await.map_err(store_err)?;
    Ok(local.local_bytes().saturating_sub(overhead))
}

/// Fetches every missing chunk, calling `progress` with this attempt's
/// payload byte count as it grows.
pub async fn fetch_missing(
    store: &Store,
    conn: Connection,
    ticket: &Ticket,
    me: &Endpoint,
    mut progress: impl FnMut(u64),
) -> Result<(), AttemptError> {
    let mut stream = store.remote().fetch(conn, ticket.content).stream();
    while let Some(item) = stream.next().await {
        match item {
            GetProgressItem::Progress(n) => progress(n),
            GetProgressItem::Done(_) => return Ok(()),
            GetProgressItem::Error(e) => return Err(classify(&e, ticket, me)),
        }
    }
    Err(AttemptError::Transient(
        "transfer ended without a result".into(),
    ))
}
