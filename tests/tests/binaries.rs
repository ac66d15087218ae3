//! The real binaries: the contract scripts rely on.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ringdrop_tests::{bin, random_file, temp_dir, BinDaemon};
use serde_json::Value;

/// A real daemon plus the JSON helper the tests use.
struct Daemon(BinDaemon);

impl Daemon {
    fn spawn(dir: &Path) -> Result<Self> {
        Ok(Self(BinDaemon::spawn(dir, &[])?))
    }

    fn json(&self, args: &[&str]) -> Result<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.0.ctl(&full)?;
        if !out.status.success() {
            bail!(
                "ringdropctl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("ringdropctl printed no JSON")
    }
}

impl std::ops::Deref for Daemon {
    type Target = BinDaemon;
    fn deref(&self) -> &BinDaemon {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut BinDaemon {
        &mut self.0
    }
}

fn ctl(socket: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(bin("ringdropctl")?)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()?)
}

#[test]
fn share_and_fetch_with_the_real_binaries() -> Result<()> {
    let a = Daemon::spawn(&temp_dir("rdrop-bin-a-")?)?;
    let b = Daemon::spawn(&temp_dir("rdrop-bin-b-")?)?;

    let status = a.json(&["status"])?;
    assert!(status["endpoint_id"]
        .as_str()
        .is_some_and(|s| s.len() == 64));
    assert!(status["version"].is_string());
    assert_eq!(status["bytes_served"], 0);

    let mode = std::fs::metadata(&a.socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode");

    let src = temp_dir("rdrop-bin-src-")?.join("payload.bin");
    let data = random_file(&src, 2 * 1024 * 1024)?;
    let share = a.json(&["share", src.to_str().unwrap()])?;
    let ticket = share["ticket"].as_str().context("ticket")?.to_string();
    assert!(ticket.starts_with("rdrop"));
    assert_eq!(share["hash"].as_str().map(str::len), Some(64));

    let inspected = b.json(&["ticket", "inspect", &ticket])?;
    assert_eq!(inspected["kind"], "ringdrop");
    assert_eq!(inspected["endpoint_id"], status["endpoint_id"]);

    let out = temp_dir("rdrop-bin-out-")?.join("got.bin");
    let res = ctl(
        &b.socket,
        &["fetch", &ticket, "--out", out.to_str().unwrap()],
    )?;
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(std::fs::read(&out)?, data);

    // --detach returns an id at once; transfers wait follows it.
    let out2 = temp_dir("rdrop-bin-out-")?;
    let detached = b.json(&[
        "fetch",
        &ticket,
        "--out",
        out2.to_str().unwrap(),
        "--detach",
    ])?;
    let id = detached["id"].as_u64().context("id")?;
    let waited = ctl(&b.socket, &["transfers", "wait", &id.to_string()])?;
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_eq!(std::fs::read(out2.join("payload.bin"))?, data);

    let list = b.json(&["transfers", "ls"])?;
    let rows = list.as_array().context("array")?;
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["state"], "completed");
        assert_eq!(r["bytes_total"], data.len());
        assert!(r["bytes_received"].as_u64().unwrap() <= data.len() as u64 * 102 / 100 + 1_048_576);
        assert!(r["dest"].is_string());
    }
    // Each fetch writes only what it received and verified itself: the
    // provider served the content twice, and no more. It records served
    // bytes when a request ends, so poll.
    let twice = 2 * data.len() as u64;
    let start = Instant::now();
    let served = loop {
        let served = a.json(&["status"])?["bytes_served"].as_u64().unwrap_or(0);
        if served >= twice || start.elapsed() > Duration::from_secs(30) {
            break served;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(served >= twice, "bytes_served {served}");
    assert!(
        served <= twice * 102 / 100 + 1_048_576,
        "bytes_served {served}"
    );

    // Unshared before bob got it: refused, and `transfers wait` exits 1.
    let src2 = temp_dir("rdrop-bin-src-")?.join("secret.bin");
    random_file(&src2, 100_000)?;
    let share = a.json(&["share", src2.to_str().unwrap()])?;
    let ticket = share["ticket"].as_str().context("ticket")?.to_string();
    a.json(&["unshare", share["hash"].as_str().unwrap()])?;
    let out3 = temp_dir("rdrop-bin-out-")?;
    let refused = b.json(&[
        "fetch",
        &ticket,
        "--out",
        out3.to_str().unwrap(),
        "--detach",
    ])?;
    let id = refused["id"].as_u64().context("id")?.to_string();
    let waited = ctl(&b.socket, &["transfers", "wait", &id])?;
    assert_eq!(waited.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&waited.stderr).contains("refused by"));
    let direct = ctl(
        &b.socket,
        &["fetch", &ticket, "--out", out3.to_str().unwrap()],
    )?;
    assert_eq!(
        direct.status.code(),
        Some(1),
        "a refused fetch is an operation failure"
    );
    Ok(())
}

#[test]
fn bad_input_exits_2_and_no_daemon_exits_3() -> Result<()> {
    let dir = temp_dir("rdrop-bin-")?;
    let missing = dir.join("nobody.sock");
    let out = ctl(&missing, &["status"])?;
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach ringdropd at"), "{err}");
    assert!(err.contains("is it running?"), "{err}");

    let d = Daemon::spawn(&dir)?;
    let out = ctl(&d.socket, &["fetch", "not-a-ticket"])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a ringdrop ticket"));
    let out = ctl(&d.socket, &["share", "/no/such/file"])?;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(&d.socket, &["no-such-command"])?;
    assert_eq!(out.status.code(), Some(2));
    Ok(())
}

#[test]
fn second_daemon_on_a_live_socket_is_refused() -> Result<()> {
    let dir = temp_dir("rdrop-bin-")?;
    let _first = Daemon::spawn(&dir)?;
    let second = Command::new(bin("ringdropd")?)
        .arg("--data-dir")
        .arg(dir.join("data2"))
        .arg("--socket")
        .arg(dir.join("d.sock"))
        .args(["--relay", "disabled", "--no-mdns", "--bind", "127.0.0.1:0"])
        .output()?;
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already serving"), "{err}");
    Ok(())
}

#[test]
fn stale_socket_is_replaced_and_sigterm_removes_it() -> Result<()> {
    let dir = temp_dir("rdrop-bin-")?;
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(dir.join("d.sock"))?);
    let mut d = Daemon::spawn(&dir)?;
    let status = d.terminate()?;
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
    assert!(!d.socket.exists(), "socket removed on shutdown");
    Ok(())
}

#[test]
fn udp_port_is_kept_across_restarts() -> Result<()> {
    let dir = temp_dir("rdrop-bin-")?;
    let port = |d: &Daemon| -> Result<u16> {
        let status = d.json(&["status"])?;
        let addrs = status["direct_addresses"].as_array().context("addresses")?;
        let first = addrs
            .first()
            .and_then(|a| a.as_str())
            .context("no address")?;
        Ok(first.parse::<std::net::SocketAddr>()?.port())
    };
    // No --bind: all interfaces, on the port kept in the data dir.
    let mut first = Daemon(BinDaemon::spawn_unbound(&dir)?);
    let p1 = port(&first)?;
    first.terminate()?;
    drop(first);
    let second = Daemon(BinDaemon::spawn_unbound(&dir)?);
    assert_eq!(
        port(&second)?,
        p1,
        "the endpoint's UDP port changed across a restart"
    );
    let kept = std::fs::read_to_string(dir.join("data/port"))?;
    assert_eq!(kept.trim(), p1.to_string());
    Ok(())
}

#[test]
fn a_closed_stdout_ends_ringdropctl_quietly() -> Result<()> {
    let dir = temp_dir("rdrop-bin-")?;
    let d = BinDaemon::spawn(&dir, &[])?;
    let mut child = std::process::Command::new(bin("ringdropctl")?)
        .arg("--socket")
        .arg(&d.socket)
        .args(["status"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    drop(child.stdout.take()); // the reader is gone (`| head -0`)
    let out = child.wait_with_output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
    Ok(())
}
