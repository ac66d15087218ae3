//! Events for scripts (real binaries): `WatchEvents` and `ringdropctl
//! --json events` report a transfer that ended and a share served; the
//! `on_complete` command runs after a completed fetch with the transfer in
//! its environment, a peer-chosen name only as a value, and is killed at
//! its timeout.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use ringdrop_proto::v1::{self as pb, event::Kind};
use ringdrop_tests::{completed, random_file, temp_dir, wait_done, BinDaemon};

async fn next_of(stream: &mut tonic::Streaming<pb::Event>, kind: Kind) -> Result<pb::Event> {
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        loop {
            let e = stream.message().await?.context("the event stream ended")?;
            if e.kind == kind as i32 {
                return anyhow::Ok(e);
            }
        }
    })
    .await?
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_and_served_shares_are_reported() -> Result<()> {
    let src = temp_dir("rdrop-src-")?.join("report.bin");
    let data = random_file(&src, 3 << 20)?;
    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = BinDaemon::spawn(&temp_dir("rdrop-b-")?, &[])?;
    let mut a_events = a
        .node()
        .await?
        .watch_events(pb::WatchEventsRequest {})
        .await?
        .into_inner();
    let mut b_events = b
        .node()
        .await?
        .watch_events(pb::WatchEventsRequest {})
        .await?
        .into_inner();
    let mut b_providers = b
        .node()
        .await?
        .watch_events(pb::WatchEventsRequest {})
        .await?
        .into_inner();
    // And a script's view: `ringdropctl --json events`, one object a line.
    let mut script = std::process::Command::new(ringdrop_tests::bin("ringdropctl")?)
        .arg("--socket")
        .arg(&b.socket)
        .args(["--json", "events"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let lines = BufReader::new(script.stdout.take().context("stdout")?);
    // Its subscription must exist before the fetch ends.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;
    let t = wait_done(&b.socket, id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("report.bin"))?, data);

    // The transfer gained its provider, reached directly, then lost it.
    let a_id = a.ctl_json(&["id"])?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string();
    let gained = next_of(&mut b_providers, Kind::ProviderChanged).await?;
    assert!(gained.connected, "{gained:?}");
    assert_eq!((gained.transfer_id, &gained.peer), (id, &a_id));
    assert!(gained.path.starts_with("direct 127.0.0.1:"), "{gained:?}");
    let lost = next_of(&mut b_providers, Kind::ProviderChanged).await?;
    assert!(!lost.connected, "{lost:?}");
    assert_eq!((lost.transfer_id, &lost.peer), (id, &a_id));

    let ended = next_of(&mut b_events, Kind::TransferEnded).await?;
    assert_eq!(ended.transfer_id, id);
    assert_eq!(ended.state, "completed");
    assert_eq!(ended.dest, out.display().to_string());
    assert_eq!(ended.files, 1);
    let served = next_of(&mut a_events, Kind::ShareServed).await?;
    let b_id = b
        .node()
        .await?
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner()
        .endpoint_id;
    assert_eq!(served.peer, b_id);
    assert!(served.bytes > 0);

    let line = tokio::task::spawn_blocking(move || {
        lines
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("transfer_ended"))
    })
    .await?
    .context("no transfer_ended line")?;
    script.kill().ok();
    script.wait().ok();
    let v: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(v["transfer_id"], id);
    assert_eq!(v["state"], "completed");
    Ok(())
}

/// A daemon with `on_complete` set in its config file.
fn with_hook(dir: &Path, argv: &[&str], timeout: &str) -> Result<BinDaemon> {
    let config = dir.join("ringdropd.toml");
    let argv: Vec<toml::Value> = argv.iter().map(|a| toml::Value::from(*a)).collect();
    std::fs::write(
        &config,
        format!(
            "on_complete = {}\non_complete_timeout = \"{timeout}\"\n",
            toml::Value::Array(argv)
        ),
    )?;
    BinDaemon::spawn(dir, &["--config", config.to_str().context("path")?])
}

#[tokio::test(flavor = "multi_thread")]
async fn on_complete_gets_the_transfer_as_values_and_a_timeout() -> Result<()> {
    let work = temp_dir("rdrop-hook-")?;
    // A name a shell would run: it must reach the command as a value only.
    let marker = format!("rdrop-pwned-{}", std::process::id());
    let src = temp_dir("rdrop-src-")?.join(format!("x$(touch {marker}).bin"));
    let data = random_file(&src, 100_000)?;
    let report = work.join("env.txt");
    let hook = work.join("hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nenv | grep '^RINGDROP_' | sort > '{}'\n",
            report.display()
        ),
    )?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;

    let a = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &[])?;
    let b = with_hook(
        &temp_dir("rdrop-b-")?,
        &[hook.to_str().context("path")?],
        "30s",
    )?;
    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;
    let t = wait_done(&b.socket, id).await?;
    assert!(completed(&t), "{t:?}");
    let placed = out.join(src.file_name().context("name")?);
    assert_eq!(std::fs::read(&placed)?, data);

    let env = tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        loop {
            if let Ok(s) = std::fs::read_to_string(&report) {
                if s.contains("RINGDROP_TRANSFER_ID") {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .context("on_complete did not run")?;
    assert!(
        env.contains(&format!("RINGDROP_TRANSFER_ID={id}\n")),
        "{env}"
    );
    assert!(
        env.contains(&format!("RINGDROP_DEST={}\n", out.display())),
        "{env}"
    );
    assert!(
        env.contains(&format!("RINGDROP_FIRST_FILE={}\n", placed.display())),
        "{env}"
    );
    assert!(env.contains("RINGDROP_FILE_COUNT=1\n"), "{env}");
    assert!(env.contains(&format!("$(touch {marker})")), "{env}");
    for dir in [
        "/",
        out.to_str().context("path")?,
        work.to_str().context("path")?,
    ] {
        assert!(
            !Path::new(dir).join(&marker).exists(),
            "the name ran in {dir}"
        );
    }

    // A command that does not end is killed at its timeout.
    let c = with_hook(&temp_dir("rdrop-c-")?, &["/bin/sleep", "600"], "1s")?;
    let out = temp_dir("rdrop-out-")?;
    let id = c.fetch(&ticket, &out).await?;
    assert!(completed(&wait_done(&c.socket, id).await?));
    let log = c.dir.join("ringdropd.log");
    tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("did not finish within 1s and was killed")
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .context("the command was not killed at its timeout")?;
    Ok(())
}
