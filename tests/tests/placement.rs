//! Who writes a fetch's files (real binaries, needs root and setpriv): a
//! daemon running as a user of its own, as the system service does,
//! fetches for a caller it may not write for; the caller's `ringdropctl`
//! receives the verified content over the socket and places the files as
//! the caller. And whoever cannot write where asked hears so before any
//! byte is fetched.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{ensure, Context, Result};
use ringdrop_tests::{bin, random_file, temp_dir, BinDaemon};
use serde_json::Value;

const NOBODY: u32 = 65534;

fn can_switch_uid() -> bool {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !(root && setpriv) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with setpriv"
        );
        eprintln!("SKIPPED: a daemon of another uid needs root and setpriv");
    }
    root && setpriv
}

/// `ringdropctl --socket SOCKET --json ARGS` as uid `uid` (None: as the test).
fn ctl_as(uid: Option<u32>, socket: &Path, args: &[&str]) -> Result<std::process::Output> {
    let mut cmd = match uid {
        Some(uid) => {
            let id = uid.to_string();
            let mut c = Command::new("setpriv");
            c.args(["--reuid", &id, "--regid", &id, "--clear-groups", "--"])
                .arg(bin("ringdropctl")?);
            c
        }
        None => Command::new(bin("ringdropctl")?),
    };
    Ok(cmd
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}

fn json(out: &std::process::Output) -> Result<Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().context("no output")?;
    Ok(serde_json::from_str(last)?)
}

fn ok(out: std::process::Output) -> Result<std::process::Output> {
    ensure!(
        out.status.success(),
        "ringdropctl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// `ringdropctl --json ARGS` as the test's uid (root), which must succeed.
fn as_root(socket: &Path, args: &[&str]) -> Result<Value> {
    json(&ok(ctl_as(None, socket, args)?)?)
}

/// Shares `path` on `provider` and returns the ticket.
fn share(provider: &BinDaemon, path: &Path) -> Result<String> {
    let shared = as_root(&provider.socket, &["share", path.to_str().context("path")?])?;
    Ok(shared["ticket"].as_str().context("ticket")?.to_string())
}

/// A provider (as the test's uid) and a fetcher running as `nobody`.
fn daemons() -> Result<(BinDaemon, BinDaemon)> {
    let provider = BinDaemon::spawn(&temp_dir("rdrop-prov-")?, &[])?;
    let fetcher = BinDaemon::spawn_as(NOBODY, &temp_dir("rdrop-svc-")?, &[])?;
    Ok((provider, fetcher))
}

/// A directory only root may write (0700, root's): the daemon cannot.
fn private_dir(prefix: &str) -> Result<std::path::PathBuf> {
    let d = temp_dir(prefix)?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
    Ok(d)
}

#[test]
fn the_client_places_files_where_only_the_caller_may_write() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (provider, fetcher) = daemons()?;
    let src = temp_dir("rdrop-src-")?.join("report.bin");
    let bytes = random_file(&src, 3 << 20)?;
    let ticket = share(&provider, &src)?;

    let dest = private_dir("rdrop-home-")?;
    let out = ok(ctl_as(
        None,
        &fetcher.socket,
        &[
            "fetch",
            &ticket,
            "--out",
            dest.join("got.bin").to_str().context("path")?,
        ],
    )?)?;
    let t = json(&out)?;
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(t["client_places"], true, "{t}");
    let got = dest.join("got.bin");
    assert_eq!(std::fs::read(&got)?, bytes);
    assert_eq!(std::fs::metadata(&got)?.uid(), 0, "not owned by the caller");
    // Nothing else was left at the destination (no temporary names).
    let names: Vec<_> = std::fs::read_dir(&dest)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names.len(), 1, "{names:?}");
    Ok(())
}

#[test]
fn a_detached_fetch_waits_ready_for_its_owner_only() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (provider, fetcher) = daemons()?;
    let tree = temp_dir("rdrop-src-")?.join("tree");
    let a = random_file(&tree.join("a.bin"), 100_000)?;
    let b = random_file(&tree.join("sub/b.bin"), 2 << 20)?;
    std::fs::write(tree.join("empty"), b"")?;
    let ticket = share(&provider, &tree)?;
    let dest = private_dir("rdrop-home-")?;
    let started = as_root(
        &fetcher.socket,
        &[
            "fetch",
            &ticket,
            "--out",
            dest.to_str().context("path")?,
            "--detach",
        ],
    )?;
    let id = started["id"].as_u64().context("id")?.to_string();

    // Fetched into the store, then it waits: ready, listed, nothing placed.
    let ready = (0..600).find_map(|_| {
        let t = json(&ctl_as(None, &fetcher.socket, &["transfers", "show", &id]).ok()?).ok()?;
        if t["state"] == "ready" {
            return Some(t);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        None
    });
    let ready = ready.context("transfer never became ready")?;
    assert_eq!(ready["bytes_done"], ready["bytes_total"]);
    assert!(!dest.join("tree").exists(), "placed before anyone asked");

    // The daemon's own user may use the daemon, but not receive the files
    // of a transfer another user started.
    let denied = ctl_as(Some(NOBODY), &fetcher.socket, &["transfers", "wait", &id])?;
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(
        err.contains("started by user") && err.contains("uid 0"),
        "{err}"
    );

    // A restart leaves it ready (not fetched again, not lost).
    let mut fetcher = fetcher;
    fetcher.terminate()?;
    fetcher.restart()?;
    let t = as_root(&fetcher.socket, &["transfers", "show", &id])?;
    assert_eq!(t["state"], "ready", "{t}");

    let placed = as_root(&fetcher.socket, &["transfers", "wait", &id])?;
    assert_eq!(placed["state"], "completed", "{placed}");
    assert_eq!(std::fs::read(dest.join("tree/a.bin"))?, a);
    assert_eq!(std::fs::read(dest.join("tree/sub/b.bin"))?, b);
    assert_eq!(std::fs::read(dest.join("tree/empty"))?, b"");
    assert_eq!(placed["files"].as_array().map(Vec::len), Some(3));
    Ok(())
}

/// A `ready` transfer its owner's client never collects is failed after
/// `keep_ready` and its files leave the data dir; `transfers resume`
/// fetches it again and its client places it.
#[test]
fn a_ready_transfer_nobody_collects_is_failed_and_its_files_removed() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let provider = BinDaemon::spawn(&temp_dir("rdrop-prov-")?, &[])?;
    let dir = temp_dir("rdrop-svc-")?;
    let config = dir.join("ringdropd.toml");
    std::fs::write(&config, "keep_ready = \"3s\"\n")?;
    let config = config.to_str().context("path")?.to_string();
    let fetcher = BinDaemon::spawn_as(NOBODY, &dir, &["--config", &config])?;
    let src = temp_dir("rdrop-src-")?.join("one.bin");
    let data = random_file(&src, 1 << 20)?;
    let ticket = share(&provider, &src)?;
    let dest = private_dir("rdrop-home-")?;
    let out = dest.to_str().context("path")?;
    let started = as_root(
        &fetcher.socket,
        &["fetch", &ticket, "--out", out, "--detach"],
    )?;
    let id = started["id"].as_u64().context("id")?.to_string();
    let show = || as_root(&fetcher.socket, &["transfers", "show", &id]);
    // Nobody comes for it (the guard only keeps a failing run from hanging).
    let mut states = Vec::new();
    let failed = (0..1200).find_map(|_| {
        let t = show().ok()?;
        let state = t["state"].as_str().unwrap_or_default().to_string();
        if states.last() != Some(&state) {
            states.push(state);
        }
        if t["state"] == "failed" {
            return Some(t);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        None
    });
    let failed = failed.with_context(|| format!("never failed; states {states:?}"))?;
    assert!(states.iter().any(|s| s == "ready"), "{states:?}");
    let err = failed["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("did not collect it within 3s"), "{err}");
    let incoming = dir.join("data").join("incoming");
    let left: Vec<_> = std::fs::read_dir(&incoming)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", incoming.display());
    assert!(!dest.join("one.bin").exists());

    // Resumed and collected at once: fetched again and placed.
    as_root(&fetcher.socket, &["transfers", "resume", &id])?;
    let placed = as_root(&fetcher.socket, &["transfers", "wait", &id])?;
    assert_eq!(placed["state"], "completed", "{placed}");
    assert_eq!(std::fs::read(dest.join("one.bin"))?, data);
    Ok(())
}

#[test]
fn whoever_cannot_write_is_told_before_any_byte_moves() -> Result<()> {
    if !can_switch_uid() {
        return Ok(());
    }
    let (provider, fetcher) = daemons()?;
    let src = temp_dir("rdrop-src-")?.join("f.bin");
    random_file(&src, 1 << 20)?;
    let ticket = share(&provider, &src)?;

    // The daemon's own user writes through the daemon, which may not write
    // a root-only directory.
    let dest = private_dir("rdrop-home-")?;
    let refused = ctl_as(
        Some(NOBODY),
        &fetcher.socket,
        &[
            "fetch",
            &ticket,
            "--out",
            dest.join("x").to_str().context("path")?,
        ],
    )?;
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("cannot write")
            && err.contains(dest.to_str().context("path")?)
            && err.contains("nothing was fetched"),
        "{err}"
    );
    // The caller places the files but cannot write a read-only filesystem.
    let ro = temp_dir("rdrop-ro-")?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&ro)
        .status()?;
    ensure!(mounted.success(), "cannot mount a read-only tmpfs");
    let refused = ctl_as(
        None,
        &fetcher.socket,
        &[
            "fetch",
            &ticket,
            "--out",
            ro.join("x").to_str().context("path")?,
        ],
    );
    Command::new("umount").arg(&ro).status()?;
    let refused = refused?;
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("user 'root' cannot write") && err.contains("nothing was fetched"),
        "{err}"
    );
    // Neither started a transfer.
    let list = as_root(&fetcher.socket, &["transfers", "ls"])?;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    Ok(())
}
