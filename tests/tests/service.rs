//! Running as a service, as far as CI allows without systemd as PID 1:
//! install.sh layouts, socket activation of the installed binary with a
//! notify socket, READY=1 only once the socket serves, config precedence
//! and errors, and the Python gRPC client.

use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{bin, bin_dir, channel, completed, random_file, temp_dir, TestDaemon};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether a tool is there; on CI it must be (.ci/run installs it).
fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "{tool} is missing on CI");
        eprintln!("SKIPPED: {tool} is not installed");
    }
    ok
}

fn install(destdir: &Path, extra: &[&str], home: &str) -> Result<()> {
    let out = Command::new(repo().join("systemd/install.sh"))
        .args(["--bin-dir", bin_dir().to_str().unwrap(), "--no-build"])
        .args(extra)
        .env("DESTDIR", destdir)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()?;
    if !out.status.success() {
        bail!(
            "install.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn install_user_and_system_layouts() -> Result<()> {
    let d = temp_dir("rdrop-install-")?;
    install(&d.join("u"), &["--user"], "/home/alice")?;
    for f in [
        "home/alice/.local/bin/ringdropd",
        "home/alice/.local/bin/ringdropctl",
        "home/alice/.config/systemd/user/ringdropd.service",
        "home/alice/.config/systemd/user/ringdropd.socket",
        "home/alice/.config/ringdrop/ringdropd.toml",
        "home/alice/.local/share/man/man1/ringdropd.1",
        "home/alice/.local/share/man/man1/ringdropctl.1",
        "home/alice/.local/share/man/man1/ringdropctl-fetch.1",
        "home/alice/.local/share/bash-completion/completions/ringdropctl",
        "home/alice/.local/share/zsh/site-functions/_ringdropctl",
        "home/alice/.local/share/fish/vendor_completions.d/ringdropctl.fish",
    ] {
        assert!(d.join("u").join(f).is_file(), "{f} missing");
    }
    let unit =
        std::fs::read_to_string(d.join("u/home/alice/.config/systemd/user/ringdropd.service"))?;
    assert!(
        unit.contains("ExecStart=/home/alice/.local/bin/ringdropd"),
        "{unit}"
    );
    assert!(unit.contains("Type=notify"));

    install(&d.join("s"), &[], "/root")?;
    for f in [
        "usr/local/bin/ringdropd",
        "etc/systemd/system/ringdropd.service",
        "etc/systemd/system/ringdropd.socket",
        "etc/sysusers.d/ringdrop.conf",
        "etc/ringdrop/ringdropd.toml",
    ] {
        assert!(d.join("s").join(f).is_file(), "{f} missing");
    }
    let unit = std::fs::read_to_string(d.join("s/etc/systemd/system/ringdropd.service"))?;
    assert!(unit.contains("ExecStart=/usr/local/bin/ringdropd --system"));
    // The example config is valid for the daemon as shipped.
    let out = Command::new(bin("ringdropd")?)
        .arg("--config")
        .arg(d.join("s/etc/ringdrop/ringdropd.toml"))
        .arg("--print-config")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second install keeps an edited config.
    std::fs::write(
        d.join("s/etc/ringdrop/ringdropd.toml"),
        "relay = \"disabled\"\n",
    )?;
    install(&d.join("s"), &[], "/root")?;
    assert_eq!(
        std::fs::read_to_string(d.join("s/etc/ringdrop/ringdropd.toml"))?,
        "relay = \"disabled\"\n"
    );
    assert!(d.join("s/etc/ringdrop/ringdropd.toml.example").is_file());
    Ok(())
}

fn print_config(args: &[&str], envs: &[(&str, &str)]) -> Result<(bool, String, String)> {
    let mut cmd = Command::new(bin("ringdropd")?);
    cmd.args(args).arg("--print-config");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGDROP_")) {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn config_precedence_flags_env_file_defaults() -> Result<()> {
    let d = temp_dir("rdrop-cfg-")?;
    let file = d.join("ringdropd.toml");
    std::fs::write(
        &file,
        "max_concurrent_transfers = 2\nrelay = \"disabled\"\nmdns = false\n",
    )?;
    let f = file.to_str().unwrap();
    let (ok, out, _) = print_config(&["--config", f], &[])?;
    assert!(
        ok && out.contains("max_concurrent_transfers = 2") && out.contains("relay = \"disabled\""),
        "{out}"
    );
    let (_, out, _) = print_config(
        &["--config", f],
        &[("RINGDROP_MAX_CONCURRENT_TRANSFERS", "3")],
    )?;
    assert!(
        out.contains("max_concurrent_transfers = 3"),
        "env beats file: {out}"
    );
    let (_, out, _) = print_config(
        &["--config", f, "--max-concurrent-transfers", "5"],
        &[("RINGDROP_MAX_CONCURRENT_TRANSFERS", "3")],
    )?;
    assert!(
        out.contains("max_concurrent_transfers = 5"),
        "flag beats env: {out}"
    );
    assert!(out.contains("mdns = false"), "file value kept: {out}");
    let (_, out, _) = print_config(&[], &[("RINGDROP_CONFIG", f)])?;
    assert!(
        out.contains("max_concurrent_transfers = 2"),
        "RINGDROP_CONFIG names the file: {out}"
    );
    let (_, out, _) = print_config(&["--config", f, "--no-mdns", "--relay", "default"], &[])?;
    assert!(out.contains("relay = \"default\""));
    Ok(())
}

#[test]
fn bad_config_fails_start_up_naming_the_key() -> Result<()> {
    let d = temp_dir("rdrop-cfg-")?;
    let file = d.join("bad.toml");
    std::fs::write(&file, "relays = \"disabled\"\n")?;
    let (ok, _, err) = print_config(&["--config", file.to_str().unwrap()], &[])?;
    assert!(!ok);
    assert!(err.contains("unknown key `relays`"), "{err}");
    std::fs::write(&file, "max_concurrent_transfers = \"lots\"\n")?;
    let (ok, _, err) = print_config(&["--config", file.to_str().unwrap()], &[])?;
    assert!(!ok && err.contains("max_concurrent_transfers"), "{err}");
    let (ok, _, err) = print_config(&[], &[("RINGDROP_BIND", "nowhere")])?;
    assert!(!ok && err.contains("environment: key `bind`"), "{err}");
    // Not only --print-config: the daemon itself refuses to start.
    let out = Command::new(bin("ringdropd")?)
        .args(["--config", file.to_str().unwrap(), "--socket"])
        .arg(d.join("s.sock"))
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(!d.join("s.sock").exists());
    Ok(())
}

/// Reads notify messages until one contains `want`.
fn wait_notify(sock: &UnixDatagram, want: &str) -> Result<Vec<String>> {
    sock.set_read_timeout(Some(ringdrop_tests::TIMEOUT))?;
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).context("no notify message")?;
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = msg.lines().any(|l| l == want);
        seen.push(msg);
        if done {
            return Ok(seen);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_is_sent_only_once_the_socket_serves() -> Result<()> {
    let d = temp_dir("rdrop-notify-")?;
    let notify = UnixDatagram::bind(d.join("notify"))?;
    let socket = d.join("d.sock");
    let mut child = Command::new(bin("ringdropd")?)
        .arg("--data-dir")
        .arg(d.join("data"))
        .arg("--socket")
        .arg(&socket)
        .args(["--relay", "disabled", "--no-mdns", "--bind", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", d.join("notify"))
        .stderr(Stdio::null())
        .spawn()?;
    let seen =
        tokio::task::spawn_blocking(move || wait_notify(&notify, "READY=1").map(|s| (s, notify)))
            .await??;
    // At READY=1 the control socket answers at once.
    let status = ringdrop_proto::v1::node_client::NodeClient::new(channel(&socket).await?)
        .get_status(pb::GetStatusRequest {})
        .await?;
    assert!(!status.into_inner().endpoint_id.is_empty());
    assert!(seen.0.iter().any(|m| m.contains("STATUS=")), "{:?}", seen.0);
    // SIGTERM: STOPPING=1, then a clean exit.
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let notify = seen.1;
    tokio::task::spawn_blocking(move || wait_notify(&notify, "STOPPING=1")).await??;
    assert!(child.wait()?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_daemon_under_socket_activation_fetches_a_file() -> Result<()> {
    if !have("systemd-socket-activate") {
        return Ok(());
    }
    let d = temp_dir("rdrop-activate-")?;
    install(&d.join("root"), &[], "/root")?;
    let installed = d.join("root/usr/local/bin/ringdropd");
    let socket = d.join("activated.sock");
    let notify = UnixDatagram::bind(d.join("notify"))?;
    let data = d.join("data");
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", d.join("notify").display()))
        .arg(&installed)
        .arg("--data-dir")
        .arg(&data)
        .arg("--socket")
        .arg(&socket)
        .args(["--relay", "disabled", "--no-mdns", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // systemd-socket-activate listens first and starts the daemon on the
    // first connection; wait for its socket to exist.
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        while !socket.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    let status = Command::new(bin("ringdropctl")?)
        .arg("--socket")
        .arg(&socket)
        .args(["--json", "status"])
        .output()?;
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let seen = tokio::task::spawn_blocking(move || wait_notify(&notify, "READY=1")).await??;
    assert!(!seen.is_empty());

    // Fetch a file through the activated daemon from another node.
    let provider = TestDaemon::start().await?;
    let src = temp_dir("rdrop-src-")?.join("via-socket.bin");
    let bytes = random_file(&src, 1_000_000)?;
    let share = provider.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let fetched = Command::new(bin("ringdropctl")?)
        .arg("--socket")
        .arg(&socket)
        .args(["fetch", &share.ticket, "--out"])
        .arg(&out)
        .output()?;
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert_eq!(std::fs::read(out.join("via-socket.bin"))?, bytes);

    activator.kill()?;
    activator.wait()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn python_grpc_client() -> Result<()> {
    let importable = Command::new("python3")
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_health, grpc_reflection",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !importable {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcio, grpcio-tools, grpcio-health-checking or grpcio-reflection missing on CI"
        );
        eprintln!("SKIPPED: python3 with grpcio, grpcio-tools, grpcio-health-checking and grpcio-reflection is not installed");
        return Ok(());
    }
    let a = TestDaemon::start().await?;
    let b = TestDaemon::start().await?;
    let src = temp_dir("rdrop-src-")?.join("py.bin");
    let bytes = random_file(&src, 300_000)?;
    let out = temp_dir("rdrop-out-")?;
    let res = tokio::task::spawn_blocking({
        let (a, b, src, out) = (a.socket.clone(), b.socket.clone(), src.clone(), out.clone());
        move || {
            Command::new("python3")
                .arg(repo().join("tests/python/client.py"))
                .args([&a, &b, &src, &out])
                .output()
        }
    })
    .await??;
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(stdout.contains("\"step\": \"done\""), "{stdout}");
    assert!(stdout.contains("\"step\": \"health\""), "{stdout}");
    assert!(stdout.contains("\"step\": \"reflection\""), "{stdout}");
    assert!(stdout.contains("TRANSFER_STATE_COMPLETED"), "{stdout}");
    assert_eq!(std::fs::read(out.join("py.bin"))?, bytes);
    let list = b
        .transfers()
        .list_transfers(pb::ListTransfersRequest {})
        .await?
        .into_inner();
    assert!(completed(&list.transfers[0]));
    Ok(())
}
