//! Bandwidth limits set with `ringdropctl limits` at run time hold on
//! running transfers, are lifted as quickly, and outlive a restart (real
//! binaries). The bounds checked are upper bounds a limiter guarantees
//! however slow the machine is: a limit may make a fetch slower than the
//! bound, never faster.

use std::time::Instant;

use anyhow::{Context, Result};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{completed, temp_dir, wait_done, watch_until, BinDaemon, OneFile};

const MIB: u64 = 1024 * 1024;

/// Bytes `d`'s transfer `id` moves over about two seconds, and how long
/// that was, measured from its own progress reports.
async fn moved_over_two_seconds(d: &BinDaemon, id: u64) -> Result<(u64, f64)> {
    let first = watch_until(&d.socket, id, |t| t.bytes_done > 0).await?;
    let t0 = Instant::now();
    let last = watch_until(&d.socket, id, |_| t0.elapsed().as_secs_f64() >= 2.0).await?;
    Ok((
        last.bytes_done.saturating_sub(first.bytes_done),
        t0.elapsed().as_secs_f64(),
    ))
}

/// At most `rate` bytes a second over `secs`, plus what QUIC's windows
/// and one chunk let through before the limiter holds.
fn within(moved: u64, rate: u64, secs: f64) -> bool {
    moved as f64 <= rate as f64 * secs * 1.15 + 6.0 * MIB as f64
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_set_at_run_time_hold_and_lift() -> Result<()> {
    let mut f = OneFile::new(64 * MIB, "0").await?;
    // The fetcher's node download limit, set before the fetch.
    let set = f.b.ctl_json(&["limits", "--down", "2M"])?;
    assert_eq!(set["down"], 2 * MIB, "{set}");
    assert_eq!(set["source"], "set");
    let id = f.b.fetch(&f.ticket, &f.out).await?;
    let (moved, secs) = moved_over_two_seconds(&f.b, id).await?;
    assert!(
        within(moved, 2 * MIB, secs),
        "{moved} bytes in {secs:.1}s at 2 MiB/s"
    );

    // `transfers show` names its provider, what it sent and the path.
    let shown = f.b.ctl_json(&["transfers", "show", &id.to_string()])?;
    let provider = &shown["providers"][0];
    let a_id = f.a.ctl_json(&["id"])?["endpoint_id"].clone();
    assert_eq!(provider["endpoint_id"], a_id, "{shown}");
    assert_eq!(provider["connected"], true, "{shown}");
    assert!(provider["bytes"].as_u64().unwrap_or(0) > 0, "{shown}");
    let path = provider["path"].as_str().unwrap_or_default();
    assert!(path.starts_with("direct 127.0.0.1:"), "{shown}");

    // Its own, lower limit, by the transfer's owner.
    let own =
        f.b.ctl_json(&["limits", "--transfer", &id.to_string(), "--down", "1M"])?;
    assert_eq!(own["transfers"][0]["down"], MIB, "{own}");
    let (moved, secs) = moved_over_two_seconds(&f.b, id).await?;
    assert!(
        within(moved, MIB, secs),
        "{moved} bytes in {secs:.1}s at 1 MiB/s"
    );

    // The provider limits what it sends to this peer, at run time.
    f.b.ctl_json(&["limits", "--transfer", &id.to_string(), "--down", "0"])?;
    f.b.ctl_json(&["limits", "--down", "unlimited"])?;
    let fetcher = f.b.ctl_json(&["id"])?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string();
    let peer =
        f.a.ctl_json(&["limits", "--peer", &fetcher, "--up", "1536K"])?;
    assert_eq!(peer["peers"][0]["up"], 1536 * 1024, "{peer}");
    let (moved, secs) = moved_over_two_seconds(&f.b, id).await?;
    assert!(
        within(moved, 1536 * 1024, secs),
        "{moved} bytes in {secs:.1}s at 1.5 MiB/s"
    );
    let seen =
        f.b.transfers()
            .await?
            .get_transfer(pb::GetTransferRequest { id })
            .await?
            .into_inner();
    assert!(!completed(&seen), "finished under a limit: {seen:?}");

    // Lifted: it completes, and the content is whole.
    f.a.ctl_json(&["limits", "--peer", &fetcher, "--up", "0"])?;
    let t = wait_done(&f.b.socket, id).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(f.out.join("big.bin"))?, f.data);

    // Kept across a restart; --reset returns to the config's.
    f.a.ctl_json(&[
        "limits",
        "--up",
        "3M",
        "--alt-up",
        "1M",
        "--alt-hours",
        "22:00-06:00",
        "--alt-days",
        "sat,sun",
    ])?;
    f.a.terminate()?;
    f.a.restart()?;
    let kept = f.a.ctl_json(&["limits"])?;
    assert_eq!(kept["up"], 3 * MIB, "{kept}");
    assert_eq!(kept["alt_hours"], "22:00-06:00");
    assert_eq!(kept["alt_days"], "sat,sun");
    assert_eq!(kept["source"], "set");
    let reset = f.a.ctl_json(&["limits", "--reset"])?;
    assert_eq!(reset["up"], 0, "{reset}");
    assert_eq!(reset["source"], "config");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_limits_are_refused_with_a_reason() -> Result<()> {
    let d = BinDaemon::spawn(&temp_dir("rdrop-a-")?, &["--max-download-rate", "5M"])?;
    let shown = d.ctl_json(&["limits"])?;
    assert_eq!(shown["down"], 5 * MIB, "the flag: {shown}");
    assert_eq!(shown["source"], "config");
    for (args, says) in [
        (
            &["limits", "--alt-hours", "8-18"][..],
            "not a span of hours",
        ),
        (
            &[
                "limits",
                "--alt-hours",
                "08:00-18:00",
                "--alt-days",
                "someday",
            ][..],
            "not a set of days",
        ),
        (
            &["limits", "--peer", "nobody-known", "--up", "1M"][..],
            "nobody-known",
        ),
        (
            &["limits", "--transfer", "99", "--down", "1M"][..],
            "no transfer",
        ),
        (&["limits", "--up", "fast"][..], "not a size"),
    ] {
        let out = d.ctl(args)?;
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let unchanged = d.ctl_json(&["limits"])?;
    assert_eq!(unchanged, shown, "a refused change changed nothing");
    Ok(())
}
