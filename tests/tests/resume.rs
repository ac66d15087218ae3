//! Transfers outlive clients, crashes and restarts (real binaries), and obey
//! pause / resume / cancel.
//!
//! Providers run with an upload limit so "half way" is observable on any
//! machine; every kill is triggered by observed progress, never a timer.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{
    completed, list_tree, random_file, temp_dir, wait_done, watch_until, BinDaemon, TestDaemon,
};

const MIB: u64 = 1024 * 1024;
/// Upload limit of the providers in these tests.
const RATE: &str = "96M";

fn within_resume_budget(bytes: u64, size: u64) -> bool {
    bytes <= size * 102 / 100 + MIB
}

fn half_way(t: &pb::Transfer) -> bool {
    t.bytes_total > 0 && t.bytes_done * 100 >= t.bytes_total * 40
}

/// Waits for the first transfer of `d` to exist (started by a client
/// process) and returns its id.
async fn first_transfer(d: &BinDaemon) -> Result<u64> {
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        loop {
            let list = d
                .transfers()
                .await?
                .list_transfers(pb::ListTransfersRequest {})
                .await?;
            if let Some(t) = list.into_inner().transfers.first() {
                return anyhow::Ok(t.id);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await?
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_client_leaves_the_transfer_running() -> Result<()> {
    let size = 200 * MIB;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, size as usize)?;
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &["--max-upload-rate", RATE])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;

    let mut client = std::process::Command::new(ringdrop_tests::bin("ringdropctl")?)
        .arg("--socket")
        .arg(&b.socket)
        .args(["fetch", &ticket, "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Wait for the transfer to exist and move, then kill the client.
    let id = first_transfer(&b).await?;
    let moving = watch_until(&b.socket, id, |t| t.bytes_done > 0).await?;
    assert!(
        !completed(&moving),
        "finished before the client could be killed"
    );
    client.kill()?;
    client.wait()?;

    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fetching_daemon_killed_half_way_resumes_by_itself() -> Result<()> {
    let size = 256 * MIB;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, size as usize)?;
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &["--max-upload-rate", RATE])?;
    let mut b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let (ticket, hash) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;

    let seen = watch_until(&b.socket, id, half_way).await?;
    assert!(!completed(&seen), "finished before the kill");
    b.kill9()?;
    b.restart()?;

    let t = wait_done(&b.socket, id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    assert!(
        within_resume_budget(t.bytes_received, size),
        "fetcher received {} bytes for {size}",
        t.bytes_received
    );
    let served = a.served_for(&hash, size).await?;
    assert!(served >= size, "provider counted {served} bytes served");
    assert!(
        within_resume_budget(served, size),
        "provider served {served} bytes for {size}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_restarted_half_way_transfer_completes() -> Result<()> {
    let size = 128 * MIB;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, size as usize)?;
    let a_dir = temp_dir("rdrop-a-")?;
    let mut a = BinDaemon::spawn(&a_dir, &["--max-upload-rate", RATE])?;
    let port = a.bound().await?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;

    watch_until(&b.socket, id, half_way).await?;
    assert!(a.terminate()?.success());
    // The fetcher notices, then the provider comes back on the same port.
    let noticed = watch_until(&b.socket, id, |t| !t.last_error.is_empty()).await?;
    assert!(!completed(&noticed));
    drop(a);
    let _a = BinDaemon::spawn(
        &a_dir,
        &["--max-upload-rate", RATE, "--bind", &port.to_string()],
    )?;

    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(completed(&t), "{t:?}");
    assert!(t.attempts >= 2);
    assert!(
        within_resume_budget(t.bytes_received, size),
        "{}",
        t.bytes_received
    );
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn collection_of_many_files_resumes_after_kill9() -> Result<()> {
    let root = temp_dir("rdrop-src-")?.join("many");
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for i in 0..120 {
        let rel = PathBuf::from(format!("d{}/f{i:03}.bin", i % 7));
        let len = (256 * 1024 + i * 7919) as usize;
        files.push((rel.clone(), random_file(&root.join(&rel), len)?));
    }
    let size: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &["--max-upload-rate", "24M"])?;
    let mut b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let (ticket, _) = a.share(&root).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;

    let seen = watch_until(&b.socket, id, half_way).await?;
    assert!(!completed(&seen));
    assert_eq!(
        seen.bytes_total, size,
        "progress counts across all children"
    );
    b.kill9()?;
    b.restart()?;

    let t = wait_done(&b.socket, id).await?;
    assert!(completed(&t), "{t:?}");
    assert!(
        within_resume_budget(t.bytes_received, size),
        "{} for {size}",
        t.bytes_received
    );
    for (rel, data) in &files {
        assert_eq!(
            &std::fs::read(out.join("many").join(rel))?,
            data,
            "{}",
            rel.display()
        );
    }
    Ok(())
}

/// In-process: pause keeps data, resume finishes without refetching, cancel
/// writes nothing and purge frees the data.
#[tokio::test(flavor = "multi_thread")]
async fn pause_resume_cancel() -> Result<()> {
    let size = 96 * MIB;
    let src = temp_dir("rdrop-src-")?.join("p.bin");
    let data = random_file(&src, size as usize)?;
    let a = TestDaemon::start_with(|c| c.limits.up = Some(64 * MIB)).await?;
    let b =
        TestDaemon::start_with(|c| c.gc_interval = std::time::Duration::from_millis(200)).await?;
    let share = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&share.ticket, &out).await?;
    let tc = || b.transfers();

    b.wait_until(id, |t| t.bytes_done > 0).await?;
    let paused = tc()
        .pause_transfer(pb::PauseTransferRequest { id })
        .await?
        .into_inner();
    assert_eq!(paused.state, pb::TransferState::Paused as i32);
    assert!(paused.bytes_done < size);
    // Pausing twice is fine; resuming a running one is a no-op; cancel of
    // a completed one is refused below.
    tc().pause_transfer(pb::PauseTransferRequest { id }).await?;
    let resumed = tc()
        .resume_transfer(pb::ResumeTransferRequest { id })
        .await?
        .into_inner();
    assert_ne!(resumed.state, pb::TransferState::Paused as i32);
    let t = b.wait(id).await?;
    assert!(completed(&t), "{t:?}");
    assert!(
        within_resume_budget(t.bytes_received, size),
        "{}",
        t.bytes_received
    );
    assert_eq!(std::fs::read(out.join("p.bin"))?, data);
    let err = tc()
        .cancel_transfer(pb::CancelTransferRequest { id, purge: false })
        .await
        .expect_err("cancelling a completed transfer");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Cancel mid-way: no file at the destination.
    let out2 = temp_dir("rdrop-out-")?;
    let src2 = temp_dir("rdrop-src-")?.join("q.bin");
    random_file(&src2, size as usize)?;
    let share2 = a.share(&src2).await?;
    let id2 = b.fetch(&share2.ticket, &out2).await?;
    b.wait_until(id2, |t| t.bytes_done > 8 * MIB).await?;
    let c = tc()
        .cancel_transfer(pb::CancelTransferRequest {
            id: id2,
            purge: true,
        })
        .await?
        .into_inner();
    assert_eq!(c.state, pb::TransferState::Cancelled as i32);
    assert!(
        list_tree(&out2).is_empty(),
        "cancelled transfer wrote {:?}",
        list_tree(&out2)
    );
    let resume = tc()
        .resume_transfer(pb::ResumeTransferRequest { id: id2 })
        .await;
    assert_eq!(
        resume.expect_err("resume cancelled").code(),
        tonic::Code::FailedPrecondition
    );

    // Purged: garbage collection reclaims the partial data.
    let blobs = b.config.data_dir.join("blobs/data");
    let stored = || -> u64 {
        std::fs::read_dir(&blobs)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        while stored() > MIB {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .context("purged data was not reclaimed")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_following_client_outlives_a_daemon_restart() -> Result<()> {
    let ringdrop_tests::OneFile {
        a: _a,
        mut b,
        ticket,
        data,
        out,
    } = ringdrop_tests::OneFile::new(64 * MIB, "16M").await?;
    let client = std::process::Command::new(ringdrop_tests::bin("ringdropctl")?)
        .arg("--socket")
        .arg(&b.socket)
        .args(["fetch", &ticket, "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let id = first_transfer(&b).await?;
    let moving = watch_until(&b.socket, id, |t| t.bytes_done > 0).await?;
    assert!(!completed(&moving), "finished before the restart");
    // The daemon goes away under the client (its socket closes; writes to
    // it fail with EPIPE) and comes back on the same socket.
    b.terminate()?;
    b.restart()?;
    let done = tokio::task::spawn_blocking(move || client.wait_with_output()).await??;
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "client: {:?} {stderr}", done.status);
    assert!(stderr.contains("went away"), "{stderr}");
    assert!(String::from_utf8_lossy(&done.stdout).contains("Fetched"));
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    Ok(())
}

/// `fetch --only`: the part of a share the patterns pick, and nothing else,
/// across a kill -9 of the fetching daemon; the patterns are kept with the
/// transfer, so the resumed run fetches the same part. Patterns that pick
/// nothing, or do not parse, are a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn only_fetches_the_selected_part_across_a_kill() -> Result<()> {
    let root = temp_dir("rdrop-src-")?.join("many");
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for i in 0..60 {
        let rel = PathBuf::from(format!(
            "d{}/f{i:03}.{}",
            i % 4,
            ["bin", "txt"][(i / 4) % 2]
        ));
        let len = 256 * 1024 + i * 7919;
        files.push((rel.clone(), random_file(&root.join(&rel), len)?));
    }
    // A whole directory, and one kind of file in another.
    let picked = |rel: &std::path::Path| {
        let s = rel.to_string_lossy();
        s.starts_with("d0/") || (s.starts_with("d1/") && s.ends_with(".bin"))
    };
    let size: u64 = files
        .iter()
        .filter(|(rel, _)| picked(rel))
        .map(|(_, d)| d.len() as u64)
        .sum();
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &["--max-upload-rate", "12M"])?;
    let mut b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let (ticket, _) = a.share(&root).await?;
    let out = temp_dir("rdrop-out-")?;
    let out_s = out.to_str().context("utf-8")?;

    let nothing = b.ctl(&["fetch", &ticket, "--out", out_s, "--only", "many/d9/**"])?;
    assert!(!nothing.status.success());
    let said = String::from_utf8_lossy(&nothing.stderr);
    assert!(said.contains("selects none of the 60 files"), "{said}");
    let bad = b.ctl(&["fetch", &ticket, "--out", out_s, "--only", "many/[d"])?;
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(said.contains("not a valid pattern"), "{said}");
    assert!(list_tree(&out).is_empty(), "{:?}", list_tree(&out));

    let started = b.ctl_json(&[
        "fetch",
        &ticket,
        "--out",
        out_s,
        "--only",
        "many/d0",
        "--only",
        "many/d1/*.bin",
        "--detach",
    ])?;
    let id = started["id"].as_u64().context("id")?;
    let seen = watch_until(&b.socket, id, half_way).await?;
    assert!(!completed(&seen));
    assert_eq!(seen.bytes_total, size, "the total is the selected part's");
    b.kill9()?;
    b.restart()?;

    let t = wait_done(&b.socket, id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(t.bytes_total, size);
    assert!(
        within_resume_budget(t.bytes_received, size),
        "{} for {size}",
        t.bytes_received
    );
    let mut expect: Vec<String> = ["many", "many/d0", "many/d1"].map(String::from).into();
    for (rel, data) in files.iter().filter(|(rel, _)| picked(rel)) {
        let at = out.join("many").join(rel);
        assert_eq!(&std::fs::read(&at)?, data, "{}", rel.display());
        expect.push(format!("many/{}", rel.display()));
    }
    expect.sort();
    assert_eq!(list_tree(&out), expect, "exactly the selected files");
    Ok(())
}
