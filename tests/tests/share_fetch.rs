//! Two in-process daemons: share on one, fetch on the other.

use std::path::Path;

use anyhow::Result;
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{completed, list_tree, random_file, temp_dir, TestDaemon};

async fn round_trip(
    src: &Path,
) -> Result<(TestDaemon, TestDaemon, pb::Transfer, std::path::PathBuf)> {
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    let share = a.share(src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&share.ticket, &out).await?;
    let t = b.wait(id).await?;
    assert!(completed(&t), "transfer did not complete: {t:?}");
    Ok((a, b, t, out))
}

#[tokio::test(flavor = "multi_thread")]
async fn file_round_trip_bytes_equal() -> Result<()> {
    let src = temp_dir("rdrop-src-")?.join("data.bin");
    let data = random_file(&src, 3 * 1024 * 1024 + 17)?;
    let (_a, _b, t, out) = round_trip(&src).await?;
    assert_eq!(std::fs::read(out.join("data.bin"))?, data);
    assert_eq!(t.bytes_total, data.len() as u64);
    assert_eq!(t.bytes_done, data.len() as u64);
    assert_eq!(
        list_tree(&out),
        vec!["data.bin"],
        "no temp files left behind"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_round_trip_with_odd_names() -> Result<()> {
    let root = temp_dir("rdrop-src-")?.join("my photos");
    let files = [
        "a.txt",
        "sub dir/b c.bin",
        "sub dir/deeper/ünïcødé ✓.txt",
        "empty.dat",
    ];
    let mut expect = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let len = if f.starts_with("empty") {
            0
        } else {
            1000 * (i + 1) * 37
        };
        expect.push((f.to_string(), random_file(&root.join(f), len)?));
    }
    let (_a, _b, t, out) = round_trip(&root).await?;
    for (name, data) in &expect {
        let got = std::fs::read(out.join("my photos").join(name))?;
        assert_eq!(&got, data, "{name} differs");
    }
    assert_eq!(t.files.len(), files.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_byte_file() -> Result<()> {
    let src = temp_dir("rdrop-src-")?.join("empty");
    std::fs::write(&src, b"")?;
    let (_a, _b, t, out) = round_trip(&src).await?;
    assert_eq!(std::fs::read(out.join("empty"))?, b"");
    assert_eq!(t.bytes_total, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn out_names_the_new_file_and_existing_files_are_kept() -> Result<()> {
    let src = temp_dir("rdrop-src-")?.join("f.bin");
    let data = random_file(&src, 100_000)?;
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    let share = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let target = out.join("renamed.bin");
    let t = b.wait(b.fetch(&share.ticket, &target).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(&target)?, data);

    // Fetching onto an existing file fails without --force and keeps it.
    std::fs::write(&target, b"precious")?;
    let t = b.wait(b.fetch(&share.ticket, &target).await?).await?;
    assert!(!completed(&t));
    assert!(t.last_error.contains("already exists"), "{}", t.last_error);
    assert_eq!(std::fs::read(&target)?, b"precious");

    // With force it is replaced.
    let t = b
        .transfers()
        .fetch(pb::FetchRequest {
            ticket: share.ticket.clone(),
            out: target.display().to_string(),
            force: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .transfer
        .unwrap();
    let t = b.wait(t.id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(&target)?, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn resharing_is_idempotent_and_unshare_stops_serving() -> Result<()> {
    let src = temp_dir("rdrop-src-")?.join("x.bin");
    random_file(&src, 50_000)?;
    let a = TestDaemon::start().await?;
    let first = a.share(&src).await?;
    let again = a.share(&src).await?;
    assert!(first.created);
    assert!(!again.created);
    let hash = first.share.as_ref().unwrap().hash.clone();
    assert_eq!(hash, again.share.as_ref().unwrap().hash);
    let list = a
        .shares()
        .list_shares(pb::ListSharesRequest {})
        .await?
        .into_inner();
    assert_eq!(list.shares.len(), 1);

    a.shares()
        .unshare(pb::UnshareRequest {
            hash: hash[..10].to_string(),
        })
        .await?;
    let b = TestDaemon::start().await?;
    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&first.ticket, &out).await?).await?;
    assert!(!completed(&t));
    assert!(t.last_error.contains("refused by"), "{}", t.last_error);
    assert!(list_tree(&out).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_fetch_resumes_without_refetching() -> Result<()> {
    const SIZE: usize = 192 * 1024 * 1024;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, SIZE)?;
    // Paced (at least 3 s for the file), so that the restart below lands
    // while data is still flowing, however fast this machine is.
    let a = TestDaemon::start_with(|c| c.limits.up = Some(64 * 1024 * 1024)).await?;
    let b = TestDaemon::start().await?;
    let share = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&share.ticket, &out).await?;
    // Stop the provider once part (less than half) of the data arrived.
    let seen = b
        .wait_until(id, |t| t.bytes_done > 0 && t.bytes_done < t.bytes_total / 2)
        .await?;
    assert!(
        !completed(&seen),
        "transfer finished before it could be interrupted"
    );
    let a = a.restart().await?;
    let t = b.wait(id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    let limit = SIZE as u64 * 102 / 100 + 1024 * 1024;
    assert!(
        t.bytes_received <= limit,
        "received {} bytes for a {SIZE}-byte file (limit {limit})",
        t.bytes_received
    );
    assert!(
        t.attempts >= 2,
        "the provider restart should have cost an attempt: {t:?}"
    );
    drop(a);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_tickets_are_invalid_argument() -> Result<()> {
    let b = TestDaemon::start().await?;
    let out = temp_dir("rdrop-out-")?;
    let long = "rdrop".to_string() + &"a".repeat(100_000);
    for bad in ["", "hello", "rdrop", "rdropzzzz", "blob123", long.as_str()] {
        let err = b
            .transfers()
            .fetch(pb::FetchRequest {
                ticket: bad.to_string(),
                out: out.display().to_string(),
                force: false,
                ..Default::default()
            })
            .await
            .expect_err("garbage accepted");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:.20}: {err}");
        assert!(!err.message().is_empty());
    }
    let err = b
        .node()
        .inspect_ticket(pb::InspectTicketRequest {
            ticket: "rdropabc".into(),
        })
        .await
        .expect_err("garbage accepted");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sharing_missing_or_internal_paths_fails_clearly() -> Result<()> {
    let a = TestDaemon::start().await?;
    let status = a
        .node()
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner();
    for (path, code) in [
        ("/definitely/not/here".to_string(), tonic::Code::NotFound),
        ("relative/path".to_string(), tonic::Code::InvalidArgument),
        (status.data_dir.clone(), tonic::Code::InvalidArgument),
    ] {
        let res = a
            .shares()
            .share(pb::ShareRequest {
                path: path.clone(),
                ..Default::default()
            })
            .await;
        let err = match res {
            Err(e) => e,
            Ok(s) => {
                let mut s = s.into_inner();
                loop {
                    match s.message().await {
                        Err(e) => break e,
                        Ok(None) => panic!("{path}: no error"),
                        Ok(Some(_)) => {}
                    }
                }
            }
        };
        assert_eq!(err.code(), code, "{path}: {err}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_transfers_streams_progress_and_the_end() -> Result<()> {
    let src = temp_dir("rdrop-src-")?.join("w.bin");
    random_file(&src, 8 * 1024 * 1024)?;
    let a = TestDaemon::start_with(|c| c.limits.up = Some(16 * 1024 * 1024)).await?;
    let b = TestDaemon::start().await?;
    let share = a.share(&src).await?;
    let mut events = b
        .transfers()
        .watch_transfers(pb::WatchTransfersRequest {})
        .await?
        .into_inner();
    let id = b.fetch(&share.ticket, &temp_dir("rdrop-out-")?).await?;
    let mut seen = Vec::new();
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        while let Some(t) = events.message().await? {
            assert_eq!(t.id, id);
            let done = completed(&t);
            seen.push(t);
            if done {
                break;
            }
        }
        anyhow::Ok(())
    })
    .await??;
    assert!(seen.last().is_some_and(completed), "{seen:?}");
    let partial = seen
        .iter()
        .filter(|t| t.bytes_done > 0 && t.bytes_done < t.bytes_total)
        .count();
    assert!(
        partial >= 1,
        "no progress update among {} events",
        seen.len()
    );
    Ok(())
}

/// A fetch writes only bytes it received and verified: content the
/// fetching node itself shares (its store refers to the user's file, which
/// may change behind the store's back) is never copied into a fetch.
#[tokio::test(flavor = "multi_thread")]
async fn content_held_by_reference_is_never_used_for_a_fetch() -> Result<()> {
    let dir = temp_dir("rdrop-src-")?;
    let data = random_file(&dir.join("same.bin"), 200_000)?;
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    let share = a.share(&dir.join("same.bin")).await?;
    // B shares its own copy of the same bytes: its store refers to B's file,
    // which then changes behind the store's back (same size).
    let mine = temp_dir("rdrop-mine-")?.join("same.bin");
    std::fs::write(&mine, &data)?;
    b.share(&mine).await?;
    let mut changed = data.clone();
    changed[1000] ^= 0xff;
    std::fs::write(&mine, &changed)?;
    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&share.ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("same.bin"))?, data);
    assert!(t.bytes_received >= data.len() as u64, "{t:?}");
    Ok(())
}

fn links(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.nlink()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_on_another_filesystem_gets_a_copy() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let shm = Path::new("/dev/shm");
    let store_dev = std::fs::metadata(std::env::temp_dir())?.dev();
    if !shm.is_dir() || std::fs::metadata(shm)?.dev() == store_dev {
        eprintln!(
            "SKIPPED: no /dev/shm on another filesystem than {:?}",
            std::env::temp_dir()
        );
        return Ok(());
    }
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, 1024 * 1024 + 1)?;
    let (a, b) = (TestDaemon::start().await?, TestDaemon::start().await?);
    let share = a.share(&src).await?;
    let out = tempfile::Builder::new()
        .prefix("rdrop-shm-")
        .tempdir_in(shm)?;
    let t = b.wait(b.fetch(&share.ticket, out.path()).await?).await?;
    assert!(completed(&t), "{t:?}");
    let file = out.path().join("big.bin");
    assert_eq!(std::fs::read(&file)?, data);
    assert_eq!(links(&file), 1);
    assert_eq!(list_tree(out.path()), vec!["big.bin"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn many_files_mixed_sizes_are_placed_all_or_nothing() -> Result<()> {
    // More files than are fsynced one by one (one syncfs instead), small
    // ones inlined in the store (copied) next to large ones (linked).
    let root = temp_dir("rdrop-src-")?.join("tree");
    let mut expect = Vec::new();
    for i in 0..60 {
        let name = format!("d{}/f{i}.bin", i % 4);
        let len = if i % 3 == 0 {
            40_000 + i * 1000
        } else {
            100 + i * 50
        };
        expect.push((name.clone(), random_file(&root.join(&name), len)?));
    }
    let (a, b, t, out) = round_trip(&root).await?;
    assert_eq!(t.files.len(), expect.len());
    for (name, data) in &expect {
        assert_eq!(&std::fs::read(out.join("tree").join(name))?, data, "{name}");
    }
    assert!(
        !list_tree(&out).iter().any(|p| p.ends_with(".part")),
        "temp files left: {:?}",
        list_tree(&out)
    );

    // Fetched again where one of the files exists with other content:
    // refused, and nothing of this attempt is left.
    let out2 = temp_dir("rdrop-out-")?;
    std::fs::create_dir_all(out2.join("tree/d3"))?;
    std::fs::write(out2.join("tree/d3/f59.bin"), b"mine")?;
    let share = a.share(&root).await?;
    let t = b.wait(b.fetch(&share.ticket, &out2).await?).await?;
    assert!(!completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out2.join("tree/d3/f59.bin"))?, b"mine");
    let left: Vec<String> = list_tree(&out2)
        .into_iter()
        .filter(|p| p.ends_with(".bin") || p.ends_with(".part"))
        .collect();
    assert_eq!(left, vec!["tree/d3/f59.bin"]);
    Ok(())
}

/// A shared file is hashed in place into the content layer: its outboard
/// in the data dir (`content/<hash>`, none for one block), nothing of its
/// bytes in the store; it is fetched from there, and the outboard goes
/// when the last share listing it does.
#[tokio::test(flavor = "multi_thread")]
async fn shared_files_are_served_from_the_content_layer() -> Result<()> {
    let dir = temp_dir("rdrop-src-")?.join("set");
    std::fs::create_dir_all(&dir)?;
    // 9 MiB + 5: three 4 MiB segments hashed apart, the last one short.
    let big = random_file(&dir.join("big.bin"), 9 * 1024 * 1024 + 5)?;
    let small = random_file(&dir.join("small.bin"), 1000)?;
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    let share = a.share(&dir).await?;
    let data_dir = a.config.data_dir.clone();
    let outboard = data_dir
        .join("content")
        .join(bao_tree::blake3::hash(&big).to_hex().as_str());
    let blocks = (big.len() as u64).div_ceil(16 * 1024);
    assert_eq!(std::fs::metadata(&outboard)?.len(), (blocks - 1) * 64);
    let small_ob = data_dir
        .join("content")
        .join(bao_tree::blake3::hash(&small).to_hex().as_str());
    assert!(!small_ob.exists(), "one block needs no outboard");
    let stored = dir_bytes(&data_dir.join("blobs"));
    assert!(stored < 1024 * 1024, "the store holds {stored} bytes");

    let out = temp_dir("rdrop-out-")?;
    let t = b.wait(b.fetch(&share.ticket, &out).await?).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("set/big.bin"))?, big);
    assert_eq!(std::fs::read(out.join("set/small.bin"))?, small);

    a.shares()
        .unshare(pb::UnshareRequest {
            hash: share.share.as_ref().unwrap().hash.clone(),
        })
        .await?;
    assert!(!outboard.exists(), "the outboard outlived its share");
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
