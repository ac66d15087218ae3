//! Answers GET and GET_MANY: the gate decides (through the provider's
//! event machinery, as before), then every blob is sent from where it is:
//! a shared file from the content layer (validated as it is read), the
//! rest (collection metadata, handed copies, shares made before the layer)
//! from the store. Progress goes to the gate's request tracker, so uploads
//! are listed and counted as any other.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bao_tree::{io::mixed::EncodedItem, ChunkRanges};
use futures::StreamExt;
use iroh::endpoint::{RecvStream, SendStream, VarInt};
use iroh_blobs::{
    api::Store,
    hashseq::HashSeq,
    protocol::{GetManyRequest, GetRequest, ERR_INTERNAL},
    provider::{
        events::{HasErrorCode, RequestTracker},
        StreamPair, TransferStats,
    },
    util::SendStream as _,
    Hash,
};
use tracing::debug;

use crate::{
    content::{self, ContentFile, Listed},
    limits::Uplink,
};

type Pair = StreamPair<RecvStream, Paced>;

/// Time a peer has, once it opened a stream, to send its whole request and
/// finish its side. The provider itself would wait for ever.
pub const REQUEST_WITHIN: Duration = Duration::from_secs(10);

/// Where a request's blobs come from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub store: Store,
    pub shared: content::Shared,
}

/// A response being written, with what the tracker is told.
struct Out {
    writer: Paced,
    tracker: RequestTracker,
    t0: Instant,
    payload: u64,
    other: u64,
}

impl Out {
    fn stats(&self) -> Box<TransferStats> {
        Box::new(TransferStats {
            payload_bytes_sent: self.payload,
            other_bytes_sent: self.other,
            other_bytes_read: 0,
            duration: self.t0.elapsed(),
        })
    }
}

/// The gate's verdict on a request: a writer to answer on, or nothing
/// (refused: the stream is reset with the gate's code).
async fn admitted(pair: Pair, verdict: Result<RequestTracker, VarInt>) -> Option<Out> {
    // The peer has finished sending its request; one that holds its side
    // open gets nothing more.
    let writer = tokio::time::timeout(REQUEST_WITHIN, pair.into_writer(RequestTracker::NONE));
    let Ok(Ok(writer)) = writer.await else {
        return None;
    };
    let mut writer = writer.inner;
    match verdict {
        Ok(tracker) => Some(Out {
            writer,
            tracker,
            t0: Instant::now(),
            payload: 0,
            other: 0,
        }),
        Err(code) => {
            writer.reset(code).ok();
            None
        }
    }
}

/// Serves a GET of a collection (its root and child ranges) or of one blob.
pub async fn get(pair: Pair, sources: Sources, req: GetRequest) {
    let verdict = pair.get_request(|| req.clone()).await;
    let Some(mut out) = admitted(pair, verdict.map_err(|e| e.code())).await else {
        return;
    };
    let listed = sources.listed(vec![req.hash]).await;
    let sent = send_get(&sources, &listed, &req, &mut out).await;
    end(out, sent).await;
}

/// Serves a GET_MANY of raw blobs.
pub async fn get_many(pair: Pair, sources: Sources, req: GetManyRequest) {
    let verdict = pair.get_many_request(|| req.clone()).await;
    let Some(mut out) = admitted(pair, verdict.map_err(|e| e.code())).await else {
        return;
    };
    let listed = sources.listed(req.hashes.clone()).await;
    let mut sent = Ok(());
    let ranges = req.ranges.iter_infinite();
    for (index, (hash, ranges)) in req.hashes.iter().zip(ranges).enumerate() {
        if ranges.is_empty() {
            continue;
        }
        sent = send_blob(&sources, &listed, *hash, ranges, index as u64, &mut out).await;
        if sent.is_err() {
            break;
        }
    }
    end(out, sent).await;
}

async fn send_get(
    sources: &Sources,
    listed: &Arc<Listed>,
    req: &GetRequest,
    out: &mut Out,
) -> Result<(), VarInt> {
    let mut seq: Option<HashSeq> = None;
    for (offset, ranges) in req.ranges.iter_non_empty_infinite() {
        let hash = if offset == 0 {
            req.hash
        } else {
            if seq.is_none() {
                let bytes = sources
                    .store
                    .get_bytes(req.hash)
                    .await
                    .map_err(|_| ERR_INTERNAL)?;
                seq = Some(HashSeq::try_from(bytes).map_err(|_| ERR_INTERNAL)?);
            }
            match seq.as_ref().and_then(|s| s.get(offset as usize - 1)) {
                Some(hash) => hash,
                None => break,
            }
        };
        send_blob(sources, listed, hash, ranges, offset, out).await?;
    }
    Ok(())
}

/// The end of a response: the tracker told, the stream finished or reset.
async fn end(mut out: Out, sent: Result<(), VarInt>) {
    match sent {
        Ok(()) => {
            out.tracker.transfer_completed(|| out.stats()).await.ok();
            out.writer.sync().await.ok();
        }
        Err(code) => {
            out.writer.reset(code).ok();
            out.tracker.transfer_aborted(|| out.stats()).await.ok();
        }
    }
}

impl Sources {
    /// The shares of a request's roots, read once (off the runtime).
    async fn listed(&self, roots: Vec<Hash>) -> Arc<Listed> {
        let shared = self.shared.clone();
        let listed = tokio::task::spawn_blocking(move || shared.listed(&roots)).await;
        Arc::new(listed.unwrap_or_else(|_| self.shared.nothing()))
    }
}

/// Sends blob `hash` from the content layer if a share of the request
/// lists it there, else from the store.
async fn send_blob(
    sources: &Sources,
    listed: &Arc<Listed>,
    hash: Hash,
    ranges: &ChunkRanges,
    index: u64,
    out: &mut Out,
) -> Result<(), VarInt> {
    let listed = listed.clone();
    let file = tokio::task::spawn_blocking(move || listed.file(&hash))
        .await
        .ok()
        .flatten();
    match file {
        Some(file) => send_file(file, ranges.clone(), index, out).await,
        None => send_stored(&sources.store, hash, ranges.clone(), index, out).await,
    }
}

async fn send_file(
    file: ContentFile,
    ranges: ChunkRanges,
    index: u64,
    out: &mut Out,
) -> Result<(), VarInt> {
    let hash = Hash::from_bytes(file.hash);
    out.tracker
        .transfer_started(index, &hash, file.size)
        .await
        .ok();
    let payload = content::ranges::payload(&ranges, file.size);
    let (mut pieces, encoding) = file.stream(ranges);
    let mut sent = 0u64;
    while let Some(bytes) = pieces.recv().await {
        let len = bytes.len() as u64;
        if out.writer.send_bytes(bytes).await.is_err() {
            return Err(ERR_INTERNAL);
        }
        // The encoding interleaves the size and parents with the data:
        // the tracker is told payload bytes, never more than the ranges
        // hold.
        let before = sent.min(payload);
        sent += len;
        let now = sent.min(payload);
        out.payload += now - before;
        out.other += len - (now - before);
        if let Err(e) = out.tracker.transfer_progress(now - before, now).await {
            return Err(e.code());
        }
    }
    drop(pieces);
    match encoding.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            debug!(%hash, "a shared file could not be served: {e}");
            Err(ERR_INTERNAL)
        }
        Err(_) => Err(ERR_INTERNAL),
    }
}

async fn send_stored(
    store: &Store,
    hash: Hash,
    ranges: ChunkRanges,
    index: u64,
    out: &mut Out,
) -> Result<(), VarInt> {
    let mut items = std::pin::pin!(store.export_bao(hash, ranges).stream());
    while let Some(item) = items.next().await {
        let sent = match item {
            EncodedItem::Size(size) => {
                out.tracker.transfer_started(index, &hash, size).await.ok();
                out.other += 8;
                out.writer.send(&size.to_le_bytes()).await
            }
            EncodedItem::Parent(p) => {
                let mut pair = [0u8; 64];
                pair[..32].copy_from_slice(p.pair.0.as_bytes());
                pair[32..].copy_from_slice(p.pair.1.as_bytes());
                out.other += 64;
                out.writer.send(&pair).await
            }
            EncodedItem::Leaf(leaf) => {
                let len = leaf.data.len() as u64;
                out.payload += len;
                let sent = out.writer.send_bytes(leaf.data).await;
                let end_offset = leaf.offset + len;
                if let Err(e) = out.tracker.transfer_progress(len, end_offset).await {
                    return Err(e.code());
                }
                sent
            }
            EncodedItem::Error(e) => {
                debug!(%hash, "cannot read a stored blob: {e}");
                return Err(ERR_INTERNAL);
            }
            EncodedItem::Done => break,
        };
        sent.map_err(|_| ERR_INTERNAL)?;
    }
    Ok(())
}

/// A request stream's writer whose every byte passes the upload limits
/// first: bytes wait before they are written, so QUIC never holds more
/// than one send ahead of the limit. Unlimited costs an atomic load a send.
pub(super) struct Paced {
    pub(super) inner: SendStream,
    pub(super) uplink: Uplink,
}

impl iroh_blobs::util::SendStream for Paced {
    async fn send_bytes(&mut self, bytes: bytes::Bytes) -> std::io::Result<()> {
        self.uplink.take(bytes.len() as u64).await;
        iroh_blobs::util::SendStream::send_bytes(&mut self.inner, bytes).await
    }

    async fn send(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.uplink.take(buf.len() as u64).await;
        iroh_blobs::util::SendStream::send(&mut self.inner, buf).await
    }

    async fn sync(&mut self) -> std::io::Result<()> {
        iroh_blobs::util::SendStream::sync(&mut self.inner).await
    }

    fn reset(&mut self, code: iroh::endpoint::VarInt) -> std::io::Result<()> {
        iroh_blobs::util::SendStream::reset(&mut self.inner, code)
    }

    async fn stopped(&mut self) -> std::io::Result<Option<iroh::endpoint::VarInt>> {
        iroh_blobs::util::SendStream::stopped(&mut self.inner).await
    }

    fn id(&self) -> u64 {
        iroh_blobs::util::SendStream::id(&self.inner)
    }
}
