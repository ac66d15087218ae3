//! A ring is a swarm: members serve what they fetched of a ring share to
//! the ring's other members, by the owner's signed roster, and to nobody
//! else; a fetch takes from the owner and the members at once.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bao_tree::ChunkRanges;
use iroh::{endpoint::VarInt, protocol::Router, Endpoint, EndpointAddr};
use iroh_blobs::{
    get::{fsm, GetError},
    protocol::{GetRequest, ERR_PERMISSION},
    Hash,
};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{
    completed, loopback_addr, loopback_endpoint, random_file, temp_dir, TestDaemon,
};
use ringdropd::swarm::{HaveReply, ERR_NOT_HELD};

const MIB: usize = 1024 * 1024;
/// Rosters are valid this long in these tests.
const VALID: Duration = Duration::from_secs(2);

/// The daemons' logs on stderr when RUST_LOG is set.
fn logs() {
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init()
            .ok();
    }
}

async fn owner() -> Result<TestDaemon> {
    logs();
    TestDaemon::start_with(|c| c.roster_valid = VALID).await
}

/// An owner with ring "team" whose members are a daemon and a bare
/// endpoint (which asks members as a member would).
async fn owner_member_and_endpoint() -> Result<(TestDaemon, TestDaemon, Endpoint)> {
    let a = owner().await?;
    let b = TestDaemon::start().await?;
    let e = loopback_endpoint().await?;
    team(&a).await?;
    add(&a, "team", b.id().await?).await?;
    add(&a, "team", e.id().to_string()).await?;
    Ok((a, b, e))
}

/// Ring "team" on `a`.
async fn team(a: &TestDaemon) -> Result<()> {
    a.rings()
        .create_ring(pb::CreateRingRequest {
            name: "team".into(),
        })
        .await?;
    Ok(())
}

async fn add(a: &TestDaemon, ring: &str, id: String) -> Result<()> {
    a.rings()
        .add_member(pb::AddMemberRequest {
            ring: ring.into(),
            peer: id,
            expires_at: 0,
        })
        .await?;
    Ok(())
}

async fn remove(a: &TestDaemon, ring: &str, id: String) -> Result<()> {
    a.rings()
        .remove_member(pb::RemoveMemberRequest {
            ring: ring.into(),
            peer: id,
        })
        .await?;
    Ok(())
}

fn addr_of(d: &TestDaemon, id: &str) -> Result<EndpointAddr> {
    Ok(EndpointAddr::new(id.parse()?).with_ip_addr(d.bind))
}

async fn served(d: &TestDaemon) -> Result<u64> {
    Ok(d.node()
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner()
        .bytes_served)
}

/// Asks `addr` over the swarm protocol for all of file 0 of `root`
/// (whose hash is `file`): its bytes, or the code it was refused with.
async fn ask(
    ep: &Endpoint,
    addr: EndpointAddr,
    root: Hash,
    file: Hash,
) -> Result<Vec<u8>, Option<VarInt>> {
    let conn = ep
        .connect(addr, ringdropd::swarm::ALPN)
        .await
        .map_err(|_| None)?;
    let req = GetRequest::builder()
        .child(1, ChunkRanges::all())
        .build(root);
    let code = |e: GetError| e.iroh_error_code();
    let connected = fsm::start(conn, req, Default::default())
        .next()
        .await
        .map_err(|e| code(e.into()))?;
    let fsm::ConnectedNext::StartChild(child) =
        connected.next().await.map_err(|e| code(e.into()))?
    else {
        return Err(None);
    };
    let (content, _size) = child.next(file).next().await.map_err(|e| code(e.into()))?;
    let (_, data) = content
        .concatenate_into_vec()
        .await
        .map_err(|e| code(e.into()))?;
    Ok(data)
}

/// Waits (up to 20 s) until `check` holds.
async fn eventually<F, Fut>(what: &str, check: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("timed out waiting until {what}")
}

/// The rules of re-serving, asked of a member by a bare endpoint: member
/// yes; non-member no; revoked no (within the roster's validity); roster
/// expired (the owner gone) no; edited file no; re-serving off no.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_serves_members_and_nobody_else() -> Result<()> {
    let a = owner().await?;
    let b = TestDaemon::start().await?;
    let off = TestDaemon::start_with(|c| c.reserve = false).await?;
    let e = loopback_endpoint().await?;
    let stranger = loopback_endpoint().await?;
    team(&a).await?;
    for id in [b.id().await?, off.id().await?, e.id().to_string()] {
        add(&a, "team", id).await?;
    }
    let src = temp_dir("rdrop-src-")?.join("data.bin");
    let data = random_file(&src, 3 * MIB + 777)?;
    let file = Hash::new(&data);
    let share = a.share_to(&src, &["team"]).await?;
    let root: Hash = share.share.as_ref().context("share")?.hash.parse()?;

    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&share.ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    let t = off
        .wait(off.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?)
        .await?;
    assert!(completed(&t), "{t:?}");
    let b_addr = addr_of(&b, &b.id().await?)?;
    let off_addr = addr_of(&off, &off.id().await?)?;

    // A member gets it from another member, verified.
    eventually("b serves a member", || async {
        ask(&e, b_addr.clone(), root, file).await.ok() == Some(data.clone())
    })
    .await?;
    assert!(served(&b).await? >= data.len() as u64);
    // A stranger is refused; so is everyone by a member that re-serves nothing.
    assert_eq!(
        ask(&stranger, b_addr.clone(), root, file).await,
        Err(Some(ERR_PERMISSION))
    );
    assert_eq!(
        ask(&e, off_addr, root, file).await,
        Err(Some(ERR_PERMISSION))
    );

    // Revoked: refused by the member within the roster's validity.
    remove(&a, "team", e.id().to_string()).await?;
    let revoked = std::time::Instant::now();
    eventually("b refuses a revoked member", || async {
        ask(&e, b_addr.clone(), root, file).await == Err(Some(ERR_PERMISSION))
    })
    .await?;
    assert!(
        revoked.elapsed() < VALID + Duration::from_secs(2),
        "{:?}",
        revoked.elapsed()
    );

    // Back in; then the owner goes away: the roster expires, and with it
    // the member's re-serving.
    add(&a, "team", e.id().to_string()).await?;
    eventually("b serves the member again", || async {
        ask(&e, b_addr.clone(), root, file).await.is_ok()
    })
    .await?;
    drop(a);
    eventually("b stops once the roster expired", || async {
        ask(&e, b_addr.clone(), root, file).await == Err(Some(ERR_PERMISSION))
    })
    .await?;
    Ok(())
}

/// A placed file that was edited is not served (the member says it does
/// not hold it, and no byte of the edit leaves).
#[tokio::test(flavor = "multi_thread")]
async fn an_edited_file_is_not_re_served() -> Result<()> {
    let (a, b, e) = owner_member_and_endpoint().await?;
    let src = temp_dir("rdrop-src-")?.join("data.bin");
    let data = random_file(&src, 2 * MIB)?;
    let file = Hash::new(&data);
    let share = a.share_to(&src, &["team"]).await?;
    let root: Hash = share.share.as_ref().context("share")?.hash.parse()?;
    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&share.ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    let b_addr = addr_of(&b, &b.id().await?)?;
    eventually("b serves a member", || async {
        let r = ask(&e, b_addr.clone(), root, file).await;
        r.is_ok()
    })
    .await?;
    // The same bytes written again: only its times and change time move.
    let placed = out.join("data.bin");
    let mut edited = data.clone();
    edited[MIB] ^= 0xff;
    std::fs::write(&placed, &edited)?;
    assert_eq!(
        ask(&e, b_addr.clone(), root, file).await,
        Err(Some(ERR_NOT_HELD))
    );
    Ok(())
}

/// A fetch takes from the owner and a member at once: with the owner's
/// upload limited, most bytes come from the member, and the owner serves
/// less than the content.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_takes_from_the_owner_and_members() -> Result<()> {
    let a = TestDaemon::start_with(|c| {
        c.roster_valid = VALID;
        c.limits.up = Some(2 * MIB as u64);
    })
    .await?;
    let b = TestDaemon::start().await?;
    let c = TestDaemon::start().await?;
    team(&a).await?;
    add(&a, "team", b.id().await?).await?;
    add(&a, "team", c.id().await?).await?;
    let src = temp_dir("rdrop-src-")?.join("data.bin");
    let data = random_file(&src, 12 * MIB)?;
    let share = a.share_to(&src, &["team"]).await?;
    let hash = share.share.as_ref().context("share")?.hash.clone();
    let t = b
        .wait(b.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?)
        .await?;
    assert!(completed(&t), "{t:?}");
    let served_a = a
        .list_shares()
        .await?
        .iter()
        .find(|s| s.hash == hash)
        .map(|s| s.bytes_served)
        .unwrap_or(0);

    let out = temp_dir("rdrop-out-")?;
    let t = c.wait(c.fetch(&share.ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("data.bin"))?, data);
    let from_b = served(&b).await?;
    let from_a = a
        .list_shares()
        .await?
        .iter()
        .find(|s| s.hash == hash)
        .map(|s| s.bytes_served)
        .unwrap_or(0)
        - served_a;
    eprintln!(
        "owner served {from_a}, member served {from_b} of {}",
        data.len()
    );
    assert!(from_b > data.len() as u64 / 2, "the member served {from_b}");
    assert!(from_a < data.len() as u64 / 2, "the owner served {from_a}");
    Ok(())
}

/// A hostile member that claims everything and serves garbage: its
/// ranges are rejected, it is dropped, the fetch completes from the owner.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_member_is_dropped_and_the_fetch_completes() -> Result<()> {
    // The owner slow enough that the liar is asked before the owner is done.
    logs();
    let a = TestDaemon::start_with(|c| {
        c.roster_valid = VALID;
        c.limits.up = Some(4 * MIB as u64);
    })
    .await?;
    let c = TestDaemon::start().await?;
    let liar = loopback_endpoint().await?;
    let liar_addr = loopback_addr(&liar);
    team(&a).await?;
    add(&a, "team", c.id().await?).await?;
    add(&a, "team", liar.id().to_string()).await?;
    let src = temp_dir("rdrop-src-")?.join("data.bin");
    let data = random_file(&src, 8 * MIB)?;
    let share = a.share_to(&src, &["team"]).await?;
    let root: Hash = share.share.as_ref().context("share")?.hash.parse()?;
    // The liar tells the owner where it is (so the roster lists it).
    let a_addr = addr_of(&a, &a.id().await?)?;
    let conn = liar.connect(a_addr, ringdropd::swarm::ALPN).await?;
    let rosters =
        ringdropd::swarm::client::rosters(&conn, &root, liar_addr.ip_addrs().copied().collect())
            .await
            .map_err(anyhow::Error::msg)?;
    assert_eq!(rosters.len(), 1);
    let router = Router::builder(liar)
        .accept(ringdropd::swarm::ALPN, Liar)
        .spawn();

    let out = temp_dir("rdrop-out-")?;
    let t = c.wait(c.fetch(&share.ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("data.bin"))?, data);
    assert!(Liar::served() > 0, "the liar was never asked");
    router.shutdown().await?;
    Ok(())
}

/// Claims to hold every chunk of file 0, and answers a GET with the right
/// size and random bytes.
#[derive(Debug, Clone)]
struct Liar;

static LIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Liar {
    fn served() -> u64 {
        LIED.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl iroh::protocol::ProtocolHandler for Liar {
    async fn accept(
        &self,
        conn: iroh::endpoint::Connection,
    ) -> Result<(), iroh::protocol::AcceptError> {
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let mut kind = [0u8; 1];
            if recv.read_exact(&mut kind).await.is_err() {
                return Ok(());
            }
            let Ok(body) = recv.read_to_end(64 * 1024).await else {
                return Ok(());
            };
            if kind[0] == ringdropd::swarm::ASK_HAVE {
                let reply = HaveReply {
                    files: vec![(0, vec![0, 1 << 40])],
                    coming: vec![],
                };
                send.write_all(&postcard::to_stdvec(&reply).unwrap_or_default())
                    .await
                    .ok();
                send.finish().ok();
            } else if kind[0] == 0 {
                let Ok(req) = postcard::from_bytes::<GetRequest>(&body) else {
                    return Ok(());
                };
                let size = 8 * MIB as u64;
                send.write_all(&size.to_le_bytes()).await.ok();
                let junk = vec![0x5au8; 2 * MIB];
                LIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                send.write_all(&junk).await.ok();
                send.finish().ok();
                let _ = req;
            }
            send.stopped().await.ok();
        }
        Ok(())
    }
}

/// A fetch from the owner and two members: one member is killed half way,
/// the other removed from the ring half way (refused by itself within the
/// roster's validity); the fetch completes from who is left, verified.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_survives_a_member_killed_and_one_revoked() -> Result<()> {
    logs();
    let slow = |c: &mut ringdropd::Config| c.limits.up = Some(2 * MIB as u64);
    let a = TestDaemon::start_with(|c| {
        c.roster_valid = VALID;
        slow(c);
    })
    .await?;
    let b1 = TestDaemon::start_with(slow).await?;
    let b2 = TestDaemon::start_with(slow).await?;
    let c = TestDaemon::start().await?;
    team(&a).await?;
    for d in [&b1, &b2, &c] {
        add(&a, "team", d.id().await?).await?;
    }
    let src = temp_dir("rdrop-src-")?.join("data.bin");
    let data = random_file(&src, 24 * MIB)?;
    let share = a.share_to(&src, &["team"]).await?;
    for b in [&b1, &b2] {
        let t = b
            .wait(b.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?)
            .await?;
        assert!(completed(&t), "{t:?}");
    }
    let out = temp_dir("rdrop-out-")?;
    let id = c.fetch(&share.ticket, &out).await?;
    let half = c
        .wait_until(id, |t| {
            t.bytes_total > 0 && t.bytes_done * 3 >= t.bytes_total
        })
        .await?;
    // Both members were serving it.
    let from = |t: &pb::Transfer, d: &str| {
        t.providers
            .iter()
            .find(|p| p.endpoint_id == d)
            .map(|p| p.bytes)
            .unwrap_or(0)
    };
    let (b1_id, b2_id) = (b1.id().await?, b2.id().await?);
    assert!(
        from(&half, &b1_id) > 0 && from(&half, &b2_id) > 0,
        "{half:?}"
    );
    drop(b1);
    remove(&a, "team", b2_id.clone()).await?;
    let t = c.wait(id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("data.bin"))?, data);
    // The one removed stops re-serving within the roster's validity.
    let e = loopback_endpoint().await?;
    add(&a, "team", e.id().to_string()).await?;
    let root: Hash = share.share.as_ref().context("share")?.hash.parse()?;
    let b2_addr = addr_of(&b2, &b2_id)?;
    tokio::time::sleep(VALID + Duration::from_secs(1)).await;
    assert_eq!(
        ask(&e, b2_addr, root, Hash::new(&data)).await,
        Err(Some(ERR_PERMISSION))
    );
    Ok(())
}

/// The owner turns re-serving off for one share (and on again); a member
/// fetches with --no-reserve; `transfers show` says which is which.
#[tokio::test(flavor = "multi_thread")]
async fn re_serving_is_off_per_share_and_per_fetch() -> Result<()> {
    let (a, b, e) = owner_member_and_endpoint().await?;
    let src = temp_dir("rdrop-src-")?.join("data.bin");
    let data = random_file(&src, MIB)?;
    let file = Hash::new(&data);
    let share_with = |reserve: Option<bool>| pb::ShareRequest {
        path: src.display().to_string(),
        rings: vec!["team".into()],
        reserve,
        ..Default::default()
    };
    let share = a.share_req(share_with(Some(false))).await?;
    let root: Hash = share.share.as_ref().context("share")?.hash.parse()?;
    let id = b.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?;
    let t = b.wait(id).await?;
    assert!(completed(&t), "{t:?}");
    let b_addr = addr_of(&b, &b.id().await?)?;
    // No roster lists the share: it is not a swarm, nothing is re-served.
    assert_eq!(
        ask(&e, b_addr.clone(), root, file).await,
        Err(Some(ERR_PERMISSION))
    );
    assert_eq!(t.serving, "", "{t:?}");
    // On again: the fetches from then on are re-served.
    a.share_req(share_with(Some(true))).await?;
    let b1 = TestDaemon::start().await?;
    add(&a, "team", b1.id().await?).await?;
    let id1 = b1.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?;
    assert!(completed(&b1.wait(id1).await?));
    let b1_addr = addr_of(&b1, &b1.id().await?)?;
    eventually("b1 serves", || async {
        ask(&e, b1_addr.clone(), root, file).await.ok() == Some(data.clone())
    })
    .await?;
    let show = b1
        .transfers()
        .get_transfer(pb::GetTransferRequest { id: id1 })
        .await?
        .into_inner();
    assert_eq!(
        show.serving, "re-served to the members of its ring",
        "{show:?}"
    );

    // A member's own choice, per fetch.
    let b2 = TestDaemon::start().await?;
    add(&a, "team", b2.id().await?).await?;
    let id2 = b2
        .transfers()
        .fetch(pb::FetchRequest {
            ticket: share.ticket.clone(),
            out: temp_dir("rdrop-out-")?.display().to_string(),
            no_reserve: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .transfer
        .context("no transfer")?
        .id;
    let t = b2.wait(id2).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(
        t.serving,
        "not re-served to the ring: fetched with --no-reserve"
    );
    let b2_addr = addr_of(&b2, &b2.id().await?)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ask(&e, b2_addr, root, file).await,
        Err(Some(ERR_PERMISSION))
    );
    Ok(())
}
