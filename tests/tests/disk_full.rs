//! Full disks (real binaries, small tmpfs mounts, needs root): a transfer
//! that runs out of space ends `failed` with "no space left on device",
//! leaves nothing partial at its destination, the daemon keeps serving and
//! other transfers finish; freeing space and resuming completes it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Result};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{completed, list_tree, random_file, temp_dir, watch_until, BinDaemon};

const MIB: u64 = 1024 * 1024;

/// A tmpfs of `size_mib`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (and a SKIPPED line) where mounting is not possible.
    fn mount(size_mib: u64) -> Result<Option<Self>> {
        let dir = temp_dir("rdrop-tmpfs-")?;
        let out = Command::new("mount")
            // Private, as a data dir is (a tmpfs is 1777 by default, and
            // the daemon refuses a socket directory others may write).
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Ok(Some(Self(dir))),
            Ok(o) if std::env::var_os("CI").is_some() => bail!(
                "cannot mount a tmpfs on CI: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            _ => {
                eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
                Ok(None)
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A daemon's log on it outlives the mount, for the failure report.
        let log = self.0.join("ringdropd.log");
        if log.exists() {
            let kept = self.0.with_extension("log");
            std::fs::copy(&log, &kept).ok();
            eprintln!("log of the daemon on the tmpfs: {}", kept.display());
        }
        Command::new("umount").arg("-l").arg(&self.0).status().ok();
    }
}

/// Fills `dir` up to `leave` free bytes; returns the filler.
fn fill(dir: &Path, leave: u64) -> Result<PathBuf> {
    let avail = ringdropd::transfers::plan::available_space(dir)?;
    let filler = dir.join("filler");
    let f = std::fs::File::create(&filler)?;
    // tmpfs allocates on write: write zeros, not a sparse file.
    let chunk = vec![0u8; MIB as usize];
    let mut left = avail.saturating_sub(leave);
    let mut w = std::io::BufWriter::new(f);
    // The daemon writes meanwhile: running out early is what we want.
    let full = |r: std::io::Result<()>| match r {
        Err(e) if e.raw_os_error() != Some(libc::ENOSPC) => Err(e),
        _ => Ok(()),
    };
    while left > 0 {
        let n = left.min(MIB);
        full(std::io::Write::write_all(&mut w, &chunk[..n as usize]))?;
        left -= n;
    }
    full(std::io::Write::flush(&mut w))?;
    Ok(filler)
}

fn failed_for_space(t: &pb::Transfer) -> bool {
    t.state == pb::TransferState::Failed as i32
        && t.last_error
            .to_lowercase()
            .contains("no space left on device")
}

/// The daemon still answers and another transfer (with room) completes.
async fn still_serving(a: &BinDaemon, b: &BinDaemon) -> Result<()> {
    let src = temp_dir("rdrop-src-")?.join("small.bin");
    let data = random_file(&src, MIB as usize)?;
    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;
    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(completed(&t), "another transfer: {t:?}");
    assert_eq!(std::fs::read(out.join("small.bin"))?, data);
    Ok(())
}

async fn resume(b: &BinDaemon, id: u64) -> Result<pb::Transfer> {
    b.transfers()
        .await?
        .resume_transfer(pb::ResumeTransferRequest { id })
        .await?;
    watch_until(&b.socket, id, |_| false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn full_destination() -> Result<()> {
    let Some(fs) = Tmpfs::mount(64)? else {
        return Ok(());
    };
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, (32 * MIB) as usize)?;
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let filler = fill(&fs.0, 16 * MIB)?;
    let out = fs.0.join("out");
    std::fs::create_dir(&out)?;

    let (ticket, _) = a.share(&src).await?;
    let id = b.fetch(&ticket, &out).await?;
    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(failed_for_space(&t), "{t:?}");
    assert!(list_tree(&out).is_empty(), "left {:?}", list_tree(&out));
    still_serving(&a, &b).await?;

    std::fs::remove_file(filler)?;
    let t = resume(&b, id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    Ok(())
}

/// Something else fills the data dir half way (the check at the start
/// passed): the transfer stops while the store can still commit.
#[tokio::test(flavor = "multi_thread")]
async fn data_dir_fills_up_during_the_transfer() -> Result<()> {
    let Some(fs) = Tmpfs::mount(128)? else {
        return Ok(());
    };
    let size = 48 * MIB;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, size as usize)?;
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &["--max-upload-rate", "16M"])?;
    let b = BinDaemon::spawn(&fs.0, &[])?;
    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;

    watch_until(&b.socket, id, |t| t.bytes_done > 4 * MIB).await?;
    let filler = fill(&fs.0, 8 * MIB)?;
    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(failed_for_space(&t), "{t:?}");
    assert!(list_tree(&out).is_empty(), "left {:?}", list_tree(&out));
    // Still answering with its own disk full.
    let status = b.ctl(&["--json", "status"])?;
    assert!(status.status.success());

    std::fs::remove_file(filler)?;
    still_serving(&a, &b).await?;
    let t = resume(&b, id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    Ok(())
}

/// Data dir and destination on one filesystem with 1.05 x size + 16 MiB
/// free: the fetch writes its data once and completes. With half the size
/// free it is refused before the data is fetched, saying how much it needs.
#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_needs_its_size_once() -> Result<()> {
    let Some(fs) = Tmpfs::mount(256)? else {
        return Ok(());
    };
    let size = 64 * MIB;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, size as usize)?;
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = BinDaemon::spawn(&fs.0, &[])?;
    let (ticket, _) = a.share(&src).await?;

    let out = fs.0.join("half");
    std::fs::create_dir(&out)?;
    let filler = fill(&fs.0, size / 2)?;
    let id = b.fetch(&ticket, &out).await?;
    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(failed_for_space(&t), "{t:?}");
    assert!(t.last_error.contains("need"), "{}", t.last_error);
    // Only what proves the size (the first and last chunk groups) came.
    assert!(t.bytes_received <= 64 * 1024, "{t:?}");
    assert!(list_tree(&out).is_empty(), "left {:?}", list_tree(&out));
    std::fs::remove_file(filler)?;

    let out = fs.0.join("out");
    std::fs::create_dir(&out)?;
    let room = size * 105 / 100 + 16 * MIB;
    let filler = fill(&fs.0, room)?;
    let id = b.fetch(&ticket, &out).await?;
    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    drop(filler);
    Ok(())
}
