//! ringdropd: peer-to-peer file transfer with ring-based access control,
//! on iroh and iroh-blobs, controlled over gRPC on a Unix socket.

pub mod catalog;
pub mod config;
pub mod daemon;
pub mod node;
pub mod provider;
pub mod registry;
pub mod rpc;
pub mod shares;
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
}

/// Where the control API listens.
#[derive(Debug)]
pub enum Listener {
    /// Create the socket at `config.socket` (and remove it on exit).
    Create,
    /// A socket handed over by the service manager (socket activation).
    Inherited(UnixListener),
}

/// Runs the daemon until `shutdown` resolves, then stops in order: stop
/// accepting RPCs, cancel workers and persist their states, sync the
/// store, shut the endpoint and the store down, remove the socket.
pub async fn run(
    config: Config,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    // The socket first: a second daemon is refused before it touches the
    // data dir another one holds open.
    let (listener, owned_path) = match listener {
        Listener::Create => (
            rpc::bind_socket(&config.socket, 0o600).await?,
            Some(config.socket.clone()),
        ),
        Listener::Inherited(l) => (l, None),
    };
    let daemon = match Daemon::start(config).await {
        Ok(d) => d,
        Err(e) => {
            if let Some(p) = &owned_path {
                std::fs::remove_file(p).ok();
            }
            return Err(e.into());
        }
    };
    let stop = daemon.shutdown_token();
    let signal = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
            info!("shutting down");
            stop.cancel();
        }
    };
    let served = rpc::serve(
        daemon.clone(),
        listener,
        rpc::PeerPolicy::owner_only(),
        signal,
    )
    .await;
    daemon.shutdown().await;
    if let Some(p) = &owned_path {
        std::fs::remove_file(p).ok();
    }
    served?;
    Ok(())
}
