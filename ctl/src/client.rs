//! Finds the daemon's socket and connects to it.

use std::path::PathBuf;

use ringdrop_proto::{
    paths,
    v1::{
        node_client::NodeClient, peers_client::PeersClient, rings_client::RingsClient,
        shares_client::SharesClient, transfers_client::TransfersClient,
    },
};
use tonic::transport::{Channel, Endpoint};

use crate::error::{CliError, UNREACHABLE};

/// A connection to ringdropd.
pub struct Client {
    pub channel: Channel,
    /// The socket it is connected to (a client that changes its user
    /// connects again, so the daemon sees who it is now).
    pub socket: PathBuf,
}

impl Client {
    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    pub fn shares(&self) -> SharesClient<Channel> {
        SharesClient::new(self.channel.clone())
    }

    pub fn rings(&self) -> RingsClient<Channel> {
        RingsClient::new(self.channel.clone())
    }

    pub fn peers(&self) -> PeersClient<Channel> {
        PeersClient::new(self.channel.clone())
    }

    pub fn transfers(&self) -> TransfersClient<Channel> {
        TransfersClient::new(self.channel.clone())
    }

    pub fn limits(&self) -> ringdrop_proto::v1::limits_client::LimitsClient<Channel> {
        ringdrop_proto::v1::limits_client::LimitsClient::new(self.channel.clone())
    }

    pub fn contacts(&self) -> ringdrop_proto::v1::contacts_client::ContactsClient<Channel> {
        ringdrop_proto::v1::contacts_client::ContactsClient::new(self.channel.clone())
    }
}

async fn dial(path: &std::path::Path) -> Result<Channel, String> {
    let endpoint =
        Endpoint::from_shared(format!("unix:{}", path.display())).map_err(|e| e.to_string())?;
    endpoint.connect().await.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = s.to_string();
            src = s.source();
        }
        msg
    })
}

/// Connects to `--socket`, or the first socket that answers among the
/// usual places.
pub async fn connect(socket: Option<PathBuf>) -> Result<Client, CliError> {
    let explicit =
        socket.is_some() || std::env::var_os(paths::SOCKET_ENV).is_some_and(|s| !s.is_empty());
    let candidates = match socket {
        Some(s) => vec![s],
        None => paths::candidate_sockets(),
    };
    let mut last = String::new();
    for path in &candidates {
        // A socket found by looking (not named by the user) must sit where
        // no other user could have put it.
        if !explicit && path.exists() {
            if let Err(why) = path.parent().map_or(Ok(()), paths::trusted_socket_dir) {
                return Err(CliError::new(
                    UNREACHABLE,
                    format!(
                        "refusing to talk to {}: {why}; remove it, set XDG_RUNTIME_DIR, or name the daemon's socket with --socket",
                        path.display()
                    ),
                ));
            }
        }
        match dial(path).await {
            Ok(channel) => {
                return Ok(Client {
                    channel,
                    socket: path.clone(),
                })
            }
            Err(e) => {
                if let Some(refused) = refused(path) {
                    return Err(refused);
                }
                last = e
            }
        }
    }
    let shown = candidates
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Err(CliError::new(
        UNREACHABLE,
        format!(
            "cannot reach ringdropd at {shown}: is it running? start it with `ringdropd` (or `systemctl --user start ringdropd`), or point --socket / RINGDROP_SOCKET at its socket ({last})"
        ),
    ))
}

/// A socket whose file mode keeps this user out.
fn refused(path: &std::path::Path) -> Option<CliError> {
    match std::os::unix::net::UnixStream::connect(path) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Some(CliError::new(
            UNREACHABLE,
            format!(
                "permission denied on {}: ringdropd serves only the user it runs as, root and, in system mode, members of the `ringdrop` group",
                path.display()
            ),
        )),
        _ => None,
    }
}
