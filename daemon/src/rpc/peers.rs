//! `ringdrop.v1.Peers`: the address book and remote catalogs.

use ringdrop_proto::v1::{self as pb, peers_server::Peers};
use tonic::{Request, Response, Status};

use super::{convert, status::st};
use crate::daemon::Daemon;

pub struct PeersService {
    daemon: Daemon,
}

impl PeersService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

#[tonic::async_trait]
impl Peers for PeersService {
    async fn add_peer(
        &self,
        req: Request<pb::AddPeerRequest>,
    ) -> Result<Response<pb::Peer>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        let rec = self
            .daemon
            .add_peer(&caller, &req.name, &req.endpoint)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::peer(rec)))
    }

    async fn list_peers(
        &self,
        req: Request<pb::ListPeersRequest>,
    ) -> Result<Response<pb::ListPeersResponse>, Status> {
        let caller = super::caller(&req)?;
        let peers = self
            .daemon
            .peers(&caller)
            .await
            .map_err(st)?
            .into_iter()
            .map(convert::peer)
            .collect();
        Ok(Response::new(pb::ListPeersResponse { peers }))
    }

    async fn remove_peer(
        &self,
        req: Request<pb::RemovePeerRequest>,
    ) -> Result<Response<pb::RemovePeerResponse>, Status> {
        let caller = super::caller(&req)?;
        self.daemon
            .remove_peer(&caller, &req.into_inner().name)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::RemovePeerResponse {}))
    }

    async fn remote_list(
        &self,
        req: Request<pb::RemoteListRequest>,
    ) -> Result<Response<pb::RemoteListResponse>, Status> {
        let (p, entries) = self
            .daemon
            .remote_list(&req.into_inner().peer)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::RemoteListResponse {
            endpoint_id: p.id.to_string(),
            shares: entries
                .into_iter()
                .map(|(e, ticket)| pb::RemoteShare {
                    hash: e.hash.to_string(),
                    name: e.name,
                    size: e.size,
                    files: e.files,
                    ticket,
                })
                .collect(),
        }))
    }
}
