//! Fetch in place (real binaries): the data is written once, into a
//! private directory beneath the destination, and nothing appears under a
//! final name before the whole content is verified; a crash keeps what
//! reached the disk, and only that; a transfer begun by an older ringdropd
//! (no record of incoming files) still completes.

use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, Result};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{
    completed, list_tree, random_file, temp_dir, wait_done, watch_until, BinDaemon, OneFile,
};
use ringdropd::registry::{Registry, TransferState};

const MIB: u64 = 1024 * 1024;

/// Entries of `dir` (top level only).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn registry_of(d: &BinDaemon) -> Result<Registry> {
    Ok(Registry::open(&d.dir.join("data/registry.redb")).await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn incoming_files_are_private_invisible_and_go_with_a_cancel() -> Result<()> {
    let src = temp_dir("rdrop-src-")?.join("tree");
    random_file(&src.join("a.bin"), (24 * MIB) as usize)?;
    random_file(&src.join("sub/b.bin"), (8 * MIB) as usize)?;
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &["--max-upload-rate", "8M"])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;
    let t = watch_until(&b.socket, id, |t| t.bytes_done > 4 * MIB).await?;
    assert!(!completed(&t));

    // Half way: one hidden private directory, no final name yet.
    let top = entries(&out);
    assert_eq!(top.len(), 1, "{top:?}");
    assert!(
        top[0].starts_with(".ringdrop-") && top[0].ends_with(".partial"),
        "{top:?}"
    );
    let meta = std::fs::symlink_metadata(out.join(&top[0]))?;
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert!(
        list_tree(&out).iter().all(|p| p.starts_with(&top[0])),
        "{:?}",
        list_tree(&out)
    );

    let c = b
        .transfers()
        .await?
        .cancel_transfer(pb::CancelTransferRequest { id, purge: false })
        .await?
        .into_inner();
    assert_eq!(c.state, pb::TransferState::Cancelled as i32);
    assert!(list_tree(&out).is_empty(), "{:?}", list_tree(&out));
    let outboards = b.dir.join("data/outboards").join(id.to_string());
    assert!(!outboards.exists(), "{} kept", outboards.display());
    Ok(())
}

/// A power cut loses what was written but not yet synced. Simulated: the
/// fetcher is killed, and every byte of its incoming files outside the
/// ranges its registry records as synced is overwritten; the restarted
/// fetch must notice (the outboards do not match) and fetch those again.
#[tokio::test(flavor = "multi_thread")]
async fn data_not_recorded_as_synced_is_checked_before_it_is_kept() -> Result<()> {
    let size = 64 * MIB;
    let OneFile {
        a: _a,
        mut b,
        ticket,
        data,
        out,
    } = OneFile::new(size, "32M").await?;
    let id = b.fetch(&ticket, &out).await?;
    watch_until(&b.socket, id, |t| t.bytes_done > size / 2).await?;
    b.kill9()?;

    let registry = registry_of(&b).await?;
    let rec = registry
        .partial(id)
        .await?
        .context("no record of the incoming files")?;
    registry.close().await;
    drop(registry);
    let file = rec.root.join(&rec.dir).join("0");
    let synced: Vec<(u64, u64)> = rec.done[0]
        .chunks(2)
        .map(|p| (p[0] * 1024, p.get(1).map_or(size, |e| (e * 1024).min(size))))
        .collect();
    let mut bytes = std::fs::read(&file)?;
    let mut garbled = 0u64;
    for (i, byte) in bytes.iter_mut().enumerate() {
        let i = i as u64;
        if !synced.iter().any(|(s, e)| (*s..*e).contains(&i)) {
            *byte ^= 0x5a;
            garbled += 1;
        }
    }
    std::fs::write(&file, &bytes)?;
    assert!(garbled > 0, "everything was recorded as synced: {synced:?}");

    b.restart()?;
    let t = wait_done(&b.socket, id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    Ok(())
}

/// A transfer a ringdropd before fetch-in-place began (its data in the
/// store, no record of incoming files) is finished by this one.
#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_begun_without_a_record_of_incoming_files_completes() -> Result<()> {
    let OneFile {
        a: _a,
        mut b,
        ticket,
        data,
        out,
    } = OneFile::new(32 * MIB, "16M").await?;
    let id = b.fetch(&ticket, &out).await?;
    watch_until(&b.socket, id, |t| t.bytes_done > 2 * MIB).await?;
    b.kill9()?;
    // What an older ringdropd leaves: the transfer row, running, and no
    // record of incoming files (its data was in the store).
    let registry = registry_of(&b).await?;
    let rec = registry.partial(id).await?.context("record")?;
    registry.remove_partial(id).await?;
    let row = registry.transfer(id).await?.context("row")?;
    assert_eq!(row.state, TransferState::Running);
    registry.close().await;
    drop(registry);
    std::fs::remove_dir_all(rec.root.join(&rec.dir))?;

    b.restart()?;
    let t = wait_done(&b.socket, id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    assert_eq!(entries(&out), vec!["big.bin".to_string()]);
    Ok(())
}
