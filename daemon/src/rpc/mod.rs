//! The gRPC control API on a Unix socket: our three services, health and
//! reflection. Handlers convert proto <-> domain and call the facade.

mod convert;
mod node;
mod peers;
mod rings;
mod shares;
pub mod socket;
mod status;
mod transfers;

use std::future::Future;

use futures::StreamExt;
use ringdrop_proto::v1::{
    node_server::NodeServer, peers_server::PeersServer, rings_server::RingsServer,
    shares_server::SharesServer, transfers_server::TransfersServer,
};
use tokio::net::UnixListener;
use tracing::warn;

use crate::daemon::Daemon;
pub use socket::{bind_socket, PeerPolicy, SocketError};

/// Serves the control API on `listener` until `stop` resolves.
pub async fn serve(
    daemon: Daemon,
    listener: UnixListener,
    policy: PeerPolicy,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<NodeServer<node::NodeService>>().await;
    health
        .set_serving::<SharesServer<shares::SharesService>>()
        .await;
    health
        .set_serving::<TransfersServer<transfers::TransfersService>>()
        .await;
    health
        .set_serving::<RingsServer<rings::RingsService>>()
        .await;
    health
        .set_serving::<PeersServer<peers::PeersService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ringdrop_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection = match reflection {
        Ok(r) => Some(r),
        Err(e) => {
            warn!("server reflection unavailable: {e}");
            None
        }
    };

    let incoming =
        tokio_stream::wrappers::UnixListenerStream::new(listener).filter_map(move |conn| {
            let policy = policy.clone();
            async move {
                match conn {
                    Ok(stream) => match policy.check(&stream) {
                        Ok(()) => Some(Ok::<_, std::io::Error>(stream)),
                        Err(why) => {
                            warn!("control socket: refused a client: {why}");
                            None
                        }
                    },
                    Err(e) => {
                        warn!("control socket accept failed: {e}");
                        None
                    }
                }
            }
        });

    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(NodeServer::new(node::NodeService::new(daemon.clone())))
        .add_service(SharesServer::new(shares::SharesService::new(
            daemon.clone(),
        )))
        .add_service(RingsServer::new(rings::RingsService::new(daemon.clone())))
        .add_service(PeersServer::new(peers::PeersService::new(daemon.clone())))
        .add_service(TransfersServer::new(transfers::TransfersService::new(
            daemon,
        )))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
}
