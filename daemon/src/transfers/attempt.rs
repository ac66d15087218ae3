//! One attempt of a fetch: connect, learn the collection, prove the sizes,
//! fetch the missing chunks into the transfer's own files
//! ([`super::incoming`]). Only missing ranges are ever requested, so an
//! attempt after an interruption continues where the last one stopped.

use std::time::Duration;

use bao_tree::{io::BaoContentItem, ChunkRanges};
use iroh::{endpoint::Connection, Endpoint};
use iroh_blobs::{
    api::{remote::GetProgressItem, Store},
    format::collection::Collection,
    get::{
        fsm::{self, DecodeError},
        GetError,
    },
    protocol::{GetRequest, ERR_PERMISSION},
    BlobFormat, Hash,
};

use super::{
    incoming::{Item, Sink},
    Selection,
};
use crate::ticket::Ticket;

/// Collection root plus names may not exceed this (about 2M files).
pub const MAX_METADATA: u64 = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How an attempt failed. Each kind says whether another attempt may do
/// better; the text is for `last_error`, for a person to act on, and the
/// error underneath, when there is one, stays reachable as the source.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The provider cannot be reached now.
    #[error("{0}")]
    Unreachable(#[source] Cause),
    /// The connection or the response broke off.
    #[error("{0}")]
    Interrupted(#[source] Cause),
    /// The local blob store (collection metadata) failed.
    #[error("{0}")]
    Store(#[source] Cause),
    /// The provider refuses this endpoint.
    #[error("{0}")]
    Refused(#[source] Cause),
    /// The provider sent content that is not what the ticket names.
    #[error("{0}")]
    BadContent(#[source] Cause),
    /// The destination cannot take the content (names, existing files).
    #[error(transparent)]
    Destination(ringdrop_proto::place::ExportError),
    #[error("{0}")]
    NoSpace(#[source] Cause),
    /// The incoming files cannot be written.
    #[error("{0}")]
    Local(#[source] Cause),
    /// `--only` matches no file of the content.
    #[error("{0}")]
    NothingSelected(#[source] Cause),
    /// A ring member does not hold (yet) what was asked of it.
    #[error("{0}")]
    NotHeld(#[source] Cause),
    /// Blocking work of the attempt did not finish (it panicked, or the
    /// runtime is shutting down).
    #[error("a blocking task of the transfer failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Words a person can act on, and the error they came from if any. Its
/// text is the words then the error's (`last_error` keeps both); the error
/// is its source too, for whoever walks the chain.
#[derive(Debug)]
pub struct Cause {
    msg: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// `msg`, from `source`.
    pub fn of(
        msg: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            msg: msg.into(),
            source: Some(Box::new(source)),
        }
    }

    /// `source` alone: its own text says enough.
    pub fn from_err(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::of(String::new(), source)
    }
}

impl From<String> for Cause {
    fn from(msg: String) -> Self {
        Self { msg, source: None }
    }
}

impl From<&str> for Cause {
    fn from(msg: &str) -> Self {
        msg.to_string().into()
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(source) if self.msg.is_empty() => write!(f, "{source}"),
            Some(source) => write!(f, "{}: {source}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as _)
    }
}

impl AttemptError {
    /// Its kind, as metrics count it.
    pub fn kind(&self) -> crate::metrics::FailureKind {
        use crate::metrics::FailureKind as K;
        match self {
            AttemptError::Unreachable(_) => K::Unreachable,
            AttemptError::Interrupted(_) => K::Interrupted,
            AttemptError::Store(_) => K::Store,
            AttemptError::Refused(_) => K::Refused,
            AttemptError::BadContent(_) => K::BadContent,
            AttemptError::Destination(_) | AttemptError::NothingSelected(_) => K::Destination,
            AttemptError::NoSpace(_) => K::NoSpace,
            AttemptError::Local(_) | AttemptError::Task(_) => K::Local,
            AttemptError::NotHeld(_) => K::NotHeld,
        }
    }

    /// Whether another attempt (after a backoff) may succeed.
    pub fn retry(&self) -> bool {
        matches!(
            self,
            AttemptError::Unreachable(_)
                | AttemptError::Interrupted(_)
                | AttemptError::Store(_)
                | AttemptError::NotHeld(_)
        )
    }
}

/// One blob to receive: its file number, hash, proven size (`None`: the
/// request is for its last chunk, which proves it) and the chunks asked for.
#[derive(Debug, Clone)]
pub struct Want {
    pub file: usize,
    pub hash: Hash,
    pub size: Option<u64>,
    pub ranges: ChunkRanges,
}

fn store_err(e: impl std::error::Error + Send + Sync + 'static) -> AttemptError {
    AttemptError::Store(Cause::of("blob store", e))
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
        Ok(Err(e)) => Err(AttemptError::Unreachable(Cause::of(
            format!("cannot reach {provider}"),
            e,
        ))),
        Err(_) => Err(AttemptError::Unreachable(
            format!(
                "cannot reach {provider}: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )
            .into(),
        )),
    }
}

/// One attempt's view of the provider: our store (for the collection's
/// metadata), the connection, the ticket, and where in the collection each
/// of the transfer's files is (`--only` fetches some of them).
pub struct Session<'a> {
    pub store: &'a Store,
    pub conn: Connection,
    pub ticket: &'a Ticket,
    pub me: &'a Endpoint,
    /// File `i` of the transfer is file `positions[i]` of the collection;
    /// set by [`Self::select`].
    pub positions: Vec<u64>,
    /// The download limits the files' bytes pass.
    pub limit: &'a crate::limits::Downlink,
}

impl Session<'_> {
    /// Maps a get failure to its kind, with a message a person can act on.
    fn classify(&self, e: &GetError) -> AttemptError {
        self.classify_from(e, &self.ticket.provider())
    }

    /// [`Self::classify`] for a response from `provider`.
    fn classify_from(&self, e: &GetError, provider: &dyn std::fmt::Display) -> AttemptError {
        if e.iroh_error_code() == Some(crate::swarm::ERR_NOT_HELD) {
            return AttemptError::NotHeld("the member does not hold that part yet".into());
        }
        if e.iroh_error_code() == Some(ERR_PERMISSION) {
            return AttemptError::Refused(format!(
                "refused by {provider}: this endpoint ({}) may not fetch this share (it is not shared with you, or you are not in its rings)",
                self.me.id()
            ).into());
        }
        if let Some(io) = e.local_write() {
            return AttemptError::Local(format!("cannot write to the local store: {io}").into());
        }
        match e {
            GetError::BadRequest { .. } => {
                AttemptError::BadContent(format!("the provider sent invalid content: {e}").into())
            }
            // QUIC already rules out corruption on the way: the provider
            // itself serves bytes that are not what the ticket names, and
            // asking again would get the same.
            GetError::Decode {
                source: DecodeError::LeafHashMismatch { .. } | DecodeError::ParentHashMismatch { .. },
                ..
            } => AttemptError::BadContent(format!(
                "{provider} sent data that does not match the ticket's hash ({e}); nothing unverified was kept"
            ).into()),
            _ => AttemptError::Interrupted(format!("transfer interrupted: {e}").into()),
        }
    }

    /// Runs a small request into the store to completion, counting payload
    /// into `received` and failing past `limit` bytes.
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
        while let Some(item) = futures::StreamExt::next(&mut stream).await {
            match item {
                GetProgressItem::Progress(n) => {
                    *received += n.saturating_sub(last);
                    last = n;
                    if n > limit {
                        return Err(AttemptError::BadContent(format!(
                            "the provider sent more than the {limit} bytes this request allows; refusing the content"
                        ).into()));
                    }
                }
                GetProgressItem::Done(_) => return Ok(()),
                GetProgressItem::Error(e) => return Err(self.classify(&e)),
            }
        }
        Err(AttemptError::Interrupted(
            "request ended without a result".into(),
        ))
    }

    /// The collection's names and hashes, in order: fetched into the store
    /// (root and names only, pinned by the transfer's tag) unless there.
    /// A raw blob is one file named after the ticket.
    pub async fn learn_collection(
        &self,
        received: &mut u64,
    ) -> Result<Vec<(String, Hash)>, AttemptError> {
        let root = self.ticket.content.hash;
        if self.ticket.content.format == BlobFormat::Raw {
            let name = self.ticket.name.clone().unwrap_or_else(|| root.to_string());
            return Ok(vec![(name, root)]);
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
            AttemptError::BadContent(
                format!("the ticket does not point at a valid collection: {e}").into(),
            )
        })?;
        Ok(collection.into_iter().collect())
    }

    /// Keeps the files of `named` that `only` selects, in collection order,
    /// and remembers where each is; fails when it selects none.
    pub fn select(
        &mut self,
        named: Vec<(String, Hash)>,
        only: &Selection,
    ) -> Result<Vec<(String, Hash)>, AttemptError> {
        let all = named.len();
        let (positions, chosen): (Vec<u64>, Vec<(String, Hash)>) = named
            .into_iter()
            .enumerate()
            .filter(|(_, (name, _))| only.selects(name))
            .map(|(i, n)| (i as u64, n))
            .unzip();
        if chosen.is_empty() {
            return Err(AttemptError::NothingSelected(
                format!("--only selects none of the {all} files of this share: see them with `ringdropctl remote ls` or the sender's `shares show`").into(),
            ));
        }
        self.positions = positions;
        Ok(chosen)
    }

    /// Receives `wants` (in file order) in one request, handing every
    /// verified item to `sink` and calling `on_leaf(file, offset, len)` for
    /// each leaf (it may stop the fetch with an error). Returns the sizes
    /// this proved (`Want::size` was `None`).
    pub async fn receive(
        &self,
        wants: &[Want],
        sink: &Sink,
        on_leaf: impl FnMut(usize, u64, usize) -> Result<(), AttemptError>,
    ) -> Result<Vec<(usize, u64)>, AttemptError> {
        self.receive_on(&self.conn, self.limit, wants, sink, on_leaf)
            .await
    }

    /// [`Self::receive`] from the provider at the other end of `conn`,
    /// through its download limits `limit`.
    pub async fn receive_on(
        &self,
        conn: &Connection,
        limit: &crate::limits::Downlink,
        wants: &[Want],
        sink: &Sink,
        mut on_leaf: impl FnMut(usize, u64, usize) -> Result<(), AttemptError>,
    ) -> Result<Vec<(usize, u64)>, AttemptError> {
        let mut proven = Vec::new();
        if wants.is_empty() {
            return Ok(proven);
        }
        let raw = self.ticket.content.format == BlobFormat::Raw;
        let request = self.request_for(wants);
        let provider = conn.remote_id();
        let fail = |e: GetError| self.classify_from(&e, &provider);
        let connected = fsm::start(conn.clone(), request, Default::default())
            .next()
            .await
            .map_err(|e| fail(e.into()))?;
        let mut expected = wants.iter();
        let mut next = match connected.next().await.map_err(|e| fail(e.into()))? {
            fsm::ConnectedNext::StartRoot(start) if raw => {
                let want = expected.next().filter(|w| w.file == 0);
                let want = want.ok_or_else(|| out_of_step(0))?;
                let end = self
                    .blob(
                        start.next(),
                        want,
                        (sink, limit, &provider),
                        &mut on_leaf,
                        &mut proven,
                    )
                    .await?;
                end.next()
            }
            fsm::ConnectedNext::StartRoot(start) => fsm::EndBlobNext::Closing(start.finish()),
            fsm::ConnectedNext::StartChild(child) => fsm::EndBlobNext::MoreChildren(child),
            fsm::ConnectedNext::Closing(closing) => fsm::EndBlobNext::Closing(closing),
        };
        let closing = loop {
            let child = match next {
                fsm::EndBlobNext::MoreChildren(child) => child,
                fsm::EndBlobNext::Closing(closing) => break closing,
            };
            // The machine walks our own request: position 0 is the root,
            // hash-seq index i at i + 1, collection file f (index f + 1)
            // at f + 2.
            let Some(want) = expected
                .next()
                .filter(|w| self.position(w) + 2 == child.offset())
            else {
                return Err(out_of_step(child.offset()));
            };
            let header = child.next(want.hash);
            let end = self
                .blob(
                    header,
                    want,
                    (sink, limit, &provider),
                    &mut on_leaf,
                    &mut proven,
                )
                .await?;
            next = end.next();
        };
        closing.next().await.map_err(|e| fail(e.into()))?;
        if expected.next().is_some() {
            return Err(AttemptError::Interrupted(
                "the provider ended the response early".into(),
            ));
        }
        Ok(proven)
    }

    /// The request for `wants`: the root's ranges for a raw blob, else each
    /// file's child of the hash sequence (index 0 is the names blob, files
    /// from 1).
    fn request_for(&self, wants: &[Want]) -> GetRequest {
        let root = self.ticket.content.hash;
        if self.ticket.content.format == BlobFormat::Raw {
            return GetRequest::builder()
                .root(wants[0].ranges.clone())
                .build(root);
        }
        wants
            .iter()
            .fold(GetRequest::builder(), |r, w| {
                r.child(self.position(w) + 1, w.ranges.clone())
            })
            .build(root)
    }

    /// Where in the collection the file `want` is for is.
    fn position(&self, want: &Want) -> u64 {
        self.positions
            .get(want.file)
            .copied()
            .unwrap_or(want.file as u64)
    }

    /// Receives one blob of a response.
    async fn blob(
        &self,
        header: fsm::AtBlobHeader,
        want: &Want,
        (sink, limit, provider): (&Sink, &crate::limits::Downlink, &iroh::EndpointId),
        on_leaf: &mut impl FnMut(usize, u64, usize) -> Result<(), AttemptError>,
        proven: &mut Vec<(usize, u64)>,
    ) -> Result<fsm::AtEndBlob, AttemptError> {
        let fail = |e: GetError| self.classify_from(&e, provider);
        let (mut content, size) = header.next().await.map_err(|e| fail(e.into()))?;
        if want.size.is_some_and(|known| known != size) {
            return Err(AttemptError::BadContent(format!(
                "{provider} declares a size of {size} bytes for {}, which an earlier response proved to be {} bytes",
                want.hash,
                want.size.unwrap_or_default()
            ).into()));
        }
        loop {
            match content.next().await {
                fsm::BlobContentNext::More((more, item)) => {
                    let item = item.map_err(|e| fail(e.into()))?;
                    if let BaoContentItem::Leaf(leaf) = &item {
                        on_leaf(want.file, leaf.offset, leaf.data.len())?;
                        // Not reading on holds the provider back (QUIC's
                        // flow control): the limit is the receiver's.
                        limit.take(leaf.data.len() as u64).await;
                    }
                    if !sink.send(Item::from_content(want.file, item)).await {
                        return Err(AttemptError::Local("the writer stopped".into()));
                    }
                    content = more;
                }
                fsm::BlobContentNext::Done(end) => {
                    if want.size.is_none() {
                        // The last chunk was verified: the size is proven.
                        proven.push((want.file, size));
                        if !sink
                            .send(Item::Size {
                                file: want.file,
                                size,
                            })
                            .await
                        {
                            return Err(AttemptError::Local("the writer stopped".into()));
                        }
                    }
                    return Ok(end);
                }
            }
        }
    }
}

fn out_of_step(position: u64) -> AttemptError {
    AttemptError::Interrupted(
        format!("the response is out of step with the request at position {position}").into(),
    )
}
