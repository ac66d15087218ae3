//! ringdropd: peer-to-peer file transfer with ring-based access control,
//! on iroh and iroh-blobs, controlled over gRPC on a Unix socket.

pub mod access;
pub mod authority;
pub mod catalog;
pub mod config;
pub mod content;
pub mod daemon;
pub mod events;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod node;
pub mod offers;
pub mod provider;
pub mod registry;
pub mod rings;
pub mod rpc;
pub mod shares;
pub mod swarm;
pub mod tasks;
pub mod ticket;
pub mod transfers;

use std::future::Future;

pub use config::{Config, RelayChoice};
pub use daemon::Daemon;
use tokio::net::UnixListener;
use tracing::info;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Socket(#[from] rpc::SocketError),
    #[error(transparent)]
    Start(#[from] daemon::StartError),
    #[error("control API: {0}")]
    Rpc(#[from] tonic::transport::Error),
    #[error("metrics: {0}")]
    Metrics(String),
}

/// Where the control API listens.
#[derive(Debug)]
pub enum Listener {
    /// Create the socket at `config.socket` (and remove it on exit).
    Create,
    /// A socket handed over by the service manager (socket activation);
    /// the service manager owns its path.
    Inherited(std::os::unix::net::UnixListener),
}

/// Tells systemd (when it is watching, `NOTIFY_SOCKET`) how we are doing.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam takes a NUL-terminated name; we only read gr_gid
    // from the static result before any other call can overwrite it.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        None
    } else {
        // SAFETY: gr is non-null and points to a valid group entry.
        Some(unsafe { (*gr).gr_gid })
    }
}

/// Runs the daemon until `shutdown` resolves, then stops in order: stop
/// accepting RPCs, cancel workers and persist their states, sync the
/// store, shut the endpoint and the store down, remove the socket.
pub async fn run(
    config: Config,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    use sd_notify::NotifyState;
    notify(&[NotifyState::Status("starting")]);
    // System mode: members of the `ringdrop` group are trusted operators.
    let group = if config.system {
        group_id(authority::SOCKET_GROUP)
    } else {
        None
    };
    let policy = match group {
        Some(gid) => crate::authority::PeerPolicy::with_group(gid),
        None => crate::authority::PeerPolicy::owner_only(),
    };
    // The socket first: a second daemon is refused before it touches the
    // data dir another one holds open.
    let (listener, owned_path) = listen(&config, listener, group).await?;
    let daemon = match start(config).await {
        Ok(d) => d,
        Err(e) => {
            if let Some(p) = &owned_path {
                std::fs::remove_file(p).ok();
            }
            notify(&[NotifyState::Status(&format!("failed: {e}"))]);
            return Err(e);
        }
    };
    let stop = daemon.shutdown_token();
    if group.is_some() {
        daemon.serve_handoffs(group, &policy);
    }
    let signal = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
            info!("shutting down");
            notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
            stop.cancel();
        }
    };
    // The listener is bound and the node is up: connections queue in the
    // socket's backlog until the server polls them, so we are ready now.
    let status = format!("serving as {}", daemon.endpoint().id());
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    let served = rpc::serve(daemon.clone(), listener, policy, signal).await;
    daemon.shutdown().await;
    if let Some(p) = &owned_path {
        std::fs::remove_file(p).ok();
    }
    served?;
    Ok(())
}

/// The daemon, serving peers and, when asked, metrics (a metrics address
/// that cannot be served stops it again).
async fn start(config: Config) -> Result<Daemon, RunError> {
    let daemon = Daemon::start(config).await?;
    if let Err(e) = daemon.serve_metrics().await {
        daemon.shutdown().await;
        return Err(RunError::Metrics(e));
    }
    Ok(daemon)
}

/// The control socket: bound here (and its path, to remove at the end),
/// or inherited from systemd.
async fn listen(
    config: &Config,
    listener: Listener,
    group: Option<u32>,
) -> Result<(UnixListener, Option<std::path::PathBuf>), RunError> {
    Ok(match listener {
        Listener::Create => {
            let l = rpc::bind_socket(&config.socket, group).await?;
            (l, Some(config.socket.clone()))
        }
        Listener::Inherited(l) => (
            UnixListener::from_std(l).map_err(|e| rpc::SocketError::Io {
                path: config.socket.clone(),
                msg: format!("inherited socket: {e}"),
            })?,
            None,
        ),
    })
}

/// Settings shared by the property tests: modest case counts for debug
/// builds, and failures become named regression tests, not stray files.
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    }
}
