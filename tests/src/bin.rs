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

    fn spawn_args(dir: &Path, args: Vec<String>) -> Result<Self> {
        let socket = dir.join("d.sock");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("ringdropd.log"))?;
        let child = std::process::Command::new(bin("ringdropd")?)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--socket")
            .arg(&socket)
            .args(["--relay", "disabled", "--no-mdns"])
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?;
        let d = Self {
            child,
            dir: dir.to_path_buf(),
            socket,
            args,
        };
        d.wait_ready()?;
        Ok(d)
    }

    fn wait_ready(&self) -> Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed() < TIMEOUT {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
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
        *self = Self::spawn_args(&self.dir, self.args.clone())?;
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
