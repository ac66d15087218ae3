//! The real `ringdropd` binary as a test sees it.

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
use tonic::transport::Channel;

use crate::{bin, channel, TIMEOUT};

/// A real `ringdropd` process (relays and mDNS off), killed on drop.
pub struct BinDaemon {
    pub child: std::process::Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub args: Vec<String>,
    /// Network namespace it runs in (`ip netns exec`), if any.
    pub netns: Option<String>,
    /// Uid and gid it runs as (`setpriv`), if not the test's own.
    pub user: Option<(u32, u32)>,
}

impl BinDaemon {
    /// Starts `ringdropd` on `dir` with `extra` flags (default bind: 127.0.0.1:0).
    pub fn spawn(dir: &Path, extra: &[&str]) -> Result<Self> {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !args.iter().any(|a| a == "--bind") {
            args.extend(["--bind".to_string(), "127.0.0.1:0".to_string()]);
        }
        Self::spawn_args(dir, args)
    }

    /// Starts `ringdropd` without --bind (all interfaces, kept port).
    pub fn spawn_unbound(dir: &Path) -> Result<Self> {
        Self::spawn_args(dir, Vec::new())
    }

    /// Starts `ringdropd` inside network namespace `netns` with `extra`
    /// flags (which should name --bind and may name --relay).
    pub fn spawn_in(netns: &str, dir: &Path, extra: &[&str]) -> Result<Self> {
        let args = extra.iter().map(|s| s.to_string()).collect();
        Self::start(Some(netns.to_string()), dir, args)
    }

    fn spawn_args(dir: &Path, args: Vec<String>) -> Result<Self> {
        Self::start(None, dir, args)
    }

    /// Starts `ringdropd` as `uid` (and gid `uid`, no other groups) with
    /// `setpriv`, as a system service runs as a user of its own; `dir` is
    /// handed to that uid. Needs root.
    pub fn spawn_as(uid: u32, dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::spawn_as_group(uid, uid, dir, extra)
    }

    /// [`Self::spawn_as`] with primary group `gid` (the unit's
    /// `Group=ringdrop`, which the system socket is given to).
    pub fn spawn_as_group(uid: u32, gid: u32, dir: &Path, extra: &[&str]) -> Result<Self> {
        std::os::unix::fs::chown(dir, Some(uid), Some(uid))?;
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !args.iter().any(|a| a == "--bind") {
            args.extend(["--bind".to_string(), "127.0.0.1:0".to_string()]);
        }
        let mut d = Self::launch(None, Some((uid, gid)), dir, args)?;
        d.wait_ready()?;
        Ok(d)
    }

    fn start(netns: Option<String>, dir: &Path, args: Vec<String>) -> Result<Self> {
        let mut d = Self::launch(netns, None, dir, args)?;
        d.wait_ready()?;
        Ok(d)
    }

    fn launch(
        netns: Option<String>,
        user: Option<(u32, u32)>,
        dir: &Path,
        args: Vec<String>,
    ) -> Result<Self> {
        let socket = dir.join("d.sock");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("ringdropd.log"))?;
        let mut cmd = match (&netns, user) {
            (Some(ns), _) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("ringdropd")?);
                c
            }
            (None, Some((uid, gid))) => {
                let mut c = std::process::Command::new("setpriv");
                let (id, gid) = (uid.to_string(), gid.to_string());
                c.args(["--reuid", &id, "--regid", &gid, "--clear-groups", "--"])
                    .arg(bin("ringdropd")?);
                c
            }
            (None, None) => std::process::Command::new(bin("ringdropd")?),
        };
        if !args.iter().any(|a| a == "--relay") {
            cmd.args(["--relay", "disabled"]);
        }
        let child = cmd
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--socket")
            .arg(&socket)
            .arg("--no-mdns")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self {
            child,
            dir: dir.to_path_buf(),
            socket,
            args,
            netns,
            user,
        })
    }

    /// Waits until the daemon serves RPCs. A successful `connect` is not
    /// enough: the socket is bound before the node (data dir, secret key,
    /// store) is up, and connections queue in its backlog meanwhile. The
    /// server answers an HTTP/2 client preface with its SETTINGS frame only
    /// once it serves.
    fn wait_ready(&mut self) -> Result<()> {
        use std::io::{Read, Write};
        // Client preface, then an empty SETTINGS frame (length 0, type 4).
        const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
        let start = std::time::Instant::now();
        while start.elapsed() < TIMEOUT {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "ringdropd exited ({status}) before serving; log: {}",
                    self.dir.join("ringdropd.log").display()
                );
            }
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) {
                let left = TIMEOUT.saturating_sub(start.elapsed());
                // A zero timeout is refused by set_read_timeout.
                s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                let mut buf = [0u8; 9];
                if s.write_all(PREFACE).is_ok() && matches!(s.read(&mut buf), Ok(n) if n > 0) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "ringdropd did not come up; log: {}",
            self.dir.join("ringdropd.log").display()
        )
    }

    /// `kill -9`, and wait for the process to be gone.
    pub fn kill9(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, and wait for a graceful exit.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        Ok(self.child.wait()?)
    }

    /// Starts the same daemon again (same data dir, socket and flags).
    pub fn restart(&mut self) -> Result<()> {
        let mut d = Self::launch(self.netns.clone(), self.user, &self.dir, self.args.clone())?;
        d.wait_ready()?;
        *self = d;
        Ok(())
    }

    /// The UDP address the endpoint bound (loopback), for restarting on the same port.
    pub async fn bound(&self) -> Result<SocketAddr> {
        let s = self
            .node()
            .await?
            .get_status(pb::GetStatusRequest {})
            .await?
            .into_inner();
        s.direct_addresses
            .iter()
            .filter_map(|a| a.parse::<SocketAddr>().ok())
            .find(|a| a.ip().is_loopback())
            .context("no loopback address")
    }

    pub async fn node(&self) -> Result<NodeClient<Channel>> {
        Ok(NodeClient::new(channel(&self.socket).await?))
    }

    pub async fn shares(&self) -> Result<SharesClient<Channel>> {
        Ok(SharesClient::new(channel(&self.socket).await?))
    }

    pub async fn transfers(&self) -> Result<TransfersClient<Channel>> {
        Ok(TransfersClient::new(channel(&self.socket).await?))
    }

    /// Shares `path`: (ticket, share hash).
    pub async fn share(&self, path: &Path) -> Result<(String, String)> {
        let mut s = self
            .shares()
            .await?
            .share(pb::ShareRequest {
                path: path.display().to_string(),
                ..Default::default()
            })
            .await?
            .into_inner();
        while let Some(m) = s.message().await? {
            if let Some(pb::share_progress::Event::Created(c)) = m.event {
                let hash = c.share.context("share")?.hash;
                return Ok((c.ticket, hash));
            }
        }
        bail!("no share result")
    }

    /// Starts fetching `ticket` into `out`: the transfer id.
    pub async fn fetch(&self, ticket: &str, out: &Path) -> Result<u64> {
        Ok(self
            .transfers()
            .await?
            .fetch(pb::FetchRequest {
                ticket: ticket.into(),
                out: out.display().to_string(),
                force: false,
                ..Default::default()
            })
            .await?
            .into_inner()
            .transfer
            .context("transfer")?
            .id)
    }

    /// Bytes served for share `hash`, once the counter reaches `at_least`
    /// (or 30 s pass).
    pub async fn served_for(&self, hash: &str, at_least: u64) -> Result<u64> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let served = self.served(hash).await?;
            if served >= at_least || std::time::Instant::now() > deadline {
                return Ok(served);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Bytes served for share `hash` so far.
    pub async fn served(&self, hash: &str) -> Result<u64> {
        let list = self
            .shares()
            .await?
            .list_shares(pb::ListSharesRequest {})
            .await?
            .into_inner();
        Ok(list
            .shares
            .iter()
            .find(|s| s.hash == hash)
            .map(|s| s.bytes_served)
            .unwrap_or(0))
    }

    /// Waits until no upload is in progress: requests cut off by a killed
    /// peer end (and are counted) only when QUIC gives up on them.
    pub async fn uploads_drained(&self) -> Result<()> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                let up = self
                    .node()
                    .await?
                    .list_uploads(pb::ListUploadsRequest {})
                    .await?
                    .into_inner();
                if up.uploads.is_empty() {
                    return anyhow::Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .context("uploads did not end")?
    }

    /// `ringdropctl --json ARGS`, which must succeed; its (last) JSON line.
    pub fn ctl_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all)?;
        anyhow::ensure!(
            out.status.success(),
            "ringdropctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Streaming commands print one object a line: the last is the result.
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("null");
        Ok(serde_json::from_str(last)?)
    }

    /// Runs `ringdropctl --socket <ours> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(std::process::Command::new(bin("ringdropctl")?)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()?)
    }
}

impl Drop for BinDaemon {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A provider sharing one random file `big.bin` of `size` bytes (uploads
/// limited to `rate`) and a fresh fetcher with an empty destination.
pub struct OneFile {
    pub a: BinDaemon,
    pub b: BinDaemon,
    pub ticket: String,
    pub data: Vec<u8>,
    pub out: PathBuf,
}

impl OneFile {
    pub async fn new(size: u64, rate: &str) -> Result<Self> {
        let src = crate::temp_dir("rdrop-src-")?.join("big.bin");
        let data = crate::random_file(&src, size as usize)?;
        let a = BinDaemon::spawn(&crate::temp_dir("rdrop-a-")?, &["--max-upload-rate", rate])?;
        let b = BinDaemon::spawn(&crate::temp_dir("rdrop-b-")?, &[])?;
        let (ticket, _) = a.share(&src).await?;
        let out = crate::temp_dir("rdrop-out-")?;
        Ok(Self {
            a,
            b,
            ticket,
            data,
            out,
        })
    }
}
