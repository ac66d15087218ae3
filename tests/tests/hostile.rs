//! Hostile peers. A raw QUIC client on the blobs ALPN attacks a real
//! `ringdropd` (garbage, truncated frames, huge range lists, random
//! hashes, child ranges on a blob that is not a collection, hundreds of
//! streams): it stays up, serves others meanwhile, leaks nothing and its
//! memory stays bounded. Hostile providers (wrong bytes, cut streams) get
//! nothing unverified onto a destination.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use bytes::Bytes;
use iroh::{
    endpoint::{Connection, VarInt},
    protocol::{AcceptError, ProtocolHandler, Router},
};
use iroh_blobs::{
    format::collection::Collection,
    protocol::{ChunkRanges, ChunkRangesSeq, GetRequest, Request},
    provider::{events::EventSender, StreamPair},
    store::mem::MemStore,
    ticket::BlobTicket,
    BlobFormat, Hash,
};
use rand::RngCore;
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{
    completed, list_tree, loopback_addr, loopback_endpoint, random_file, temp_dir, watch_until,
    BinDaemon, TestDaemon,
};
use ringdropd::ticket::Ticket;

const MIB: u64 = 1024 * 1024;

/// Sends `bytes` on a new stream (finished or left open) and reads what
/// comes back: `Some(bytes)` or `None` when the stream was reset/refused.
async fn ask(conn: &Connection, bytes: &[u8], finish: bool) -> Result<Option<Vec<u8>>> {
    let (mut send, mut recv) = conn.open_bi().await?;
    // The daemon may stop reading as soon as it has seen enough.
    if send.write_all(bytes).await.is_err() {
        return Ok(None);
    }
    if finish {
        send.finish().ok();
    }
    let r = tokio::time::timeout(Duration::from_secs(30), recv.read_to_end(64 * MIB as usize))
        .await
        .context("no answer within 30 s")?;
    Ok(r.ok())
}

fn encode(req: GetRequest) -> Vec<u8> {
    postcard::to_stdvec(&Request::Get(req)).expect("encodes")
}

/// Nothing came back: refused, reset or empty.
fn nothing(answer: &Option<Vec<u8>>) -> bool {
    answer.as_ref().is_none_or(|b| b.is_empty())
}

/// Peak resident memory of a process (VmHWM), bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .context("no VmHWM")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

/// Shares `data` from the daemon: (ticket, share hash).
async fn share_bytes(d: &BinDaemon, name: &str, data: &[u8]) -> Result<(Ticket, String)> {
    let path = temp_dir("rdrop-src-")?.join(name);
    std::fs::write(&path, data)?;
    let (ticket, hash) = d.share(&path).await?;
    Ok((ticket.parse()?, hash))
}

/// Opens up to `n` streams on `conn`, each with `junk` as a partial
/// request left open; stops at the daemon's stream limit (the rest would
/// wait, as they should).
async fn hold_streams(
    conn: &Connection,
    n: usize,
    junk: &[u8],
    wait: Duration,
) -> Vec<(iroh::endpoint::SendStream, iroh::endpoint::RecvStream)> {
    let mut held = Vec::new();
    for _ in 0..n {
        let Ok(Ok((mut send, recv))) = tokio::time::timeout(wait, conn.open_bi()).await else {
            break;
        };
        send.write_all(junk).await.ok();
        held.push((send, recv));
    }
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_quic_attacks_on_the_provider() -> Result<()> {
    let dir = temp_dir("rdrop-victim-")?;
    // GC off for the test's length: the unshared secret stays in the store.
    std::fs::write(dir.join("ringdropd.toml"), "gc_interval = \"1h\"\n")?;
    let config = dir.join("ringdropd.toml").display().to_string();
    let b = BinDaemon::spawn(&dir, &["--config", &config])?;
    let pid = b.child.id();

    // A secret the daemon holds but no longer shares, and an open share
    // whose only file is the secret's hash (a valid hash sequence).
    let secret = b"the secret nobody may fetch".repeat(1000);
    let secret_hash = Hash::new(&secret);
    let (_, secret_share) = share_bytes(&b, "secret.txt", &secret).await?;
    b.ctl(&["unshare", &secret_share])?;
    let (ticket, _) = share_bytes(&b, "pointer.bin", secret_hash.as_bytes()).await?;
    let pointer = Hash::new(secret_hash.as_bytes());
    let (big_ticket, _) = {
        let path = temp_dir("rdrop-src-")?.join("big.bin");
        random_file(&path, (16 * MIB) as usize)?;
        let (t, h) = b.share(&path).await?;
        (t, h)
    };
    let collection = ticket.content.hash;
    let rss_before = peak_rss(pid)?;

    let ep = loopback_endpoint().await?;
    let conn = ep.connect(ticket.addr.clone(), iroh_blobs::ALPN).await?;
    let leaked = |a: &Option<Vec<u8>>| {
        a.as_ref()
            .is_some_and(|b| b.windows(64).any(|w| secret.windows(64).any(|s| s == w)))
    };

    // Garbage of every length, finished and not.
    let mut rng = rand::rng();
    for len in (0..4096).step_by(97) {
        let mut junk = vec![0u8; len];
        rng.fill_bytes(&mut junk);
        let a = ask(&conn, &junk, true).await?;
        assert!(nothing(&a), "garbage of {len} bytes got an answer");
    }
    // Every truncation of a valid request.
    let full = encode(GetRequest::all(collection));
    for cut in 0..full.len() {
        let a = ask(&conn, &full[..cut], true).await?;
        assert!(nothing(&a), "a request cut at {cut} got an answer");
    }
    // A request just over the provider's 1 MiB bound.
    let a = ask(&conn, &vec![0u8; (MIB + 1) as usize], true).await?;
    assert!(nothing(&a));

    // Huge range lists on a shared collection: 100,000 offsets, and one
    // child range at offset 2^62 (the provider would walk every offset).
    let many = ChunkRangesSeq::from_ranges((0..100_000).map(|i| {
        if i % 2 == 0 {
            ChunkRanges::all()
        } else {
            ChunkRanges::empty()
        }
    }));
    let a = ask(&conn, &encode(GetRequest::new(collection, many)), true).await?;
    assert!(nothing(&a), "a 100,000-offset request was served");
    let mut far = vec![0u8];
    far.extend_from_slice(collection.as_bytes());
    // two entries: (offset delta 2^62, all), (1, empty)
    far.extend_from_slice(&[0x02, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    far.extend_from_slice(&[0x01, 0x00, 0x01, 0x00]);
    let a = ask(&conn, &far, true).await?;
    assert!(nothing(&a), "a child range at offset 2^62 was served");

    // Random hashes.
    for _ in 0..200 {
        let mut h = [0u8; 32];
        rng.fill_bytes(&mut h);
        let a = ask(&conn, &encode(GetRequest::blob(Hash::from_bytes(h))), true).await?;
        assert!(nothing(&a), "a random hash was answered");
    }

    // The pointer blob is shared (raw) but is not a collection: its child
    // ranges would serve the secret it names.
    let raw = ask(&conn, &encode(GetRequest::blob(pointer)), true).await?;
    assert!(
        raw.is_some_and(|b| b.len() > 32),
        "the shared pointer is served raw"
    );
    for req in [
        GetRequest::builder()
            .child(0, ChunkRanges::all())
            .build(pointer),
        GetRequest::all(pointer),
        GetRequest::blob(secret_hash),
    ] {
        let a = ask(&conn, &encode(req.clone()), true).await?;
        assert!(nothing(&a) && !leaked(&a), "leaked via {req:?}");
    }

    // Hundreds of streams at once, each with a partial request left open,
    // on three connections, while a real daemon fetches 16 MiB.
    let mut held = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let ep = loopback_endpoint().await?;
        let conn = ep.connect(ticket.addr.clone(), iroh_blobs::ALPN).await?;
        let mut junk = vec![0u8; 64 * 1024];
        rng.fill_bytes(&mut junk);
        held.extend(hold_streams(&conn, 100, &junk, Duration::from_millis(200)).await);
        conns.push((ep, conn));
    }
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let out = temp_dir("rdrop-out-")?;
    let id = a.fetch(&big_ticket, &out).await?;
    let t = watch_until(&a.socket, id, |_| false).await?;
    assert!(completed(&t), "a peer's transfer during the attack: {t:?}");

    let peak = peak_rss(pid)?;
    eprintln!(
        "hostile peers: {} streams held open; daemon peak RSS {:.1} MB before the attacks, {:.1} MB after",
        held.len(),
        rss_before as f64 / 1e6,
        peak as f64 / 1e6
    );
    assert!(held.len() >= 3, "no stream could be opened");
    assert!(peak < 256 * MIB, "peak RSS {peak}");
    drop(held);
    drop(conns);
    // Still up and answering.
    assert!(b.ctl(&["--json", "status"])?.status.success());
    Ok(())
}

/// What a hostile provider does to the bytes it sends.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Flip one byte at this offset of every response stream.
    Flip(u64),
    /// End every response stream after this many bytes.
    Cut(u64),
}

/// A send stream that tampers with what the real provider code writes.
struct Tampered {
    inner: iroh::endpoint::SendStream,
    tamper: Tamper,
    sent: u64,
}

impl iroh_blobs::util::SendStream for Tampered {
    async fn send_bytes(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.send(&bytes).await
    }

    async fn send(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let start = self.sent;
        self.sent += buf.len() as u64;
        match self.tamper {
            Tamper::Flip(at) if (start..self.sent).contains(&at) => {
                let mut copy = buf.to_vec();
                copy[(at - start) as usize] ^= 0x55;
                self.inner.write_all(&copy).await?;
            }
            Tamper::Cut(at) if self.sent > at => {
                let keep = at.saturating_sub(start) as usize;
                self.inner.write_all(&buf[..keep]).await?;
                self.inner.finish().ok();
                return Err(std::io::Error::other("cut"));
            }
            _ => self.inner.write_all(buf).await?,
        }
        Ok(())
    }

    async fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn reset(&mut self, code: VarInt) -> std::io::Result<()> {
        self.inner.reset(code).ok();
        Ok(())
    }

    async fn stopped(&mut self) -> std::io::Result<Option<VarInt>> {
        Ok(self.inner.stopped().await?)
    }

    fn id(&self) -> u64 {
        self.inner.id().index()
    }
}

/// Serves a store through the real iroh-blobs provider code, tampered.
#[derive(Debug, Clone)]
struct HostileProvider {
    store: MemStore,
    tamper: Tamper,
    streams: Arc<AtomicU64>,
}

impl ProtocolHandler for HostileProvider {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        while let Ok((send, recv)) = conn.accept_bi().await {
            self.streams.fetch_add(1, Ordering::Relaxed);
            let writer = Tampered {
                inner: send,
                tamper: self.tamper,
                sent: 0,
            };
            let pair = StreamPair::new(conn.stable_id() as u64, recv, writer, EventSender::DEFAULT);
            tokio::spawn(iroh_blobs::provider::handle_stream(
                pair,
                (*self.store).clone(),
            ));
        }
        Ok(())
    }
}

/// A hostile provider holding `data` as `name`: (ticket, router, streams).
async fn hostile_provider(
    name: &str,
    data: Vec<u8>,
    tamper: Tamper,
) -> Result<(String, Router, Arc<AtomicU64>)> {
    let ep = loopback_endpoint().await?;
    let store = MemStore::new();
    let tt = store.add_bytes(data).temp_tag().await?;
    let collection: Collection = [(name.to_string(), tt.hash())].into_iter().collect();
    let root = collection.store(&store).await?;
    let streams = Arc::new(AtomicU64::new(0));
    let addr = loopback_addr(&ep);
    let router = Router::builder(ep)
        .accept(
            iroh_blobs::ALPN,
            HostileProvider {
                store,
                tamper,
                streams: streams.clone(),
            },
        )
        .spawn();
    let ticket = BlobTicket::new(addr, root.hash(), BlobFormat::HashSeq).to_string();
    Ok((ticket, router, streams))
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_sending_wrong_bytes_gets_nothing_written() -> Result<()> {
    let data = random_data(8 * MIB as usize);
    let (ticket, _router, _) = hostile_provider("x.bin", data, Tamper::Flip(3 * MIB)).await?;
    let b = TestDaemon::start().await?;
    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&ticket, &out).await?).await?;
    assert_eq!(t.state, pb::TransferState::Failed as i32, "{t:?}");
    assert!(t.last_error.contains("does not match"), "{}", t.last_error);
    assert_eq!(
        t.attempts, 1,
        "a provider serving wrong bytes is not asked again"
    );
    assert!(list_tree(&out).is_empty(), "wrote {:?}", list_tree(&out));
    // What was verified before the bad byte is kept; nothing after it.
    assert!(t.bytes_done < 3 * MIB + 16 * 1024, "{t:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_cutting_streams_short_still_delivers_the_file() -> Result<()> {
    let data = random_data(6 * MIB as usize);
    let (ticket, _router, streams) =
        hostile_provider("x.bin", data.clone(), Tamper::Cut(2 * MIB)).await?;
    let b = TestDaemon::start().await?;
    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert!(t.attempts >= 3, "each cut costs an attempt: {t:?}");
    assert!(streams.load(Ordering::Relaxed) >= 3);
    assert_eq!(std::fs::read(out.join("x.bin"))?, data);
    Ok(())
}

fn random_data(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rng().fill_bytes(&mut v);
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_cannot_make_the_node_hold_unbounded_connections_and_streams() -> Result<()> {
    let b = BinDaemon::spawn(&temp_dir("rdrop-victim-")?, &[])?;
    let pid = b.child.id();
    let (big_ticket, _) = {
        let path = temp_dir("rdrop-src-")?.join("big.bin");
        random_file(&path, (16 * MIB) as usize)?;
        b.share(&path).await?
    };
    let ticket: Ticket = big_ticket.parse()?;
    let rss_before = peak_rss(pid)?;

    // One endpoint, 30 connections on the blobs protocol, each with every
    // stream it may open holding a partial request, sent slowly.
    let ep = loopback_endpoint().await?;
    let mut conns = Vec::new();
    let mut held = Vec::new();
    let mut junk = vec![0u8; 64 * 1024];
    rand::rng().fill_bytes(&mut junk);
    for _ in 0..30 {
        let conn = ep.connect(ticket.addr.clone(), iroh_blobs::ALPN).await?;
        held.extend(hold_streams(&conn, 20, &junk, Duration::from_millis(100)).await);
        // Unidirectional streams are not ours to take: none may be opened.
        let uni = tokio::time::timeout(Duration::from_millis(100), conn.open_uni()).await;
        assert!(
            !matches!(uni, Ok(Ok(_))),
            "a unidirectional stream was accepted"
        );
        conns.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = conns.iter().filter(|c| c.close_reason().is_none()).count();
    assert!(open <= 8, "{open} connections of one peer kept open");

    // The small protocols (catalog, invites, offers): at most 4 connections
    // of one peer each; connections that never send a request are let go.
    let mut idle = Vec::new();
    for alpn in [
        &b"ringdrop/catalog/1"[..],
        b"ringdrop/invite/1",
        b"ringdrop/offer/1",
    ] {
        let mut of_alpn = Vec::new();
        for _ in 0..10 {
            let c = ep.connect(ticket.addr.clone(), alpn).await?;
            if let Ok((mut send, recv)) = c.open_bi().await {
                send.write_all(&[0]).await.ok(); // half a request, never finished
                of_alpn.push((c, Some((send, recv))));
            } else {
                of_alpn.push((c, None));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kept = of_alpn
            .iter()
            .filter(|(c, _)| c.close_reason().is_none())
            .count();
        let alpn = String::from_utf8_lossy(alpn);
        assert!(
            kept <= 4,
            "{kept} of 10 {alpn} connections of one peer kept"
        );
        eprintln!("{alpn}: {kept} of 10 connections kept");
        idle.extend(of_alpn);
    }
    for (c, _) in &idle {
        tokio::time::timeout(Duration::from_secs(30), c.closed())
            .await
            .context("a catalog connection that never finished its request was kept")?;
    }

    // A real peer is served meanwhile.
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let out = temp_dir("rdrop-out-")?;
    let id = a.fetch(&big_ticket, &out).await?;
    let t = watch_until(&a.socket, id, |_| false).await?;
    assert!(completed(&t), "a peer's transfer during the attack: {t:?}");
    let peak = peak_rss(pid)?;
    eprintln!(
        "connection flood: {open} of 30 connections kept, {} streams held; daemon peak RSS {:.1} MB before, {:.1} MB after",
        held.len(),
        rss_before as f64 / 1e6,
        peak as f64 / 1e6
    );
    assert!(peak < 256 * MIB, "peak RSS {peak}");
    drop(held);
    drop(conns);
    assert!(b.ctl(&["--json", "status"])?.status.success());
    Ok(())
}

/// A stream whose request never ends (one byte, half a request, a whole
/// request with the stream never finished) is reset within the daemon's
/// request deadline (10 s), and the connection still serves a whole one.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_never_ends_is_let_go() -> Result<()> {
    let b = BinDaemon::spawn(&temp_dir("rdrop-victim-")?, &[])?;
    let data = random_data(64 * 1024);
    let (ticket, _) = share_bytes(&b, "small.bin", &data).await?;
    let ep = loopback_endpoint().await?;
    let conn = ep.connect(ticket.addr.clone(), iroh_blobs::ALPN).await?;
    let whole = encode(GetRequest::all(ticket.content.hash));
    let slow: [(&str, &[u8]); 3] = [
        ("one byte", &whole[..1]),
        ("half a request", &whole[..whole.len() / 2]),
        ("a whole request, never finished", &whole),
    ];
    let mut held = Vec::new();
    for (what, bytes) in slow {
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(bytes).await?;
        held.push((what, send, recv));
    }
    for (what, _send, mut recv) in held {
        // The guard only keeps a failing run from hanging.
        let r = tokio::time::timeout(Duration::from_secs(60), recv.read_to_end(1 << 20))
            .await
            .with_context(|| format!("{what}: the stream was still held after 60 s"))?;
        assert!(r.is_err(), "{what}: answered instead of reset: {r:?}");
    }
    let answer = ask(&conn, &whole, true).await?;
    assert!(!nothing(&answer), "the connection no longer serves");
    Ok(())
}

/// A daemon serving at most 2 MiB/s, so a request is still running when
/// access ends.
fn slow_victim() -> Result<BinDaemon> {
    let dir = temp_dir("rdrop-victim-")?;
    std::fs::write(dir.join("ringdropd.toml"), "max_upload_rate = \"2MiB\"\n")?;
    let config = dir.join("ringdropd.toml").display().to_string();
    BinDaemon::spawn(&dir, &["--config", &config])
}

/// One GET_MANY asks for blobs of two open shares; unsharing the second
/// (not the share its first hash belongs to) ends it at once. The second
/// blob's content stays in the store (shared from another path, to a ring
/// the peer is not in), so only the gate can end the request.
#[tokio::test(flavor = "multi_thread")]
async fn unsharing_any_share_a_get_many_spans_ends_it() -> Result<()> {
    let b = slow_victim()?;
    let small = random_data(64 * 1024);
    let big = random_data((16 * MIB) as usize);
    let (ticket, _) = share_bytes(&b, "small.bin", &small).await?;
    let (_, big_share) = share_bytes(&b, "big.bin", &big).await?;
    assert!(b.ctl(&["ring", "create", "others"])?.status.success());
    let copy = temp_dir("rdrop-src-")?.join("copy.bin");
    std::fs::write(&copy, &big)?;
    let shared = b.ctl(&["share", copy.to_str().context("path")?, "--ring", "others"])?;
    assert!(shared.status.success(), "{shared:?}");
    let ep = loopback_endpoint().await?;
    let conn = ep.connect(ticket.addr.clone(), iroh_blobs::ALPN).await?;
    let req = iroh_blobs::protocol::GetManyRequest::builder()
        .hash(Hash::new(&small), ChunkRanges::all())
        .hash(Hash::new(&big), ChunkRanges::all())
        .build();
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&postcard::to_stdvec(&Request::GetMany(req))?)
        .await?;
    send.finish()?;
    // Running: the small blob and the start of the big one arrived.
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < MIB as usize {
        let n = tokio::time::timeout(Duration::from_secs(30), recv.read(&mut buf))
            .await
            .context("the GET_MANY was not served")??
            .context("the GET_MANY ended early")?;
        got += n;
    }
    assert!(b.ctl(&["unshare", &big_share])?.status.success());
    // At 2 MiB/s the rest takes 7 s; the guard only keeps a failing run
    // from hanging.
    let rest = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match recv.read(&mut buf).await {
                Ok(Some(n)) => got += n,
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .context("the GET_MANY neither ended nor was cut")?;
    assert!(
        !rest && got < big.len(),
        "served {got} bytes of a request its peer may no longer fetch (finished: {rest})"
    );
    Ok(())
}

/// An OBSERVE of a shared blob lasts as long as its connection; unsharing
/// ends it.
#[tokio::test(flavor = "multi_thread")]
async fn unsharing_ends_an_observe() -> Result<()> {
    let b = slow_victim()?;
    let data = random_data(256 * 1024);
    let (ticket, share) = share_bytes(&b, "watched.bin", &data).await?;
    let ep = loopback_endpoint().await?;
    let conn = ep.connect(ticket.addr.clone(), iroh_blobs::ALPN).await?;
    let req = iroh_blobs::protocol::ObserveRequest::new(Hash::new(&data));
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&postcard::to_stdvec(&Request::Observe(req))?)
        .await?;
    send.finish()?;
    // Allowed: the current state of the blob comes back.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), recv.read(&mut buf))
        .await
        .context("the OBSERVE was not answered")??;
    assert!(n.is_some_and(|n| n > 0), "the OBSERVE was refused");
    assert!(b.ctl(&["unshare", &share])?.status.success());
    tokio::time::timeout(Duration::from_secs(30), conn.closed())
        .await
        .context("the observer of an unshared blob is still connected")?;
    Ok(())
}

/// 100 throwaway identities holding 3 blobs connections each (300, more
/// than the node's 256) cannot lock out a ring member: strangers together
/// get half the slots, and the member's fetch completes meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_fresh_identities_leaves_room_for_ring_members() -> Result<()> {
    let b = BinDaemon::spawn(&temp_dir("rdrop-victim-")?, &[])?;
    let a = BinDaemon::spawn(&temp_dir("rdrop-member-")?, &[])?;
    let member = a.ctl_json(&["status"])?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string();
    b.ctl_json(&["ring", "create", "team"])?;
    b.ctl_json(&["ring", "add-member", "team", &member])?;
    let path = temp_dir("rdrop-src-")?.join("for-the-team.bin");
    let data = random_file(&path, 2 << 20)?;
    let shared = b.ctl_json(&["share", path.to_str().context("path")?, "--ring", "team"])?;
    let ticket_text = shared["ticket"].as_str().context("ticket")?.to_string();
    let ticket: Ticket = ticket_text.parse()?;

    let mut held = Vec::new();
    let mut endpoints = Vec::new();
    for _ in 0..100 {
        let ep = loopback_endpoint().await?;
        for _ in 0..3 {
            if let Ok(c) = ep.connect(ticket.addr.clone(), iroh_blobs::ALPN).await {
                held.push(c);
            }
        }
        endpoints.push(ep);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = held.iter().filter(|c| c.close_reason().is_none()).count();
    eprintln!("flood: {open} of {} stranger connections kept", held.len());
    assert!(open <= 128, "strangers hold {open} connections");

    let out = temp_dir("rdrop-out-")?;
    let id = a.fetch(&ticket_text, &out).await?;
    let t = watch_until(&a.socket, id, |_| false).await?;
    assert!(completed(&t), "the member's fetch during the flood: {t:?}");
    assert_eq!(std::fs::read(out.join("for-the-team.bin"))?, data);
    drop(held);
    Ok(())
}
