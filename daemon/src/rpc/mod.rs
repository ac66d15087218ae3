//! The gRPC control API on a Unix socket: our seven services (node, shares,
//! transfers, rings, peers, contacts, limits), health and reflection. Handlers
//! convert proto <-> domain and call the facade.

mod contacts;
mod convert;
mod limits;
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
    contacts_server::ContactsServer, limits_server::LimitsServer, node_server::NodeServer,
    peers_server::PeersServer, rings_server::RingsServer, shares_server::SharesServer,
    transfers_server::TransfersServer,
};
use tokio::net::UnixListener;
use tracing::warn;

use crate::{
    authority::{self, Caller, MethodPath, PeerIdentity, PeerPolicy},
    daemon::Daemon,
};
pub use socket::{bind_socket, SocketError};

/// Who sent `req` (the guard has already admitted it to the method).
pub(crate) fn caller<T>(req: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
    req.extensions()
        .get::<PeerIdentity>()
        .map(|p| Caller::from_peer(p, authority::my_uid()))
        .ok_or_else(|| tonic::Status::permission_denied("no peer credentials"))
}

/// Puts the method's path in the request's extensions for the guard.
fn tag_method(mut req: http::Request<tonic::body::Body>) -> http::Request<tonic::body::Body> {
    let path = MethodPath(req.uri().path().to_string());
    req.extensions_mut().insert(path);
    req
}

/// The health service, every one of ours serving.
async fn health(
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
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
    health
        .set_serving::<ContactsServer<contacts::ContactsService>>()
        .await;
    health
        .set_serving::<LimitsServer<limits::LimitsService>>()
        .await;
    health_service
}

/// Both reflection versions: grpcurl and grpc-go speak v1; Python's
/// grpcio-reflection, older grpcurl, evans and Postman only v1alpha.
#[allow(clippy::type_complexity)]
fn reflection() -> (
    Option<
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
    >,
    Option<
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    >,
) {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ringdrop_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder()
        .build_v1()
        .inspect_err(|e| warn!("server reflection v1 unavailable: {e}"))
        .ok();
    let v1alpha = builder()
        .build_v1alpha()
        .inspect_err(|e| warn!("server reflection v1alpha unavailable: {e}"))
        .ok();
    (v1, v1alpha)
}

/// Every request is checked against the client's credentials and the
/// method's row in the authority table, so a client that may not call
/// it learns why (PERMISSION_DENIED) and gets nothing else, whatever the
/// socket's file mode. A method without a row is refused.
#[allow(clippy::result_large_err)]
fn guard(
    policy: &PeerPolicy,
    req: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    let verdict = match req.extensions().get::<PeerIdentity>() {
        Some(peer) => policy.check(peer).map_err(|why| {
            format!("{why}: ringdropd serves only the user it runs as, root and, in system mode, members of the `ringdrop` group")
        }).and_then(|()| {
            let path = req.extensions().get::<MethodPath>().map(|m| m.0.as_str()).unwrap_or("");
            authority::admit(&Caller::from_peer(peer, policy.daemon_uid()), path).map(|_| ())
        }),
        None => Err("no peer credentials".to_string()),
    };
    match verdict {
        Ok(()) => Ok(req),
        Err(why) => {
            warn!("control socket: refused a request: {why}");
            Err(tonic::Status::permission_denied(why))
        }
    }
}

/// Serves the control API on `listener` until `stop` resolves.
pub async fn serve(
    daemon: Daemon,
    listener: UnixListener,
    policy: PeerPolicy,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let health_service = health().await;
    let (reflection_v1, reflection_v1alpha) = reflection();
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener).filter_map(|conn| {
        std::future::ready(match conn {
            Ok(stream) => match socket::PeerStream::new(stream) {
                Ok(stream) => Some(Ok::<_, std::io::Error>(stream)),
                Err(e) => {
                    warn!("control socket: cannot read a client's credentials: {e}");
                    None
                }
            },
            Err(e) => {
                warn!("control socket accept failed: {e}");
                None
            }
        })
    });
    let guard = move |req: tonic::Request<()>| guard(&policy, req);
    tonic::transport::Server::builder()
        .layer(
            tower::ServiceBuilder::new()
                .map_request(tag_method)
                .layer(tonic::service::InterceptorLayer::new(guard)),
        )
        .add_service(health_service)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(NodeServer::new(node::NodeService::new(daemon.clone())))
        .add_service(SharesServer::new(shares::SharesService::new(
            daemon.clone(),
        )))
        .add_service(RingsServer::new(rings::RingsService::new(daemon.clone())))
        .add_service(PeersServer::new(peers::PeersService::new(daemon.clone())))
        .add_service(ContactsServer::new(contacts::ContactsService::new(
            daemon.clone(),
        )))
        .add_service(LimitsServer::new(limits::LimitsService::new(
            daemon.clone(),
        )))
        .add_service(TransfersServer::new(transfers::TransfersService::new(
            daemon,
        )))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
}
