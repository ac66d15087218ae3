//! `metrics_listen`: a real Prometheus (Debian's package) scrapes a daemon
//! during a fetch, with the bearer token file, and its HTTP API reports
//! the bytes fetched.

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use ringdrop_tests::{random_file, temp_dir, BinDaemon};
use serde_json::Value;

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One HTTP/1.0 GET (no chunked answers); the status and the body.
fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> Result<(u16, String)> {
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(token) = auth {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    req.push_str("\r\n");
    let (status, resp) = ringdrop_tests::http(addr, &req)?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// An instant query's values, as (labels, value).
fn query(prom: SocketAddr, q: &str) -> Result<Vec<(Value, f64)>> {
    let (status, body) = get(prom, &format!("/api/v1/query?query={q}"), None)?;
    ensure!(status == 200, "prometheus answered {status}: {body}");
    let v: Value = serde_json::from_str(&body)?;
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    Ok(result
        .into_iter()
        .filter_map(|r| {
            let value = r["value"][1].as_str()?.parse().ok()?;
            Some((r["metric"].clone(), value))
        })
        .collect())
}

fn have_prometheus() -> bool {
    let ok = Path::new("/usr/bin/prometheus").exists();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is missing on CI"
        );
        eprintln!("SKIPPED: the metrics test needs Debian's prometheus");
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_a_fetch() -> Result<()> {
    if !have_prometheus() {
        return Ok(());
    }
    let port = free_port()?;
    let metrics: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let fetcher_dir = temp_dir("rdrop-metrics-a-")?;
    let listen = metrics.to_string();
    let fetcher = BinDaemon::spawn(&fetcher_dir, &["--metrics-listen", &listen])?;
    let provider = BinDaemon::spawn(&temp_dir("rdrop-metrics-b-")?, &[])?;
    let token_file = fetcher_dir.join("data/metrics-token");
    let token = std::fs::read_to_string(&token_file)?.trim().to_string();

    // Without the token, or with another, nothing is told.
    assert_eq!(get(metrics, "/metrics", None)?.0, 401);
    assert_eq!(get(metrics, "/metrics", Some("nope"))?.0, 401);
    let (status, text) = get(metrics, "/metrics", Some(&token))?;
    assert_eq!(status, 200);
    assert!(text.contains("ringdrop_fetched_bytes_total 0"), "{text}");
    assert!(text.contains("endpoint_socket_"), "iroh's metrics missing");
    assert!(text.trim_end().ends_with("# EOF"));

    // A real Prometheus scraping every second with the token file.
    let prom_dir = temp_dir("rdrop-prom-")?;
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: ringdrop\n    authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: ['{metrics}']\n",
            token_file.display()
        ),
    )?;
    let _prometheus = Prometheus(
        Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let up = wait_for(Duration::from_secs(60), || {
        Ok(query(prom, "up")?.into_iter().any(|(_, v)| v == 1.0))
    })
    .await;
    ensure!(up.is_ok(), "prometheus never scraped the daemon");

    // A fetch of a few seconds (the provider's limit), scraped meanwhile.
    let size = 24 << 20;
    let src = temp_dir("rdrop-metrics-src-")?.join("payload.bin");
    let data = random_file(&src, size)?;
    let ticket = provider.ctl_json(&["share", src.to_str().context("path")?])?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    let limited = provider.ctl(&["limits", "--up", "6M"])?;
    ensure!(
        limited.status.success(),
        "{}",
        String::from_utf8_lossy(&limited.stderr)
    );
    let started = Instant::now();
    let out = temp_dir("rdrop-metrics-out-")?;
    let fetched = fetcher.ctl(&["fetch", &ticket, "--out", out.to_str().context("path")?])?;
    ensure!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert_eq!(std::fs::read(out.join("payload.bin"))?, data);

    // Prometheus has the size, and saw the fetch on its way.
    let got = wait_for(Duration::from_secs(60), || {
        Ok(query(prom, "ringdrop_fetched_bytes_total")?
            .first()
            .is_some_and(|(_, v)| *v == size as f64))
    })
    .await;
    ensure!(
        got.is_ok(),
        "prometheus never reported {size} bytes fetched: {:?}",
        query(prom, "ringdrop_fetched_bytes_total")
    );
    let secs = started.elapsed().as_secs() + 5;
    let (status, body) = get(
        prom,
        &format!("/api/v1/query?query=ringdrop_fetched_bytes_total%5B{secs}s%5D"),
        None,
    )?;
    ensure!(status == 200, "{body}");
    let v: Value = serde_json::from_str(&body)?;
    let samples: Vec<f64> = v["data"]["result"][0]["values"]
        .as_array()
        .context("no range")?
        .iter()
        .filter_map(|s| s[1].as_str()?.parse().ok())
        .collect();
    assert!(
        samples.iter().any(|v| *v > 0.0 && *v < size as f64),
        "no scrape during the fetch: {samples:?}"
    );
    let completed = query(prom, "ringdrop_transfers%7Bstate%3D%22completed%22%7D")?;
    assert_eq!(completed.first().map(|(_, v)| *v), Some(1.0));
    let attempts = query(prom, "ringdrop_fetch_attempts_total")?;
    assert!(attempts.first().is_some_and(|(_, v)| *v >= 1.0));
    Ok(())
}

/// The numbers of a scrape, by series (`name{labels}`).
fn scrape(addr: SocketAddr, token: &str) -> Result<std::collections::HashMap<String, f64>> {
    let (status, text) = get(addr, "/metrics", Some(token))?;
    ensure!(status == 200, "scrape answered {status}");
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// A refused fetch is counted on both sides by its reason and kind; what
/// was served by the provider, and its limit's waits; no peer id, name or
/// path in any series.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_and_served_bytes_are_counted_by_reason() -> Result<()> {
    let (pm, fm): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()?).parse()?,
        format!("127.0.0.1:{}", free_port()?).parse()?,
    );
    let (pdir, fdir) = (temp_dir("rdrop-metrics-p-")?, temp_dir("rdrop-metrics-f-")?);
    let provider = BinDaemon::spawn(&pdir, &["--metrics-listen", &pm.to_string()])?;
    let fetcher = BinDaemon::spawn(&fdir, &["--metrics-listen", &fm.to_string()])?;
    let ptoken = std::fs::read_to_string(pdir.join("data/metrics-token"))?
        .trim()
        .to_string();
    let ftoken = std::fs::read_to_string(fdir.join("data/metrics-token"))?
        .trim()
        .to_string();
    let src = temp_dir("rdrop-metrics-src-")?;
    random_file(&src.join("open.bin"), 3 << 20)?;
    random_file(&src.join("secret-name.bin"), 1 << 20)?;
    let path = |n: &str| src.join(n).to_str().map(str::to_string).context("path");
    provider.ctl_json(&["ring", "create", "team"])?;
    let open = provider.ctl_json(&["share", &path("open.bin")?])?["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    let closed = provider.ctl_json(&["share", &path("secret-name.bin")?, "--ring", "team"])?
        ["ticket"]
        .as_str()
        .context("ticket")?
        .to_string();
    // Paced: the provider's uplink waits for its limit.
    let limited = provider.ctl(&["limits", "--up", "8M"])?;
    ensure!(
        limited.status.success(),
        "{}",
        String::from_utf8_lossy(&limited.stderr)
    );
    let out = temp_dir("rdrop-metrics-out-")?;
    let ok = fetcher.ctl(&["fetch", &open, "--out", out.to_str().context("path")?])?;
    ensure!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = fetcher.ctl(&["fetch", &closed, "--out", out.to_str().context("path")?])?;
    ensure!(!refused.status.success(), "a stranger fetched a ring share");

    // The provider adds a request's bytes when its stream ends.
    let served = wait_for(Duration::from_secs(30), || {
        Ok(scrape(pm, &ptoken)?["ringdrop_served_bytes_total"] >= (3 << 20) as f64)
    })
    .await;
    ensure!(
        served.is_ok(),
        "served bytes never counted: {:?}",
        scrape(pm, &ptoken)
    );
    let p = scrape(pm, &ptoken)?;
    let f = scrape(fm, &ftoken)?;
    let refusals = p
        .get("ringdrop_gate_refusals_total{reason=\"not_permitted\"}")
        .copied()
        .unwrap_or(0.0);
    assert!(refusals >= 1.0, "no refusal counted: {p:?}");
    assert_eq!(p["ringdrop_shares"], 2.0);
    assert!(
        p["ringdrop_throttle_waits_total{direction=\"up\"}"] >= 1.0,
        "{p:?}"
    );
    assert_eq!(p["ringdrop_throttle_waits_total{direction=\"down\"}"], 0.0);
    let failures = f
        .get("ringdrop_fetch_failures_total{kind=\"refused\"}")
        .copied()
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "no refused attempt counted: {f:?}");
    assert_eq!(f["ringdrop_transfers{state=\"completed\"}"], 1.0);
    assert_eq!(f["ringdrop_transfers{state=\"failed\"}"], 1.0);

    // Nothing that names a peer, a share or a path is a label.
    let pid = provider.ctl_json(&["status"])?["endpoint_id"]
        .as_str()
        .context("id")?
        .to_string();
    for series in p.keys().chain(f.keys()) {
        for private in [pid.as_str(), "secret-name", "rdrop-metrics", "team"] {
            assert!(!series.contains(private), "{series} names {private}");
        }
    }
    Ok(())
}

async fn wait_for(limit: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        if check().unwrap_or(false) {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("timed out");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
