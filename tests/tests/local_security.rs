//! The daemon's local surface (real binaries): who may use the control
//! socket, what it survives on it, and the files it keeps at rest.

use std::{
    io::{Read, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use ringdrop_tests::{bin, temp_dir, BinDaemon};

/// The unprivileged uid the tests act as (`nobody`).
const NOBODY: &str = "65534";

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

fn status_ok(d: &BinDaemon) -> Result<bool> {
    Ok(d.ctl(&["--json", "status"])?.status.success())
}

/// Runs `ringdropctl --socket SOCKET ARGS` as uid 65534 (needs root and
/// setpriv); `None` where that is not possible here.
fn ctl_as_nobody(ctl: &Path, socket: &Path, args: &[&str]) -> Result<Option<std::process::Output>> {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !root || setpriv.is_err() {
        eprintln!("SKIPPED: acting as another uid needs root and setpriv");
        return Ok(None);
    }
    loop {
        let out = Command::new("setpriv")
            .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
            .arg(ctl)
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        // The fresh copy of the binary may still be open for writing in a
        // child another test thread forked meanwhile (ETXTBSY): try again.
        if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
            return Ok(Some(out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn another_uid_is_refused_even_through_an_open_socket() -> Result<()> {
    let dir = temp_dir("rdrop-sec-")?;
    let d = BinDaemon::spawn(&dir, &[])?;
    // A copy of ringdropctl that uid 65534 can execute.
    let ctl = dir.join("ringdropctl");
    std::fs::copy(bin("ringdropctl")?, &ctl)?;
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;

    // As created: 0600, so the file mode alone keeps it out.
    assert_eq!(mode(&d.socket)?, 0o600);
    let Some(out) = ctl_as_nobody(&ctl, &d.socket, &["status"])? else {
        return Ok(());
    };
    assert!(!out.status.success(), "uid 65534 used a 0600 socket");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("permission denied"), "{err}");

    // Opened up: only the credential check stands in the way.
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o777))?;
    let out = ctl_as_nobody(&ctl, &d.socket, &["--json", "status"])?.context("setpriv")?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "uid 65534 was served through a 0777 socket: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "answer leaked: {:?}", out.stdout);
    assert!(
        err.contains("uid 65534 is not allowed"),
        "no reason given: {err}"
    );
    let log = std::fs::read_to_string(dir.join("ringdropd.log"))?;
    assert!(log.contains("uid 65534"), "refusal not logged: {log}");
    // Health and reflection are behind the same check.
    let out = ctl_as_nobody(&ctl, &d.socket, &["transfers", "ls"])?.context("setpriv")?;
    assert!(!out.status.success() && out.stdout.is_empty());
    // The owner still is.
    assert!(status_ok(&d)?);
    Ok(())
}

#[test]
fn garbage_and_abrupt_disconnects_do_not_hurt_it() -> Result<()> {
    let d = BinDaemon::spawn(&temp_dir("rdrop-sec-")?, &[])?;
    let payloads: [&[u8]; 5] = [
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00",
        b"PRI * HTTP/2.0\r\n",
        &[0xff; 70_000],
    ];
    for _ in 0..20 {
        for p in payloads {
            let mut s = UnixStream::connect(&d.socket)?;
            s.set_read_timeout(Some(Duration::from_millis(200)))?;
            // The daemon may hang up half-way through a long write.
            let _ = s.write_all(p);
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            // Dropped here: an abrupt disconnect.
        }
    }
    // Connections opened and left half-open while others are served.
    let idle: Vec<UnixStream> = (0..50)
        .map(|_| UnixStream::connect(&d.socket))
        .collect::<std::io::Result<_>>()?;
    assert!(status_ok(&d)?, "status after garbage");
    drop(idle);
    assert!(status_ok(&d)?);
    Ok(())
}

#[test]
fn a_hundred_concurrent_clients_all_answer() -> Result<()> {
    let d = BinDaemon::spawn(&temp_dir("rdrop-sec-")?, &[])?;
    let ctl = bin("ringdropctl")?;
    let children: Vec<_> = (0..100)
        .map(|i| {
            let args: &[&str] = match i % 3 {
                0 => &["--json", "status"],
                1 => &["--json", "transfers", "ls"],
                _ => &["--json", "shares", "ls"],
            };
            Command::new(&ctl)
                .arg("--socket")
                .arg(&d.socket)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut failed = Vec::new();
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() || out.stdout.is_empty() {
            failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 100 failed: {failed:?}",
        failed.len()
    );
    Ok(())
}

#[test]
fn files_at_rest_are_private() -> Result<()> {
    let dir = temp_dir("rdrop-sec-")?;
    let mut d = BinDaemon::spawn(&dir, &[])?;
    let data = dir.join("data");
    assert_eq!(mode(&data)?, 0o700, "data dir");
    assert_eq!(mode(&data.join("secret.key"))?, 0o600, "secret key");
    assert_eq!(mode(&d.socket)?, 0o600, "control socket");
    assert_eq!(
        mode(d.socket.parent().context("socket dir")?)? & 0o077,
        mode(&dir)? & 0o077,
        "the daemon does not loosen the socket's directory"
    );
    let status = d.terminate()?;
    assert!(status.success(), "{status}");
    Ok(())
}

#[test]
fn a_registry_from_a_newer_ringdropd_is_refused() -> Result<()> {
    let dir = temp_dir("rdrop-sec-")?;
    let mut d = BinDaemon::spawn(&dir, &[])?;
    assert!(d.terminate()?.success());
    {
        let db = redb::Database::open(dir.join("data/registry.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(redb::TableDefinition::<&str, u64>::new("meta"))?
            .insert("schema_version", 99)?;
        tx.commit()?;
    }
    let out = Command::new(bin("ringdropd")?)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["--relay", "disabled", "--no-mdns", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on a newer registry");
    assert!(
        err.contains("newer ringdropd") && err.contains("schema 99"),
        "unclear message: {err}"
    );
    assert!(!d.socket.exists(), "socket left behind");
    Ok(())
}

/// Runs `cmd` to its end, or fails when it still runs after 30 s (a
/// daemon that started, a client waiting on an impostor): the guard keeps
/// a failing run from hanging.
fn run_within(mut cmd: Command, what: &str) -> Result<std::process::Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).ok());
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(out) => Ok(out?),
        Err(_) => {
            Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .ok();
            anyhow::bail!("{what}: still running after 30 s")
        }
    }
}

/// Runs `ringdropd` with `args` (and `env`) and expects it to refuse to
/// start; returns what it said.
fn refused_start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let mut cmd = Command::new(bin("ringdropd")?);
    cmd.args([
        "--relay",
        "disabled",
        "--no-mdns",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir.join("data"))
    .args(args)
    .envs(env.iter().copied());
    let out = run_within(cmd, &format!("ringdropd started with {args:?} {env:?}"))?;
    assert!(
        !out.status.success(),
        "ringdropd started with {args:?} {env:?}"
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_socket_path_naming_a_file_or_a_shared_directory_is_refused() -> Result<()> {
    let dir = temp_dir("rdrop-sec-")?;
    // `--socket ~/notes.txt` by mistake: the file survives.
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, b"precious")?;
    let err = refused_start(&dir, &["--socket", notes.to_str().context("path")?], &[])?;
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&notes)?, b"precious");
    // A directory others may write (a shared temp dir): they could swap
    // the socket for their own.
    let shared = dir.join("shared");
    std::fs::create_dir(&shared)?;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777))?;
    let sock = shared.join("d.sock");
    let err = refused_start(&dir, &["--socket", sock.to_str().context("path")?], &[])?;
    assert!(err.contains("may be written by other users"), "{err}");
    assert!(!sock.exists());
    Ok(())
}

#[test]
fn ringdropctl_will_not_dial_a_socket_another_user_planted() -> Result<()> {
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if me != 0 {
        eprintln!("SKIPPED: planting a directory as another uid needs root");
        return Ok(());
    }
    // No XDG_RUNTIME_DIR: the user socket is <tmp>/ringdrop-<uid>; another
    // user created that directory first in a shared temp dir.
    let tmp = temp_dir("rdrop-tmp-")?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    let planted = tmp.join(format!("ringdrop-{me}"));
    std::fs::create_dir(&planted)?;
    let _impostor = std::os::unix::net::UnixListener::bind(planted.join("ringdropd.sock"))?;
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534))?;
    let mut cmd = Command::new(bin("ringdropctl")?);
    cmd.args(["status"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("RINGDROP_SOCKET")
        .env("TMPDIR", &tmp);
    let out = run_within(cmd, "ringdropctl talking to the planted socket")?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("refusing to talk to"), "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");
    Ok(())
}

#[test]
fn a_zero_gc_interval_is_refused_at_start() -> Result<()> {
    let dir = temp_dir("rdrop-sec-")?;
    let sock = dir.join("d.sock");
    let err = refused_start(
        &dir,
        &["--socket", sock.to_str().context("path")?],
        &[("RINGDROP_GC_INTERVAL", "0s")],
    )?;
    assert!(
        err.contains("gc_interval") && err.contains("at least 1s"),
        "{err}"
    );
    Ok(())
}
