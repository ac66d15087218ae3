//! Test harness: in-process daemons on temp dirs (relays and mDNS off,
//! loopback only), gRPC clients for them, and helpers to drive the real
//! binaries.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ringdrop_proto::v1::{
    self as pb, node_client::NodeClient, shares_client::SharesClient,
    transfers_client::TransfersClient,
};
use ringdropd::{Config, Listener};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::transport::{Channel, Endpoint};

mod bin;
pub mod netns;
pub use bin::{BinDaemon, OneFile};

/// Upper bound for any single wait in a test (never a speed assertion).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A daemon running inside the test process.
pub struct TestDaemon {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub bind: SocketAddr,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ringdropd::RunError>>>,
    pub channel: Channel,
}

/// Connects a gRPC channel to a Unix socket.
pub async fn channel(socket: &Path) -> Result<Channel> {
    Ok(Endpoint::from_shared(format!("unix:{}", socket.display()))?
        .connect()
        .await?)
}

impl TestDaemon {
    /// A fresh daemon in a new temp dir.
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// A fresh daemon whose config `tweak` adjusts (e.g. an upload limit).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rdrop-test-")
            .tempdir()?
            .keep();
        let mut config = Config::isolated(&dir);
        tweak(&mut config);
        Self::start_config(config).await
    }

    /// A daemon on `dir` (reusing its data) bound to `bind`.
    pub async fn start_in(dir: &Path, bind: SocketAddr) -> Result<Self> {
        let mut config = Config::isolated(dir);
        config.bind = Some(bind);
        Self::start_config(config).await
    }

    /// A daemon with exactly `config`.
    pub async fn start_config(config: Config) -> Result<Self> {
        let dir = config
            .data_dir
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let bind = config.bind.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        let socket = config.socket.clone();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(ringdropd::run(
            config.clone(),
            Listener::Create,
            async move {
                stop_rx.await.ok();
            },
        ));
        let channel = tokio::time::timeout(TIMEOUT, async {
            loop {
                if task.is_finished() {
                    return Err(anyhow::anyhow!("daemon exited during start-up"));
                }
                if let Ok(c) = channel(&socket).await {
                    return Ok(c);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .context("daemon did not start")?;
        let channel = match channel {
            Ok(c) => c,
            Err(e) => {
                let why = match task.await {
                    Ok(Err(err)) => err.to_string(),
                    other => format!("{other:?}"),
                };
                bail!("{e}: {why}");
            }
        };
        let mut d = Self {
            dir,
            socket,
            bind,
            config,
            stop: Some(stop_tx),
            task: Some(task),
            channel,
        };
        // Learn the port actually bound, so a restart can reuse it.
        let status = d
            .node()
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        if let Some(a) = status
            .direct_addresses
            .iter()
            .filter_map(|a| a.parse::<SocketAddr>().ok())
            .find(|a| a.ip() == bind.ip())
        {
            d.bind = a;
            d.config.bind = Some(a);
        }
        Ok(d)
    }

    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    pub fn shares(&self) -> SharesClient<Channel> {
        SharesClient::new(self.channel.clone())
    }

    pub fn transfers(&self) -> TransfersClient<Channel> {
        TransfersClient::new(self.channel.clone())
    }

    /// Stops the daemon gracefully and waits until it is gone.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(TIMEOUT, t).await???;
        }
        Ok(())
    }

    /// Stops and starts again with the same config, data dir and port.
    pub async fn restart(mut self) -> Result<Self> {
        self.stop().await?;
        Self::start_config(self.config.clone()).await
    }

    /// Shares `path` and returns the final message.
    pub async fn share(&self, path: &Path) -> Result<pb::ShareCreated> {
        self.share_as(path, pb::TicketFormat::Ringdrop).await
    }

    /// Shares `path`, asking for a ticket of `format`.
    pub async fn share_as(
        &self,
        path: &Path,
        format: pb::TicketFormat,
    ) -> Result<pb::ShareCreated> {
        self.share_req(pb::ShareRequest {
            path: path.display().to_string(),
            ticket_format: format as i32,
            ..Default::default()
        })
        .await
    }

    /// Shares `path` restricted to `rings`.
    pub async fn share_to(&self, path: &Path, rings: &[&str]) -> Result<pb::ShareCreated> {
        self.share_req(pb::ShareRequest {
            path: path.display().to_string(),
            rings: rings.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        })
        .await
    }

    /// Shares `path` (open) and lists it in the catalog.
    pub async fn share_listed(&self, path: &Path) -> Result<pb::ShareCreated> {
        self.share_req(pb::ShareRequest {
            path: path.display().to_string(),
            listed: true,
            ..Default::default()
        })
        .await
    }

    /// Shares as `req` asks (its stream to the end).
    pub async fn share_req(&self, req: pb::ShareRequest) -> Result<pb::ShareCreated> {
        let mut s = self.shares().share(req).await?.into_inner();
        while let Some(m) = s.message().await? {
            if let Some(pb::share_progress::Event::Created(c)) = m.event {
                return Ok(c);
            }
        }
        bail!("share stream ended without a result")
    }

    /// Shares `path` to `rings` and returns a blob ticket for it.
    pub async fn share_req_blob(&self, path: &Path, rings: &[&str]) -> Result<String> {
        let c = self
            .share_req(pb::ShareRequest {
                path: path.display().to_string(),
                rings: rings.iter().map(|r| r.to_string()).collect(),
                ticket_format: pb::TicketFormat::Blob as i32,
                ..Default::default()
            })
            .await?;
        Ok(c.ticket)
    }

    /// Every share of this daemon.
    pub async fn list_shares(&self) -> Result<Vec<pb::Share>> {
        Ok(self
            .shares()
            .list_shares(pb::ListSharesRequest {})
            .await?
            .into_inner()
            .shares)
    }

    /// This daemon's endpoint id.
    pub async fn id(&self) -> Result<String> {
        Ok(self
            .node()
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner()
            .endpoint_id)
    }

    pub fn rings(&self) -> ringdrop_proto::v1::rings_client::RingsClient<Channel> {
        ringdrop_proto::v1::rings_client::RingsClient::new(self.channel.clone())
    }

    pub fn peers(&self) -> ringdrop_proto::v1::peers_client::PeersClient<Channel> {
        ringdrop_proto::v1::peers_client::PeersClient::new(self.channel.clone())
    }

    /// Starts a fetch and returns the transfer id.
    pub async fn fetch(&self, ticket: &str, out: &Path) -> Result<u64> {
        let t = self
            .transfers()
            .fetch(pb::FetchRequest {
                ticket: ticket.to_string(),
                out: out.display().to_string(),
                force: false,
                ..Default::default()
            })
            .await?
            .into_inner()
            .transfer
            .context("no transfer")?;
        Ok(t.id)
    }

    /// Waits until transfer `id` ends and returns its final row.
    pub async fn wait(&self, id: u64) -> Result<pb::Transfer> {
        self.wait_until(id, is_terminal).await
    }

    /// Waits until transfer `id` satisfies `pred` (or ends).
    pub async fn wait_until(
        &self,
        id: u64,
        pred: impl Fn(&pb::Transfer) -> bool,
    ) -> Result<pb::Transfer> {
        watch_until(&self.socket, id, pred).await
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            s.send(()).ok();
        }
    }
}

/// Completed, failed or cancelled.
pub fn is_terminal(t: &pb::Transfer) -> bool {
    use pb::TransferState::*;
    [Completed, Failed, Cancelled]
        .iter()
        .any(|s| *s as i32 == t.state)
}

/// Whether `t` completed.
pub fn completed(t: &pb::Transfer) -> bool {
    t.state == pb::TransferState::Completed as i32
}

/// Writes `len` pseudo-random bytes to `path`.
pub fn random_file(path: &Path, len: usize) -> Result<Vec<u8>> {
    use rand::RngCore;
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, &data)?;
    Ok(data)
}

/// A new temp dir that outlives the test (under the system temp dir).
///
/// Directories live under `$TMPDIR/ringdrop-tests/<pid>/` and are kept
/// while the test process runs (daemons it killed may still hold them);
/// each test process removes what processes that are gone left behind.
pub fn temp_dir(prefix: &str) -> Result<PathBuf> {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join("ringdrop-tests");
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let gone = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    std::fs::remove_dir_all(e.path()).ok();
                }
            }
        }
        base.join(std::process::id().to_string())
    });
    std::fs::create_dir_all(root)?;
    Ok(tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(root)?
        .keep())
}

/// Directory of the workspace's built binaries (next to the test binary).
/// `RINGDROP_BIN_DIR` points the suite at other binaries (an older
/// ringdropd, to show a regression test fails there).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RINGDROP_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of a workspace binary; fails with a hint when it was not built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!(
            "{} not found: build the binaries first (`cargo build --workspace --bins`)",
            p.display()
        );
    }
    Ok(p)
}

/// Lists every file below `dir` (relative paths, sorted).
pub fn list_tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                }
                out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Follows transfer `id` of the daemon behind `socket` until `pred` holds
/// or the transfer ends (the daemon must stay up meanwhile).
pub async fn watch_until(
    socket: &Path,
    id: u64,
    pred: impl Fn(&pb::Transfer) -> bool,
) -> Result<pb::Transfer> {
    tokio::time::timeout(TIMEOUT, async {
        let mut s = TransfersClient::new(channel(socket).await?)
            .watch_transfer(pb::WatchTransferRequest { id })
            .await?
            .into_inner();
        let mut last = None;
        while let Some(t) = s.message().await? {
            if pred(&t) || is_terminal(&t) {
                return Ok(t);
            }
            last = Some(t);
        }
        last.context("watch ended without any update")
    })
    .await
    .context("timed out watching the transfer")?
}

/// Waits (polling, reconnecting) until transfer `id` ends; for daemons
/// that are restarted meanwhile.
pub async fn wait_done(socket: &Path, id: u64) -> Result<pb::Transfer> {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Ok(c) = channel(socket).await {
                if let Ok(t) = TransfersClient::new(c)
                    .get_transfer(pb::GetTransferRequest { id })
                    .await
                {
                    let t = t.into_inner();
                    if is_terminal(&t) {
                        return Ok(t);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .context("timed out waiting for the transfer to end")?
}

/// A plain iroh-blobs node on loopback (no gate, no ringdrop): a stranger
/// to every daemon, or a provider that serves anything.
pub async fn plain_node() -> Result<(
    iroh_blobs::store::mem::MemStore,
    iroh::protocol::Router,
    iroh::EndpointAddr,
)> {
    let ep = loopback_endpoint().await?;
    let addr = loopback_addr(&ep);
    let store = iroh_blobs::store::mem::MemStore::new();
    let router = iroh::protocol::Router::builder(ep)
        .accept(
            iroh_blobs::ALPN,
            iroh_blobs::BlobsProtocol::new(&store, None),
        )
        .spawn();
    Ok((store, router, addr))
}

/// A bare iroh endpoint on loopback (relays and address lookup off): a
/// stranger to every daemon.
pub async fn loopback_endpoint() -> Result<iroh::Endpoint> {
    Ok(iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))?
        .bind()
        .await?)
}

/// How to reach `ep`: its id and the sockets it bound.
pub fn loopback_addr(ep: &iroh::Endpoint) -> iroh::EndpointAddr {
    ep.bound_sockets()
        .into_iter()
        .fold(iroh::EndpointAddr::new(ep.id()), |a, s| a.with_ip_addr(s))
}

/// Sends one raw HTTP/1 request (`request`: head and body as they go on
/// the wire, asking the server to close) and reads the whole answer: its
/// status and the answer as text.
pub fn http(addr: SocketAddr, request: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(request.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {resp:?}"))?;
    Ok((status, resp))
}
