//! Contacts (real binaries, driven with `ringdropctl` as a user would):
//! from two fresh daemons to a file in the receiver's inbox with invite,
//! join and send (three commands, one copied string); deferred delivery to
//! a daemon that is off when the file is sent, accepted by itself when it
//! comes back, with the sender's receipt; offers from strangers refused
//! and never stored; a flood of offers from a member bounded.

use std::{path::Path, time::Duration};

use anyhow::{ensure, Context, Result};
use ringdrop_tests::{random_file, temp_dir, BinDaemon};
use serde_json::Value;

/// Polls `ringdropctl --json LIST` until `pick` finds something.
async fn until(
    d: &BinDaemon,
    list: &[&str],
    pick: impl Fn(&Value) -> Option<Value>,
) -> Result<Value> {
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        loop {
            let v = d.ctl_json(list)?;
            if let Some(found) = pick(&v) {
                return anyhow::Ok(found);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .with_context(|| format!("waited for {list:?}"))?
}

fn first_with<'a>(v: &'a Value, key: &str, want: &str) -> Option<&'a Value> {
    v.as_array()?.iter().find(|o| o[key] == want)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("path")
}

/// The name `a` gave `b` when `b` joined.
fn name_of(a: &BinDaemon, b: &BinDaemon) -> Result<String> {
    let id = b.ctl_json(&["status"])?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string();
    let book = a.ctl_json(&["peer", "ls"])?;
    Ok(
        first_with(&book, "endpoint_id", &id).context("not in the address book")?["name"]
            .as_str()
            .context("name")?
            .to_string(),
    )
}

/// `b` joins `a`'s ring `friends` by invite (naming `a` "alice"); the
/// name `a` gave `b`.
fn befriend(a: &BinDaemon, b: &BinDaemon) -> Result<String> {
    let invite = a.ctl_json(&["ring", "invite", "friends"])?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    b.ctl_json(&["ring", "join", &invite, "--name", "alice"])?;
    name_of(a, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn invite_join_send_puts_a_file_in_the_inbox() -> Result<()> {
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let src = temp_dir("rdrop-src-")?.join("minutes.pdf");
    let data = random_file(&src, 300_000)?;

    // The three commands, one copied string.
    let invite = a.ctl_json(&["ring", "invite", "friends"])?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    b.ctl_json(&["ring", "join", &invite, "--name", "alice"])?;
    let bob = name_of(&a, &b)?;
    let sent = a.ctl_json(&["send", path(&src)?, "--to", &bob])?;
    let offer_id = sent["id"].as_u64().context("id")?;
    assert_eq!(sent["state"], "queued");

    let offer = until(&b, &["inbox"], |v| {
        first_with(v, "name", "minutes.pdf").cloned()
    })
    .await?;
    assert_eq!(offer["from_name"], "alice");
    assert_eq!(offer["size"], 300_000);
    until(&a, &["sent"], |v| {
        first_with(v, "state", "delivered").cloned()
    })
    .await?;

    let out = temp_dir("rdrop-out-")?;
    let id = offer["id"].as_u64().context("id")?.to_string();
    let accepted = b.ctl(&["inbox", "accept", &id, "--out", path(&out)?])?;
    ensure!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    assert_eq!(std::fs::read(out.join("minutes.pdf"))?, data);

    // The receipt reaches the sender; the access the send created ends.
    let done = until(&a, &["sent"], |v| {
        first_with(v, "state", "completed").cloned()
    })
    .await?;
    assert_eq!(done["id"], offer_id);
    let ring = format!("offer-{offer_id}");
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        loop {
            let rings = a.ctl_json(&["ring", "ls"])?;
            let shares = a.ctl_json(&["shares", "ls"])?;
            if first_with(&rings, "name", &ring).is_none()
                && shares.as_array().is_some_and(|s| s.is_empty())
            {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .context("the offer's ring and share outlived it")??;
    let inbox = b.ctl_json(&["inbox"])?;
    assert_eq!(
        first_with(&inbox, "name", "minutes.pdf").context("kept")?["state"],
        "completed"
    );
    Ok(())
}

/// A UDP port free right now on loopback (for a daemon that must come
/// back on the same address).
fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offer_waits_for_a_daemon_that_is_off_and_arrives_by_itself() -> Result<()> {
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let bind = format!("127.0.0.1:{}", free_port()?);
    let mut b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &["--bind", &bind])?;
    let invite = a.ctl_json(&["ring", "invite", "family"])?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    b.ctl_json(&["ring", "join", &invite, "--name", "alice"])?;
    let inbox_dir = temp_dir("rdrop-inbox-")?;
    b.ctl_json(&[
        "peer",
        "trust",
        "alice",
        "--accept-into",
        path(&inbox_dir)?,
        "--max-size",
        "10M",
    ])?;
    let bob = name_of(&a, &b)?;

    b.terminate()?;
    let src = temp_dir("rdrop-src-")?.join("photos");
    let one = random_file(&src.join("1.jpg"), 2 << 20)?;
    let two = random_file(&src.join("2.jpg"), 1 << 20)?;
    let sent = a.ctl_json(&["send", path(&src)?, "--to", &bob])?;
    let id = sent["id"].as_u64().context("id")?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let waiting = a.ctl_json(&["sent"])?;
    let waiting = waiting.as_array().context("array")?[0].clone();
    assert_eq!(waiting["state"], "queued", "{waiting}");
    assert!(waiting["attempts"].as_u64().unwrap_or(0) >= 2, "{waiting}");

    // Back on: no command on either side from here.
    b.restart()?;
    let done = until(&a, &["sent"], |v| {
        first_with(v, "state", "completed").cloned()
    })
    .await?;
    assert_eq!(done["id"], id);
    assert_eq!(std::fs::read(inbox_dir.join("photos/1.jpg"))?, one);
    assert_eq!(std::fs::read(inbox_dir.join("photos/2.jpg"))?, two);
    Ok(())
}

/// Presence: a receiver that comes back on another port (relays and mDNS
/// off) tells its contacts where it is now; the offer queued for it
/// arrives with no command on either side, and the sender's address book
/// has the new address.
#[tokio::test(flavor = "multi_thread")]
async fn an_offer_reaches_a_receiver_back_on_another_port() -> Result<()> {
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let old = format!("127.0.0.1:{}", free_port()?);
    let mut b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &["--bind", &old])?;
    let inbox_dir = temp_dir("rdrop-inbox-")?;
    let bob = befriend(&a, &b)?;
    b.ctl_json(&["peer", "trust", "alice", "--accept-into", path(&inbox_dir)?])?;

    b.terminate()?;
    let src = temp_dir("rdrop-src-")?.join("notes.bin");
    let data = random_file(&src, 1 << 20)?;
    a.ctl_json(&["send", path(&src)?, "--to", &bob])?;
    until(&a, &["sent"], |v| {
        let o = v.as_array()?.first()?;
        (o["attempts"].as_u64()? >= 1).then(|| o.clone())
    })
    .await?;

    let new = format!("127.0.0.1:{}", free_port()?);
    let at = b
        .args
        .iter()
        .position(|x| x == "--bind")
        .context("--bind")?;
    b.args[at + 1] = new.clone();
    b.restart()?;
    let done = until(&a, &["sent"], |v| {
        first_with(v, "state", "completed").cloned()
    })
    .await?;
    assert_eq!(done["name"], "notes.bin", "{done}");
    assert_eq!(std::fs::read(inbox_dir.join("notes.bin"))?, data);
    let book = a.ctl_json(&["peer", "ls"])?;
    let entry = first_with(&book, "name", &bob).context("bob in the book")?;
    assert!(
        entry.to_string().contains(&new),
        "the book has the new address: {entry}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn strangers_are_refused_and_a_members_flood_is_bounded() -> Result<()> {
    use ringdropd::offers::protocol::{offer, OfferMsg};
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let b_status = b.ctl_json(&["status"])?;
    let b_id: iroh::EndpointId = b_status["endpoint_id"].as_str().context("id")?.parse()?;
    let b_addr = iroh::EndpointAddr::new(b_id).with_ip_addr(
        b_status["direct_addresses"][0]
            .as_str()
            .context("address")?
            .parse()?,
    );
    let ep = ringdrop_tests::loopback_endpoint().await?;
    let own_ticket = |hash: u8| {
        ringdropd::ticket::Ticket::new(
            ringdrop_tests::loopback_addr(&ep),
            iroh_blobs::Hash::from_bytes([hash; 32]),
            Some("x".into()),
        )
        .to_string()
    };
    let msg = |id: u64| OfferMsg {
        id,
        name: format!("file {id}"),
        size: 1000,
        files: 1,
        ticket: own_ticket((id % 251) as u8),
    };

    // A stranger: refused, nothing stored.
    let r = offer(&ep, b_addr.clone(), msg(1))
        .await
        .map_err(anyhow::Error::msg)?;
    let why = r.expect_err("a stranger's offer was taken");
    assert!(why.contains("address book"), "{why}");
    assert!(b
        .ctl_json(&["inbox"])?
        .as_array()
        .context("array")?
        .is_empty());

    // A contact whose ticket names someone else: refused.
    b.ctl_json(&["peer", "add", "mallory", &ep.id().to_string()])?;
    let mut other = msg(2);
    other.ticket = ringdropd::ticket::Ticket::new(
        iroh::EndpointAddr::new(b_id),
        iroh_blobs::Hash::from_bytes([9; 32]),
        None,
    )
    .to_string();
    let why = offer(&ep, b_addr.clone(), other)
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(why.is_err(), "an offer of someone else's content was taken");

    // 10,000 offers from that contact, 16 at a time: the inbox keeps at
    // most 100 of theirs waiting and refuses the rest clearly; connections
    // beyond 4 at once are turned away as they arrive.
    use futures::StreamExt;
    let results: Vec<Result<Result<(), String>, String>> = futures::stream::iter(10..10_010u64)
        .map(|id| {
            let (ep, addr) = (ep.clone(), b_addr.clone());
            async move { offer(&ep, addr, msg(id)).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let stored = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    let refused: Vec<&String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok()?.as_ref().err())
        .collect();
    assert_eq!(
        stored,
        ringdropd::registry::MAX_PENDING_PER_PEER,
        "{:?}",
        results.iter().find(|r| r.is_err())
    );
    let turned_away: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refused.len() + turned_away.len(), 10_000 - stored);
    assert!(refused[0].contains("unanswered offers"), "{}", refused[0]);
    for e in &turned_away {
        assert!(e.contains("too many connections"), "{e}");
    }
    eprintln!(
        "10,000 offers: {stored} stored, {} refused, {} connections turned away",
        refused.len(),
        turned_away.len()
    );
    let inbox = b.ctl_json(&["inbox"])?;
    assert_eq!(inbox.as_array().context("array")?.len(), stored);
    let pid = b.child.id();
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmHWM")?;
    eprintln!(
        "receiver peak RSS after 10,000 offers: {} MB",
        rss_kb / 1000
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_and_withdrawn_offers_end_their_access() -> Result<()> {
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let bob = befriend(&a, &b)?;
    let dir = temp_dir("rdrop-src-")?;
    random_file(&dir.join("no.bin"), 50_000)?;
    random_file(&dir.join("later.bin"), 50_000)?;

    // Rejected by the receiver: the sender hears it, the access ends.
    let no = a.ctl_json(&["send", path(&dir.join("no.bin"))?, "--to", &bob])?["id"]
        .as_u64()
        .context("id")?;
    let offer = until(&b, &["inbox"], |v| first_with(v, "name", "no.bin").cloned()).await?;
    let id = offer["id"].as_u64().context("id")?.to_string();
    b.ctl_json(&["inbox", "reject", &id])?;
    until(&a, &["sent"], |v| {
        first_with(v, "state", "rejected").cloned()
    })
    .await?;

    // Withdrawn by the sender: a later accept gets nothing.
    let later = a.ctl_json(&["send", path(&dir.join("later.bin"))?, "--to", &bob])?["id"]
        .as_u64()
        .context("id")?;
    let offer = until(&b, &["inbox"], |v| {
        first_with(v, "name", "later.bin").cloned()
    })
    .await?;
    let w = a.ctl_json(&["sent", "withdraw", &later.to_string()])?;
    assert_eq!(w["state"], "withdrawn");
    let out = temp_dir("rdrop-out-")?;
    let id = offer["id"].as_u64().context("id")?.to_string();
    let tried = b.ctl(&["inbox", "accept", &id, "--out", path(&out)?])?;
    assert!(!tried.status.success(), "a withdrawn offer was fetched");
    assert!(String::from_utf8_lossy(&tried.stderr).contains("refused"));
    assert!(ringdrop_tests::list_tree(&out).is_empty());

    for n in [no, later] {
        let ring = format!("offer-{n}");
        tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
            while first_with(&a.ctl_json(&["ring", "ls"])?, "name", &ring).is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok(())
        })
        .await
        .context("the offer's ring outlived it")??;
    }
    Ok(())
}

/// A trusted sender's offer says 1,000 bytes (under the trust limit); the
/// content is 4 MiB: the fetch stops before the data and keeps nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_offer_that_lies_about_its_size_is_not_kept() -> Result<()> {
    use iroh_blobs::{format::collection::Collection, ticket::BlobTicket, BlobFormat};
    use ringdropd::offers::protocol::{offer, OfferMsg};
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let (store, router, addr) = ringdrop_tests::plain_node().await?;
    let data = vec![7u8; 4 << 20];
    let tt = store.add_bytes(data).temp_tag().await?;
    let collection: Collection = [("big.bin".to_string(), tt.hash())].into_iter().collect();
    let root = collection.store(&store).await?;
    let ticket = BlobTicket::new(addr.clone(), root.hash(), BlobFormat::HashSeq).to_string();

    let sender = router.endpoint().id().to_string();
    b.ctl_json(&["peer", "add", "mallory", &sender])?;
    let dir = temp_dir("rdrop-inbox-")?;
    b.ctl_json(&[
        "peer",
        "trust",
        "mallory",
        "--accept-into",
        path(&dir)?,
        "--max-size",
        "1M",
    ])?;
    let b_status = b.ctl_json(&["status"])?;
    let b_addr = iroh::EndpointAddr::new(b_status["endpoint_id"].as_str().context("id")?.parse()?)
        .with_ip_addr(
            b_status["direct_addresses"][0]
                .as_str()
                .context("addr")?
                .parse()?,
        );
    let lie = OfferMsg {
        id: 1,
        name: "small.txt".into(),
        size: 1000,
        files: 1,
        ticket,
    };
    offer(router.endpoint(), b_addr, lie)
        .await
        .map_err(anyhow::Error::msg)?
        .map_err(anyhow::Error::msg)?;
    let failed = until(&b, &["inbox"], |v| {
        first_with(v, "state", "failed").cloned()
    })
    .await?;
    let tid = failed["transfer_id"]
        .as_u64()
        .context("transfer")?
        .to_string();
    let t = b.ctl_json(&["transfers", "show", &tid])?;
    assert_eq!(t["state"], "failed", "{t}");
    assert!(
        t["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("the offer said 1000 bytes"),
        "{t}"
    );
    assert!(
        t["bytes_received"].as_u64().unwrap_or(u64::MAX) < 1 << 20,
        "{t}"
    );
    assert!(
        ringdrop_tests::list_tree(&dir).is_empty(),
        "{:?}",
        ringdrop_tests::list_tree(&dir)
    );
    drop(tt);
    Ok(())
}

/// Sharing a path `--listed` (open to anyone holding the ticket), editing
/// it and sending it: the new content is the offer's alone. A stranger
/// neither lists it nor fetches it, before or after the offer is
/// withdrawn.
#[tokio::test(flavor = "multi_thread")]
async fn an_offer_never_widens_access_to_new_content() -> Result<()> {
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let stranger = BinDaemon::spawn(&temp_dir("rdrop-c-")?, &[])?;
    let bob = befriend(&a, &b)?;

    let src = temp_dir("rdrop-src-")?.join("notes.txt");
    random_file(&src, 10_000)?;
    let open = a.ctl_json(&["share", path(&src)?, "--listed"])?;
    let open_ticket = open["ticket"].as_str().context("ticket")?.to_string();
    random_file(&src, 10_001)?; // edited: new content at the same path
    let sent = a.ctl_json(&["send", path(&src)?, "--to", &bob])?;
    let new_hash = sent["hash"].as_str().context("hash")?.to_string();
    ensure!(new_hash != open["hash"].as_str().unwrap_or_default());

    let shares = a.ctl_json(&["shares", "ls"])?;
    let new_share = shares
        .as_array()
        .and_then(|s| s.iter().find(|s| s["hash"] == new_hash.as_str()))
        .context("the offer's share")?;
    let new_ticket = new_share["ticket"].as_str().context("ticket")?.to_string();
    ensure!(new_share["listed"] == false, "{new_share}");
    ensure!(
        new_share["rings"].as_array().is_some_and(|r| r.len() == 1
            && r[0].as_str().is_some_and(|n| n.starts_with("offer-"))),
        "the offer's content has other rings: {new_share}"
    );

    let check_stranger = |when: &str| -> Result<()> {
        let listed = stranger.ctl(&["--json", "remote", "ls", &open_ticket])?;
        let text = String::from_utf8_lossy(&listed.stdout).to_string();
        ensure!(
            !text.contains(&new_hash),
            "{when}: a stranger lists it: {text}"
        );
        let out = temp_dir("rdrop-out-")?;
        let got = stranger.ctl(&["fetch", &new_ticket, "--out", path(&out)?])?;
        ensure!(
            !got.status.success(),
            "{when}: a stranger fetched the offer's content"
        );
        Ok(())
    };
    check_stranger("while offered")?;
    a.ctl_json(&[
        "sent",
        "withdraw",
        &sent["id"].as_u64().context("id")?.to_string(),
    ])?;
    check_stranger("after the withdrawal")?;
    Ok(())
}
