//! Real networks between real daemons, in network namespaces (needs root
//! and iproute2): a link that goes down for longer than iroh's idle
//! timeout mid-transfer, and two hosts with no route to each other that
//! move a file through a relay server which is restarted half way.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result};
use ringdrop_proto::v1 as pb;
use ringdrop_tests::{
    completed,
    netns::{ip, Netns},
    random_file, temp_dir, watch_until, BinDaemon,
};

const MIB: u64 = 1024 * 1024;

/// A short interface name unique to this test process.
fn ifname(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id() % 100_000)
}

async fn transfer(d: &BinDaemon, id: u64) -> Result<pb::Transfer> {
    Ok(d.transfers()
        .await?
        .get_transfer(pb::GetTransferRequest { id })
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn link_down_for_20s_mid_transfer_then_it_finishes() -> Result<()> {
    let (Some(na), Some(nb)) = (Netns::add("rdpa")?, Netns::add("rdpb")?) else {
        return Ok(());
    };
    let (va, vb) = (ifname("rpa"), ifname("rpb"));
    ip(&[
        "link", "add", &va, "netns", &na.name, "type", "veth", "peer", "name", &vb, "netns",
        &nb.name,
    ])?;
    na.exec(&["addr", "add", "10.77.0.1/24", "dev", &va])?;
    nb.exec(&["addr", "add", "10.77.0.2/24", "dev", &vb])?;
    na.exec(&["link", "set", &va, "up"])?;
    nb.exec(&["link", "set", &vb, "up"])?;

    let size = 48 * MIB;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, size as usize)?;
    let a = BinDaemon::spawn_in(
        &na.name,
        &temp_dir("rdrop-a-")?,
        &["--bind", "10.77.0.1:0", "--max-upload-rate", "4M"],
    )?;
    let b = BinDaemon::spawn_in(&nb.name, &temp_dir("rdrop-b-")?, &["--bind", "10.77.0.2:0"])?;
    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;
    watch_until(&b.socket, id, |t| t.bytes_done >= 8 * MIB).await?;

    na.exec(&["link", "set", &va, "down"])?;
    // Longer than the 15 s after which iroh gives a silent path up: the
    // connection is lost and the transfer has to reconnect by itself.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = transfer(&b, id).await?;
    assert!(
        !completed(&during),
        "finished with the link down: {during:?}"
    );
    na.exec(&["link", "set", &va, "up"])?;

    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(completed(&t), "{t:?}");
    assert!(t.attempts >= 2, "no reconnect happened: {t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    eprintln!(
        "partition: link down 20 s at {} bytes; completed after {} attempts, {} bytes received for {size}",
        during.bytes_done, t.attempts, t.bytes_received
    );
    Ok(())
}

/// An address on the root namespace's loopback, removed on drop.
struct RootAddr(&'static str);

impl Drop for RootAddr {
    fn drop(&mut self) {
        ip(&["addr", "del", self.0, "dev", "lo"]).ok();
    }
}

/// The relay server (iroh-relay, plain HTTP, no QUIC address discovery).
async fn relay_on(addr: SocketAddr) -> Result<iroh_relay::server::Server> {
    // The old server's socket may take a moment to be released.
    let mut tries = 0;
    loop {
        let mut c = iroh_relay::server::ServerConfig::default();
        c.relay = Some(iroh_relay::server::RelayConfig::new(addr));
        match iroh_relay::server::Server::spawn(c).await {
            Ok(s) => return Ok(s),
            Err(_) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("starting the relay server"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_route_between_hosts_relay_carries_it_and_survives_a_restart() -> Result<()> {
    let (Some(na), Some(nb)) = (Netns::add("rdra")?, Netns::add("rdrb")?) else {
        return Ok(());
    };
    // Each host has a link to this (root) namespace and a route to the
    // relay's address only; nothing routes between the two hosts.
    let relay_ip = "10.78.0.1";
    ip(&["addr", "add", &format!("{relay_ip}/32"), "dev", "lo"])?;
    let _relay_ip = RootAddr("10.78.0.1/32");
    for (ns, net) in [(&na, 1), (&nb, 2)] {
        let (root_if, host_if) = (ifname(&format!("rr{net}")), ifname(&format!("rh{net}")));
        ip(&[
            "link", "add", &root_if, "type", "veth", "peer", "name", &host_if, "netns", &ns.name,
        ])?;
        ip(&["addr", "add", &format!("10.78.{net}.1/24"), "dev", &root_if])?;
        ip(&["link", "set", &root_if, "up"])?;
        ns.exec(&["addr", "add", &format!("10.78.{net}.2/24"), "dev", &host_if])?;
        ns.exec(&["link", "set", &host_if, "up"])?;
        ns.exec(&[
            "route",
            "add",
            &format!("{relay_ip}/32"),
            "via",
            &format!("10.78.{net}.1"),
        ])?;
    }
    // The hosts really cannot reach each other directly.
    assert!(
        nb.exec(&["route", "get", "10.78.1.2"]).is_err(),
        "B has a route to A"
    );
    let relay_addr: SocketAddr = format!("{relay_ip}:0").parse()?;
    let relay = relay_on(relay_addr).await?;
    let relay_addr = relay.http_addr().context("relay address")?;
    let url = format!("http://{relay_addr}");

    let size = 32 * MIB;
    let src = temp_dir("rdrop-src-")?.join("big.bin");
    let data = random_file(&src, size as usize)?;
    let a = BinDaemon::spawn_in(
        &na.name,
        &temp_dir("rdrop-a-")?,
        &[
            "--bind",
            "10.78.1.2:0",
            "--relay",
            &url,
            "--max-upload-rate",
            "4M",
        ],
    )?;
    let b = BinDaemon::spawn_in(
        &nb.name,
        &temp_dir("rdrop-b-")?,
        &["--bind", "10.78.2.2:0", "--relay", &url],
    )?;
    // The ticket names the relay once A is connected to it.
    for d in [&a, &b] {
        tokio::time::timeout(ringdrop_tests::TIMEOUT, async {
            loop {
                let s = d
                    .node()
                    .await?
                    .get_status(pb::GetStatusRequest {})
                    .await?
                    .into_inner();
                if !s.relay_url.is_empty() {
                    return anyhow::Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .context("no home relay")??;
    }
    let (ticket, _) = a.share(&src).await?;
    let out = temp_dir("rdrop-out-")?;
    let id = b.fetch(&ticket, &out).await?;
    watch_until(&b.socket, id, |t| t.bytes_done >= 6 * MIB).await?;

    relay.shutdown().await.ok();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stalled = transfer(&b, id).await?;
    assert!(
        !completed(&stalled),
        "finished without the relay: {stalled:?}"
    );
    let _relay = relay_on(relay_addr).await?;

    let t = watch_until(&b.socket, id, |_| false).await?;
    assert!(completed(&t), "{t:?}");
    assert_eq!(std::fs::read(out.join("big.bin"))?, data);
    eprintln!(
        "relay: relay down 3 s at {} bytes; completed after {} attempts",
        stalled.bytes_done, t.attempts
    );
    Ok(())
}
