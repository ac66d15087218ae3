//! Rings: access control from grant to revocation, with three daemons.

use anyhow::Result;
use iroh_blobs::{
    protocol::{GetRequest, ERR_PERMISSION},
    ticket::BlobTicket,
};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{completed, list_tree, plain_node, random_file, temp_dir, TestDaemon};

const MIB: u64 = 1024 * 1024;

fn failed(t: &pb::Transfer) -> bool {
    t.state == pb::TransferState::Failed as i32
}

async fn ring_with(a: &TestDaemon, ring: &str, members: &[&TestDaemon]) -> Result<()> {
    a.rings()
        .create_ring(pb::CreateRingRequest { name: ring.into() })
        .await?;
    for m in members {
        a.rings()
            .add_member(pb::AddMemberRequest {
                ring: ring.into(),
                peer: m.id().await?,
                expires_at: 0,
            })
            .await?;
    }
    Ok(())
}

async fn three_daemons() -> Result<(TestDaemon, TestDaemon, TestDaemon)> {
    Ok((
        TestDaemon::start().await?,
        TestDaemon::start().await?,
        TestDaemon::start().await?,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn members_fetch_others_are_refused_open_is_open() -> Result<()> {
    let (a, b, c) = three_daemons().await?;
    ring_with(&a, "team", &[&b]).await?;
    let src = temp_dir("rdrop-src-")?.join("team.bin");
    let data = random_file(&src, 300_000)?;
    let share = a.share_to(&src, &["team"]).await?;
    assert_eq!(share.share.as_ref().unwrap().rings, vec!["team"]);

    let out_b = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&share.ticket, &out_b).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out_b.join("team.bin"))?, data);

    let out_c = temp_dir("rdrop-out-")?;
    let t = c.wait(c.fetch(&share.ticket, &out_c).await?).await?;
    assert!(failed(&t), "{t:?}");
    let c_id = c.id().await?;
    assert_eq!(
        t.last_error,
        format!(
            "refused by {}: this endpoint ({c_id}) may not fetch this share (it is not shared with you, or you are not in its rings)",
            a.id().await?
        )
    );
    assert_eq!(t.attempts, 1, "a refusal is not retried");
    assert!(list_tree(&out_c).is_empty());

    // The same content shared to "open" too: now C may fetch.
    let again = a.share_to(&src, &["open"]).await?;
    assert!(!again.created);
    let mut rings = again.share.unwrap().rings;
    rings.sort();
    assert_eq!(rings, vec!["open", "team"]);
    let t = c.wait(c.fetch(&share.ticket, &out_c).await?).await?;
    assert!(completed(&t), "{t:?}");

    let status = a
        .node()
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    assert!(
        status.requests_refused >= 1 && status.requests_allowed >= 2,
        "{status:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ring_is_an_error_and_expired_members_are_refused() -> Result<()> {
    let (a, b) = (TestDaemon::start().await?, TestDaemon::start().await?);
    let src = temp_dir("rdrop-src-")?.join("x.bin");
    random_file(&src, 10_000)?;
    let err = a
        .shares()
        .share(pb::ShareRequest {
            path: src.display().to_string(),
            rings: vec!["nope".into()],
            ..Default::default()
        })
        .await;
    let err = match err {
        Err(e) => e,
        Ok(s) => s
            .into_inner()
            .message()
            .await
            .expect_err("unknown ring accepted"),
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("ring create nope"),
        "{}",
        err.message()
    );

    a.rings()
        .create_ring(pb::CreateRingRequest {
            name: "temp".into(),
        })
        .await?;
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        - 10;
    let m = a
        .rings()
        .add_member(pb::AddMemberRequest {
            ring: "temp".into(),
            peer: b.id().await?,
            expires_at: past,
        })
        .await?
        .into_inner();
    assert!(m.expired);
    let share = a.share_to(&src, &["temp"]).await?;
    let t = b
        .wait(b.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?)
        .await?;
    assert!(
        failed(&t) && t.last_error.starts_with("refused by"),
        "{t:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_a_member_stops_its_running_transfer() -> Result<()> {
    let a = TestDaemon::start_with(|c| c.limits.up = Some(32 * MIB)).await?;
    let b = TestDaemon::start().await?;
    ring_with(&a, "team", &[&b]).await?;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    random_file(&src, (96 * MIB) as usize)?;
    let share = a.share_to(&src, &["team"]).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&share.ticket, &out).await?;
    let moving = b.wait_until(id, |t| t.bytes_done > 4 * MIB).await?;
    assert!(!completed(&moving));

    // The provider shows the upload.
    let uploads = a
        .node()
        .list_uploads(pb::ListUploadsRequest {})
        .await?
        .into_inner()
        .uploads;
    let b_id = b.id().await?;
    assert!(uploads.iter().any(|u| u.peer == b_id), "{uploads:?}");

    a.rings()
        .remove_member(pb::RemoveMemberRequest {
            ring: "team".into(),
            peer: b.id().await?,
        })
        .await?;
    let t = b.wait(id).await?;
    assert!(failed(&t), "transfer should stop after revocation: {t:?}");
    assert!(t.last_error.starts_with("refused by"), "{}", t.last_error);
    assert!(t.bytes_done < t.bytes_total);
    assert!(list_tree(&out).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn child_of_restricted_collection_is_refused_by_hash() -> Result<()> {
    let (a, b) = (TestDaemon::start().await?, TestDaemon::start().await?);
    ring_with(&a, "team", &[&b]).await?;
    let root = temp_dir("rdrop-src-")?.join("d");
    random_file(&root.join("one.bin"), 40_000)?;
    let share = a.share_req_blob(&root, &["team"]).await?;
    // B (a member) gets the collection and learns the child hash.
    let out = temp_dir("rdrop-out-")?;
    assert!(completed(&b.wait(b.fetch(&share, &out).await?).await?));
    let child = iroh_blobs::Hash::new(std::fs::read(out.join("d/one.bin"))?);

    // A stranger asks for the child by hash, as a raw blob: refused.
    let t: BlobTicket = share.parse()?;
    let (store, router, _) = plain_node().await?;
    let conn = router
        .endpoint()
        .connect(t.addr().clone(), iroh_blobs::ALPN)
        .await?;
    let res = store
        .remote()
        .execute_get(conn, GetRequest::blob(child))
        .await;
    let code = res
        .expect_err("child served to a stranger")
        .iroh_error_code();
    assert_eq!(code, Some(ERR_PERMISSION));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_ls_shows_only_what_the_asker_may_fetch() -> Result<()> {
    let (a, b, c) = three_daemons().await?;
    ring_with(&a, "team", &[&b]).await?;
    ring_with(&a, "other", &[&c]).await?;
    let dir = temp_dir("rdrop-src-")?;
    for (name, ring) in [
        ("team.txt", "team"),
        ("other.txt", "other"),
        ("unlisted.txt", "open"),
    ] {
        random_file(&dir.join(name), 1000)?;
        a.share_to(&dir.join(name), &[ring]).await?;
    }
    // Open shares are listed only when their owner asks.
    random_file(&dir.join("public.txt"), 1000)?;
    a.share_listed(&dir.join("public.txt")).await?;
    // B names A in its address book, from a ticket (so it knows A's addresses).
    let ticket = a.list_shares().await?[0].ticket.clone();
    b.peers()
        .add_peer(pb::AddPeerRequest {
            name: "alice".into(),
            endpoint: ticket.clone(),
        })
        .await?;
    let names = |r: pb::RemoteListResponse| {
        let mut n: Vec<String> = r.shares.into_iter().map(|s| s.name).collect();
        n.sort();
        n
    };
    let seen_b = b
        .peers()
        .remote_list(pb::RemoteListRequest {
            peer: "alice".into(),
        })
        .await?;
    assert_eq!(names(seen_b.into_inner()), vec!["public.txt", "team.txt"]);
    let seen_c = c
        .peers()
        .remote_list(pb::RemoteListRequest { peer: ticket })
        .await?;
    assert_eq!(names(seen_c.into_inner()), vec!["other.txt", "public.txt"]);

    // The tickets it hands out work.
    let r = b
        .peers()
        .remote_list(pb::RemoteListRequest {
            peer: "alice".into(),
        })
        .await?
        .into_inner();
    let team = r.shares.iter().find(|s| s.name == "team.txt").unwrap();
    let out = temp_dir("rdrop-out-")?;
    assert!(completed(
        &b.wait(b.fetch(&team.ticket, &out).await?).await?
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_survives_a_restart_and_ring_removal_closes_access() -> Result<()> {
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    ring_with(&a, "team", &[&b]).await?;
    a.peers()
        .add_peer(pb::AddPeerRequest {
            name: "bob".into(),
            endpoint: b.id().await?,
        })
        .await?;
    let src = temp_dir("rdrop-src-")?.join("keep.bin");
    random_file(&src, 5000)?;
    let share = a.share_to(&src, &["team"]).await?;

    let a = a.restart().await?;
    let rings = a
        .rings()
        .list_rings(pb::ListRingsRequest {})
        .await?
        .into_inner()
        .rings;
    assert!(
        rings.iter().any(|r| r.name == "team" && r.members == 1),
        "{rings:?}"
    );
    assert!(rings.iter().any(|r| r.name == "open"));
    let members = a
        .rings()
        .list_members(pb::ListMembersRequest {
            ring: "team".into(),
        })
        .await?;
    assert_eq!(members.into_inner().members[0].name, "bob");
    let shares = a.list_shares().await?;
    assert_eq!(shares[0].rings, vec!["team"]);
    let t = b
        .wait(b.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?)
        .await?;
    assert!(completed(&t), "{t:?}");

    // Removing the ring leaves the share reachable by nobody (not "open").
    a.rings()
        .remove_ring(pb::RemoveRingRequest {
            name: "team".into(),
        })
        .await?;
    let shares = a.list_shares().await?;
    assert!(shares[0].rings.is_empty());
    let b2 = TestDaemon::start().await?;
    let t = b2
        .wait(b2.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?)
        .await?;
    assert!(failed(&t), "{t:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_source_is_marked_not_served_and_refreshed_by_sharing_again() -> Result<()> {
    let (a, b) = (TestDaemon::start().await?, TestDaemon::start().await?);
    let src = temp_dir("rdrop-src-")?.join("doc.txt");
    std::fs::write(&src, b"version one")?;
    let first = a.share(&src).await?;
    std::fs::write(&src, b"version two, longer")?;
    let list = a.list_shares().await?;
    assert!(list[0].changed, "{list:?}");
    let t = b
        .wait(b.fetch(&first.ticket, &temp_dir("rdrop-out-")?).await?)
        .await?;
    assert!(failed(&t), "changed file must not be served: {t:?}");

    // Touched but unchanged bytes: marked, and sharing again serves it again.
    let same = temp_dir("rdrop-src-")?.join("touch.txt");
    std::fs::write(&same, b"stable")?;
    let touched = a.share(&same).await?;
    std::fs::write(&same, b"stable")?;
    let set_old = std::process::Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(&same)
        .status()?;
    assert!(set_old.success());
    let list = a.list_shares().await?;
    assert!(list.iter().any(|s| s.name == "touch.txt" && s.changed));
    assert!(!a.share(&same).await?.created);
    let t = b
        .wait(b.fetch(&touched.ticket, &temp_dir("rdrop-out-")?).await?)
        .await?;
    assert!(
        completed(&t),
        "re-shared touched file must be served: {t:?}"
    );

    let second = a.share(&src).await?;
    assert!(second.created);
    let list = a.list_shares().await?;
    let docs: Vec<_> = list.iter().filter(|s| s.name == "doc.txt").collect();
    assert_eq!(docs.len(), 1, "the old share is replaced");
    assert!(!docs[0].changed);
    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&second.ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("doc.txt"))?, b"version two, longer");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_sees_only_listed_open_shares() -> Result<()> {
    let (a, b, stranger) = three_daemons().await?;
    ring_with(&a, "team", &[&b]).await?;
    let dir = temp_dir("rdrop-src-")?;
    for name in ["quiet.txt", "listed.txt", "team.txt"] {
        random_file(&dir.join(name), 1000)?;
    }
    let quiet = a.share(&dir.join("quiet.txt")).await?;
    a.share_listed(&dir.join("listed.txt")).await?;
    a.share_to(&dir.join("team.txt"), &["team"]).await?;
    let names = |d: &TestDaemon, peer: String| {
        let mut peers = d.peers();
        async move {
            let r = peers
                .remote_list(pb::RemoteListRequest { peer })
                .await?
                .into_inner();
            let mut n: Vec<String> = r.shares.into_iter().map(|s| s.name).collect();
            n.sort();
            anyhow::Ok(n)
        }
    };
    // Anyone who can reach the node (its id is no secret) learns only what
    // its owner listed.
    assert_eq!(
        names(&stranger, quiet.ticket.clone()).await?,
        vec!["listed.txt"]
    );
    assert_eq!(
        names(&b, quiet.ticket.clone()).await?,
        vec!["listed.txt", "team.txt"]
    );
    // The unlisted open share still serves whoever holds its ticket.
    let t = stranger
        .wait(
            stranger
                .fetch(&quiet.ticket, &temp_dir("rdrop-out-")?)
                .await?,
        )
        .await?;
    assert!(completed(&t), "{t:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_share_whose_rings_are_gone_stays_closed_when_shared_again() -> Result<()> {
    let (a, b) = (TestDaemon::start().await?, TestDaemon::start().await?);
    ring_with(&a, "team", &[&b]).await?;
    let dir = temp_dir("rdrop-src-")?.join("project");
    random_file(&dir.join("notes.txt"), 2000)?;
    a.share_to(&dir, &["team"]).await?;
    a.rings()
        .remove_ring(pb::RemoveRingRequest {
            name: "team".into(),
        })
        .await?;
    // The same content again, and the path again after an edit: neither
    // opens it up without `--ring open`.
    let same = a.share(&dir).await?;
    assert!(same.share.unwrap().rings.is_empty());
    random_file(&dir.join("notes.txt"), 2001)?;
    let edited = a.share(&dir).await?;
    assert!(edited.created);
    assert!(
        edited.share.as_ref().unwrap().rings.is_empty(),
        "{edited:?}"
    );
    let stranger = TestDaemon::start().await?;
    let t = stranger
        .wait(
            stranger
                .fetch(&edited.ticket, &temp_dir("rdrop-out-")?)
                .await?,
        )
        .await?;
    assert!(failed(&t), "{t:?}");
    // Asked for, it opens.
    let opened = a.share_to(&dir, &["open"]).await?;
    assert_eq!(opened.share.unwrap().rings, vec!["open"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_that_keeps_size_and_mtime_is_not_served() -> Result<()> {
    let (a, b) = (TestDaemon::start().await?, TestDaemon::start().await?);
    let src = temp_dir("rdrop-src-")?.join("doc.bin");
    let mut data = random_file(&src, 100_000)?;
    let share = a.share(&src).await?;
    // dd conv=notrunc, then touch -r: same size, same mtime, other bytes.
    let before = std::fs::metadata(&src)?;
    data[500] ^= 0xff;
    {
        use std::{io::Write, os::unix::fs::FileExt};
        let f = std::fs::OpenOptions::new().write(true).open(&src)?;
        f.write_all_at(&data[500..501], 500)?;
        (&f).flush()?;
    }
    let status = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!(
            "@{}.{:09}",
            before
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs(),
            before
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)?
                .subsec_nanos()
        ))
        .arg(&src)
        .status()?;
    assert!(status.success());
    let after = std::fs::metadata(&src)?;
    assert_eq!(
        (after.len(), after.modified()?),
        (before.len(), before.modified()?)
    );
    // Not served: the change time moved, whatever mtime says.
    let t = b
        .wait(b.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?)
        .await?;
    assert!(failed(&t), "{t:?}");
    let shares = a.list_shares().await?;
    assert!(shares[0].changed, "{shares:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_reads_as_an_endpoint_id_is_refused() -> Result<()> {
    let (a, b) = (TestDaemon::start().await?, TestDaemon::start().await?);
    let b_id = b.id().await?;
    // "bob" may not be named by another endpoint's id: later `ring
    // add-member team <that id>` would resolve to bob.
    let other = TestDaemon::start().await?.id().await?;
    let err = a
        .peers()
        .add_peer(pb::AddPeerRequest {
            name: other.clone(),
            endpoint: b_id.clone(),
        })
        .await
        .expect_err("an id accepted as a name");
    assert!(err.message().contains("reads as an endpoint id"), "{err}");
    let peers = a
        .peers()
        .list_peers(pb::ListPeersRequest {})
        .await?
        .into_inner();
    assert!(peers.peers.is_empty(), "{peers:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn names_from_peers_are_printed_without_terminal_escapes() -> Result<()> {
    let (a, b) = (TestDaemon::start().await?, TestDaemon::start().await?);
    let hostile = "clear\u{1b}[2J\u{1b}]0;owned\u{7}.txt";
    let src = temp_dir("rdrop-src-")?.join(hostile);
    random_file(&src, 100)?;
    let share = a.share_listed(&src).await?;
    let out = std::process::Command::new(ringdrop_tests::bin("ringdropctl")?)
        .arg("--socket")
        .arg(&b.socket)
        .args(["remote", "ls", &share.ticket])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("clear"), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    Ok(())
}

/// A provider serving at most 4 MiB/s, so a transfer is still running when
/// access ends.
async fn slow_provider() -> Result<TestDaemon> {
    TestDaemon::start_with(|c| c.limits.up = Some(4 * MIB)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_ends_a_running_transfer_at_once() -> Result<()> {
    let a = slow_provider().await?;
    let b = TestDaemon::start().await?;
    a.rings()
        .create_ring(pb::CreateRingRequest {
            name: "team".into(),
        })
        .await?;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64
        + 3;
    a.rings()
        .add_member(pb::AddMemberRequest {
            ring: "team".into(),
            peer: b.id().await?,
            expires_at: until,
        })
        .await?;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    random_file(&src, 64 * MIB as usize)?;
    let share = a.share_to(&src, &["team"]).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&share.ticket, &out).await?;
    // Started while a member; at 4 MiB/s it needs 16 s; membership ends
    // after 3: the running request ends then, not when it is done.
    let t = b.wait(id).await?;
    assert!(failed(&t), "{t:?}");
    assert!(t.bytes_done < t.bytes_total / 2, "{t:?}");
    assert!(t.last_error.contains("may not fetch"), "{}", t.last_error);
    assert!(list_tree(&out).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_a_shared_file_ends_its_running_uploads() -> Result<()> {
    let a = slow_provider().await?;
    let b = TestDaemon::start().await?;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    random_file(&src, 64 * MIB as usize)?;
    let share = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&share.ticket, &out).await?;
    b.wait_until(id, |t| t.bytes_done > MIB).await?;
    // Appended to while it is being served: what is served from now on
    // would not be what was shared.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&src)?;
        f.write_all(b"more")?;
    }
    let t = b.wait(id).await?;
    assert!(failed(&t), "{t:?}");
    assert!(t.bytes_done < t.bytes_total, "{t:?}");
    assert!(list_tree(&out).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_content_from_an_edited_other_path_is_not_served() -> Result<()> {
    let (a, stranger) = (TestDaemon::start().await?, TestDaemon::start().await?);
    ring_with(&a, "team", &[]).await?;
    // The same bytes from two paths: a private one (restricted) and a
    // public one (open). The store keeps both paths for the one blob and
    // reads the first that opens, in path order: "a-private" first.
    let dir = temp_dir("rdrop-src-")?;
    // Other names, so two shares (two collections) of one blob.
    let private = dir.join("a-private").join("secret.bin");
    let public = dir.join("b-public").join("doc.bin");
    let data = random_file(&private, 200_000)?;
    std::fs::create_dir_all(public.parent().unwrap())?;
    std::fs::write(&public, &data)?;
    a.share_to(&private, &["team"]).await?;
    let open = a.share(&public).await?;
    // The private file is edited in place, size and mtime put back.
    let before = std::fs::metadata(&private)?;
    let mut secret = data.clone();
    secret[..12].copy_from_slice(b"PRIVATE EDIT");
    std::fs::write(&private, &secret)?;
    let mtime = before.modified()?.duration_since(std::time::UNIX_EPOCH)?;
    let status = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("@{}.{:09}", mtime.as_secs(), mtime.subsec_nanos()))
        .arg(&private)
        .status()?;
    assert!(status.success());
    // The open share's own file is untouched, but its blob would be read
    // from the edited private file: refused, nothing of it leaves.
    let t = stranger
        .wait(
            stranger
                .fetch(&open.ticket, &temp_dir("rdrop-out-")?)
                .await?,
        )
        .await?;
    assert!(failed(&t), "{t:?}");
    assert!(t.last_error.contains("may not fetch"), "{}", t.last_error);
    let served = a
        .list_shares()
        .await?
        .iter()
        .map(|s| s.bytes_served)
        .sum::<u64>();
    assert_eq!(served, 0, "bytes of the edited file were served");
    // `shares ls` says why: both are marked changed, the open one too
    // (its own file is untouched).
    let changed: Vec<bool> = a.list_shares().await?.iter().map(|s| s.changed).collect();
    assert!(
        changed == [true, true],
        "shares ls does not show what is not served: {changed:?}"
    );
    Ok(())
}
