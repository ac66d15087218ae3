//! Fetch from many: the missing chunks of a transfer are cut into pieces
//! (1 MiB of one file; small files go several to a request) and taken from
//! every provider at once: the ring owner (who has everything) and the
//! ring's members that hold them (each says what it holds, asked every
//! half second). Each provider has a bounded number of requests in flight;
//! a provider picks the pending pieces it holds that the fewest others
//! hold (rarest first, ties broken by a random order of this fetch's own,
//! so fetchers spread over the owner's pieces); when nothing is pending,
//! an idle provider asks again for a piece in flight elsewhere (the last
//! ones are asked twice). Every range is verified as it arrives, by the
//! same decoder as a single-provider fetch; a member that fails or sends
//! data that does not match is dropped and its pieces go to others; a
//! member that does not hold a piece after all is asked what it holds
//! again. The owner refusing ends the fetch, as it does with one provider.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use bao_tree::{ChunkNum, ChunkRanges};
use futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, StreamExt};
use iroh::{endpoint::Connection, EndpointId};
use iroh_blobs::Hash;
use tracing::{debug, info, warn};

use super::{
    attempt::{AttemptError, Session, Want},
    incoming::Sink,
};
use crate::limits::Downlink;

/// Chunks (1 KiB each) of one piece: 256 KiB, so that a piece fetched
/// at a fraction of a capped uplink is soon whole and can be passed on.
const PIECE_CHUNKS: u64 = 256;
/// Bytes one request asks for at most.
const BATCH_BYTES: u64 = 256 << 10;
/// The owner takes a piece that a member holds (or is being sent) only
/// once it has waited this long for a member to take it.
const OWNER_AFTER: Duration = Duration::from_secs(3);
/// Requests in flight per member.
const IN_FLIGHT: usize = 4;
/// Requests in flight to the owner: fewer, so that each piece it sends
/// is whole soon and the members' word on what they hold keeps up
/// (fetchers asking the owner for the same piece is what costs it).
const OWNER_IN_FLIGHT: usize = 1;
/// How often a member is asked what it holds while pieces are missing.
const HAVE_EVERY: Duration = Duration::from_millis(500);
/// A piece is asked of at most this many providers at once.
const MAX_ASKED: usize = 2;
/// With nothing asked of anyone, how long to wait for a member to come to
/// hold what is missing before the attempt ends (the next one asks the
/// owner again).
const STALL: Duration = Duration::from_secs(10);
/// A member that refuses this many asks in a row (about ten seconds) is
/// dropped; before, it may just not have the roster or the content yet.
const MAX_REFUSALS: u32 = 20;

/// A provider: who, the connection to it, the limits its bytes pass, and
/// whether it is a member (else the owner, who holds everything).
pub struct Provider<G> {
    pub id: EndpointId,
    pub conn: Connection,
    pub limit: Downlink,
    pub member: bool,
    /// Dropped when the provider is dropped (shows it as lost).
    pub guard: Option<G>,
}

struct State<G> {
    p: Provider<G>,
    /// What it holds by collection position (`None`: everything).
    have: Option<HashMap<u64, ChunkRanges>>,
    /// What the owner is sending it now, by collection position.
    coming: HashMap<u64, ChunkRanges>,
    in_flight: usize,
    alive: bool,
    asking: bool,
    asked_at: Option<Instant>,
    /// Asks refused in a row.
    refusals: u32,
}

impl<G> State<G> {
    fn new(p: Provider<G>) -> Self {
        Self {
            have: if p.member { Some(HashMap::new()) } else { None },
            coming: HashMap::new(),
            p,
            in_flight: 0,
            alive: true,
            asking: false,
            asked_at: None,
            refusals: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Pending,
    /// Asked of these providers.
    Asked(Vec<usize>),
    Done,
}

struct Piece {
    file: usize,
    position: u64,
    hash: Hash,
    size: u64,
    ranges: ChunkRanges,
    bytes: u64,
    /// This fetch's own order among equally rare pieces.
    salt: u32,
    stage: Stage,
    /// Providers that could not serve it after all (never asked again).
    not_from: Vec<usize>,
    /// When it was last left pending or asked for.
    since: Instant,
}

enum Event<G> {
    Got {
        from: usize,
        pieces: Vec<usize>,
        result: Result<(), AttemptError>,
    },
    Have {
        from: usize,
        result: Result<crate::swarm::client::Have, String>,
    },
    Tick,
    /// A member joined the fetch (none: no more will), and where the
    /// next comes from.
    Joined(
        Option<Provider<G>>,
        tokio::sync::mpsc::Receiver<Provider<G>>,
    ),
}

/// Cuts `wants` (sizes known) into pieces.
fn pieces_of(wants: &[Want], position: impl Fn(usize) -> u64) -> Vec<Piece> {
    let mut out = Vec::new();
    for w in wants {
        let size = w.size.unwrap_or(0);
        let chunks = size.div_ceil(1024).max(1);
        let mut start = 0;
        while start < chunks {
            let end = (start + PIECE_CHUNKS).min(chunks);
            let window = ChunkRanges::from(ChunkNum(start)..ChunkNum(end));
            let ranges = w.ranges.clone() & window;
            if !ranges.is_empty() {
                let bytes = crate::content::ranges::covered(&ranges, size).max(1);
                out.push(Piece {
                    file: w.file,
                    position: position(w.file),
                    hash: w.hash,
                    size,
                    ranges,
                    bytes,
                    salt: rand::random(),
                    stage: Stage::Pending,
                    not_from: Vec::new(),
                    since: Instant::now(),
                });
            }
            start = end;
        }
    }
    out
}

impl Piece {
    /// Whether member `s` is being sent some of it by the owner now.
    fn coming_to<G>(&self, s: &State<G>) -> bool {
        s.coming
            .get(&self.position)
            .is_some_and(|c| !(self.ranges.clone() & c.clone()).is_empty())
    }

    fn held_by<G>(&self, s: &State<G>, index: usize) -> bool {
        if self.not_from.contains(&index) {
            return false;
        }
        match &s.have {
            None => true,
            Some(have) => have
                .get(&self.position)
                .is_some_and(|h| (self.ranges.clone() - h).is_empty()),
        }
    }
}

/// What sees every verified leaf: (provider, file, offset, length).
pub type OnLeaf<'a> =
    dyn FnMut(EndpointId, usize, u64, usize) -> Result<(), AttemptError> + Send + 'a;

/// What a fetch from many works with, borrowed for its length.
struct Ctx<'a, 's> {
    session: &'a Session<'s>,
    sink: &'a Sink,
    /// This node's holding of the content: what the owner is sending it
    /// is told to the other members.
    holding: Option<&'a crate::swarm::Holding>,
    on_leaf: &'a Mutex<OnLeaf<'a>>,
}

/// One fetch from many: the pieces, the providers, what was asked.
struct Run<G> {
    pieces: Vec<Piece>,
    peers: Vec<State<G>>,
    /// Bytes asked: of the owner (rare, waited, again), of members.
    tally: [u64; 4],
    last_error: Option<AttemptError>,
    /// When a request last brought something.
    moved: Instant,
}

/// Fetches every piece of `wants` from `providers` (the owner first) and
/// the members `joining` hands over while it runs. `on_leaf(provider,
/// file, offset, len)` sees every verified leaf.
pub async fn fetch<'a, G: Send + 'static>(
    session: &'a Session<'_>,
    providers: Vec<Provider<G>>,
    (sink, holding, joining): (
        &'a Sink,
        Option<&'a crate::swarm::Holding>,
        tokio::sync::mpsc::Receiver<Provider<G>>,
    ),
    wants: &[Want],
    on_leaf: &'a Mutex<OnLeaf<'a>>,
) -> Result<(), AttemptError> {
    let cx = Ctx {
        session,
        sink,
        holding,
        on_leaf,
    };
    let mut run = Run {
        pieces: pieces_of(wants, |f| {
            session.positions.get(f).copied().unwrap_or(f as u64)
        }),
        peers: providers.into_iter().map(State::new).collect(),
        tally: [0; 4],
        last_error: None,
        moved: Instant::now(),
    };
    info!(
        pieces = run.pieces.len(),
        providers = run.peers.len(),
        "fetching from several providers"
    );
    let mut running: FuturesUnordered<BoxFuture<'a, Event<G>>> = FuturesUnordered::new();
    let mut joining = Some(joining);
    let mut ticking = false;
    loop {
        if run.pieces.iter().all(|p| p.stage == Stage::Done) {
            let [owner_rare, owner_waited, owner_again, members] = run.tally;
            info!(
                owner_rare,
                owner_waited, owner_again, members, "fetched from several providers (bytes asked)"
            );
            return Ok(());
        }
        for from in 0..run.peers.len() {
            while let Some(asked) = run.ask(&cx, from) {
                running.push(asked);
            }
            if let Some(asked) = run.ask_have(&cx, from) {
                running.push(asked);
            }
        }
        run.still_going()?;
        if let Some(mut rx) = joining.take() {
            running.push(async move { Event::Joined(rx.recv().await, rx) }.boxed());
        }
        if !ticking {
            ticking = true;
            running.push(
                async {
                    tokio::time::sleep(HAVE_EVERY).await;
                    Event::Tick
                }
                .boxed(),
            );
        }
        let Some(event) = running.next().await else {
            continue;
        };
        match event {
            Event::Tick => ticking = false,
            Event::Joined(None, _) => {}
            Event::Joined(Some(p), rx) => {
                debug!(peer = %p.id, "a member joins the fetch");
                joining = Some(rx);
                run.peers.push(State::new(p));
            }
            Event::Have { from, result } => run.heard(from, result),
            Event::Got {
                from,
                pieces,
                result,
            } => run.got(&cx, from, pieces, result)?,
        }
    }
}

impl<G: Send + 'static> Run<G> {
    /// The next request to provider `from`, if it has room and there is
    /// something to ask of it.
    fn ask<'a>(&mut self, cx: &Ctx<'a, '_>, from: usize) -> Option<BoxFuture<'a, Event<G>>> {
        let members = self.peers.iter().any(|s| s.alive && s.p.member);
        let member = self.peers[from].p.member;
        let most = if member || !members {
            IN_FLIGHT
        } else {
            OWNER_IN_FLIGHT
        };
        if !self.peers[from].alive || self.peers[from].in_flight >= most {
            return None;
        }
        let (chosen, why) = choose(&self.pieces, &self.peers, from);
        if chosen.is_empty() {
            return None;
        }
        let bytes: u64 = chosen.iter().map(|&i| self.pieces[i].bytes).sum();
        self.tally[if member { 3 } else { why }] += bytes;
        let wants = wants_of(&self.pieces, &chosen);
        for &i in &chosen {
            let piece = &mut self.pieces[i];
            piece.since = Instant::now();
            match &mut piece.stage {
                Stage::Asked(by) => by.push(from),
                stage => *stage = Stage::Asked(vec![from]),
            }
            if let Some(h) = cx.holding.filter(|_| !member) {
                h.coming(piece.position, &piece.ranges, true);
            }
        }
        let peer = &mut self.peers[from];
        peer.in_flight += 1;
        let (conn, limit, id) = (peer.p.conn.clone(), peer.p.limit.clone(), peer.p.id);
        let (session, sink, on_leaf) = (cx.session, cx.sink, cx.on_leaf);
        Some(
            async move {
                let result = session
                    .receive_on(&conn, &limit, &wants, sink, |f, o, l| {
                        match on_leaf.lock() {
                            Ok(mut leaf) => leaf(id, f, o, l),
                            Err(_) => Err(AttemptError::Local("poisoned".into())),
                        }
                    })
                    .await
                    .map(|_| ());
                Event::Got {
                    from,
                    pieces: chosen,
                    result,
                }
            }
            .boxed(),
        )
    }

    /// Asks member `from` what it holds, if that is due.
    fn ask_have<'a>(&mut self, cx: &Ctx<'a, '_>, from: usize) -> Option<BoxFuture<'a, Event<G>>> {
        let s = &mut self.peers[from];
        let due = s.asked_at.is_none_or(|t| t.elapsed() >= HAVE_EVERY);
        if !(s.alive && s.have.is_some() && !s.asking && due) {
            return None;
        }
        s.asking = true;
        s.asked_at = Some(Instant::now());
        let conn = s.p.conn.clone();
        let root = cx.session.ticket.content.hash;
        Some(
            async move {
                let result = crate::swarm::client::have(&conn, &root).await;
                Event::Have { from, result }
            }
            .boxed(),
        )
    }

    /// Fails the fetch when nobody is left, or nothing was asked of
    /// anyone for [`STALL`].
    fn still_going(&mut self) -> Result<(), AttemptError> {
        let asking = self.peers.iter().any(|s| s.in_flight > 0);
        if self.peers.iter().any(|s| s.alive) && (asking || self.moved.elapsed() < STALL) {
            return Ok(());
        }
        Err(self.last_error.take().unwrap_or_else(|| {
            AttemptError::Interrupted(
                "no provider is left that holds the rest (the owner is gone and no member has it)"
                    .into(),
            )
        }))
    }

    /// Member `from` said what it holds (or did not).
    fn heard(&mut self, from: usize, result: Result<crate::swarm::client::Have, String>) {
        let s = &mut self.peers[from];
        s.asking = false;
        match result {
            Ok((have, coming)) => {
                s.have = Some(have);
                s.coming = coming;
                s.refusals = 0;
            }
            Err(e) => {
                debug!(peer = %s.p.id, "cannot learn what a member holds: {e}");
                refused(s, &format!("it did not say what it holds: {e}"));
            }
        }
    }

    /// A request to `from` for `chosen` ended: its pieces are done, or go
    /// back to be asked again; a provider that failed is dealt with.
    fn got(
        &mut self,
        cx: &Ctx<'_, '_>,
        from: usize,
        chosen: Vec<usize>,
        result: Result<(), AttemptError>,
    ) -> Result<(), AttemptError> {
        let member = self.peers[from].p.member;
        self.peers[from].in_flight -= 1;
        if let Some(h) = cx.holding.filter(|_| !member) {
            for &i in &chosen {
                h.coming(self.pieces[i].position, &self.pieces[i].ranges, false);
            }
        }
        let ok = result.is_ok();
        if ok {
            self.moved = Instant::now();
        }
        for &i in &chosen {
            let piece = &mut self.pieces[i];
            if ok {
                piece.stage = Stage::Done;
            } else if let Stage::Asked(by) = &mut piece.stage {
                by.retain(|p| *p != from);
                if by.is_empty() {
                    piece.stage = Stage::Pending;
                    piece.since = Instant::now();
                }
            }
        }
        let Err(e) = result else {
            return Ok(());
        };
        let s = &mut self.peers[from];
        match (&e, member) {
            (AttemptError::NotHeld(_), true) => {
                // It cannot serve these after all.
                for &i in &chosen {
                    self.pieces[i].not_from.push(from);
                }
            }
            (AttemptError::Refused(_), true) => {
                s.have = Some(HashMap::new());
                refused(s, &e.to_string());
            }
            (_, true) => drop_provider(s, &e.to_string()),
            (_, false) if !e.retry() => return Err(e),
            (_, false) => {
                drop_provider(s, &e.to_string());
                self.last_error = Some(e);
            }
        }
        Ok(())
    }
}

/// A member refused an ask: dropped after [`MAX_REFUSALS`] in a row.
fn refused<G>(s: &mut State<G>, why: &str) {
    s.refusals += 1;
    if s.refusals >= MAX_REFUSALS {
        drop_provider(s, why);
    }
}

fn drop_provider<G>(s: &mut State<G>, why: &str) {
    if s.alive {
        warn!(peer = %s.p.id, "no longer fetching from this provider: {why}");
    }
    s.alive = false;
    s.p.guard = None;
}

/// The pieces provider `from` is to fetch next: pending ones it holds,
/// rarest first, up to [`BATCH_BYTES`]; else one asked of others already.
/// The owner is spared: it takes what no member holds, or what has waited
/// [`OWNER_AFTER`] for a member that does.
fn choose<G>(pieces: &[Piece], peers: &[State<G>], from: usize) -> (Vec<usize>, usize) {
    let me = &peers[from];
    let rarity = |p: &Piece| {
        peers
            .iter()
            .enumerate()
            .filter(|(i, s)| s.alive && p.held_by(s, *i))
            .count()
    };
    let owner = me.have.is_none();
    let any_pending = pieces.iter().any(|p| p.stage == Stage::Pending);
    let mut pending: Vec<(usize, u32, usize)> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| p.stage == Stage::Pending && p.held_by(me, from))
        .map(|(i, p)| (rarity(p), p.salt, i))
        .filter(|(rarity, _, i)| {
            let p = &pieces[*i];
            let coming = peers.iter().any(|s| s.alive && p.coming_to(s));
            !owner || (*rarity <= 1 && !coming) || p.since.elapsed() >= OWNER_AFTER
        })
        .collect();
    if pending.is_empty() && owner && any_pending {
        return (Vec::new(), 0);
    }
    if pending.is_empty() {
        // The end: one piece asked of the fewest others, not of this one
        // (of the owner only once it has been waited for a while).
        let again = pieces
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.stage {
                Stage::Asked(by)
                    if by.len() < MAX_ASKED
                        && !by.contains(&from)
                        && p.held_by(me, from)
                        && (!owner || p.since.elapsed() >= OWNER_AFTER) =>
                {
                    Some((by.len(), p.salt, i))
                }
                _ => None,
            })
            .min();
        return (again.map(|(_, _, i)| vec![i]).unwrap_or_default(), 2);
    }
    pending.sort_unstable();
    let mut chosen = Vec::new();
    let mut bytes = 0;
    for (_, _, i) in pending {
        if bytes > 0 && bytes + pieces[i].bytes > BATCH_BYTES {
            break;
        }
        bytes += pieces[i].bytes;
        chosen.push(i);
    }
    let waited = chosen.iter().any(|&i| rarity(&pieces[i]) > 1);
    (chosen, usize::from(waited))
}

/// One want per file (in file order) for the chosen pieces.
fn wants_of(pieces: &[Piece], chosen: &[usize]) -> Vec<Want> {
    let mut by_file: std::collections::BTreeMap<usize, Want> = Default::default();
    for &i in chosen {
        let p = &pieces[i];
        by_file
            .entry(p.file)
            .and_modify(|w| w.ranges |= p.ranges.clone())
            .or_insert_with(|| Want {
                file: p.file,
                hash: p.hash,
                size: Some(p.size),
                ranges: p.ranges.clone(),
            });
    }
    by_file.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_missing_chunks_once() {
        let size = 3 * 1024 * 1024 + 5;
        let missing = ChunkRanges::from(ChunkNum(10)..ChunkNum(3073));
        let wants = vec![Want {
            file: 0,
            hash: Hash::EMPTY,
            size: Some(size),
            ranges: missing.clone(),
        }];
        let pieces = pieces_of(&wants, |f| f as u64);
        assert_eq!(pieces.len(), 13);
        let mut union = ChunkRanges::empty();
        for p in &pieces {
            assert!((p.ranges.clone() & union.clone()).is_empty());
            union |= p.ranges.clone();
        }
        assert_eq!(union, missing);
    }
}
