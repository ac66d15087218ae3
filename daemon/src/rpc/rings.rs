//! `ringdrop.v1.Rings`: rings and their members.

use ringdrop_proto::v1::{self as pb, rings_server::Rings};
use tonic::{Request, Response, Status};

use super::status::st;
use crate::{daemon::Daemon, registry::Member, transfers::now};

pub struct RingsService {
    daemon: Daemon,
}

impl RingsService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }

    fn member(&self, m: &Member) -> pb::Member {
        let id = data_encoding::HEXLOWER.encode(&m.id);
        let name = self
            .daemon
            .peers()
            .ok()
            .and_then(|book| book.into_iter().find(|p| p.id == m.id).map(|p| p.name))
            .unwrap_or_default();
        pb::Member {
            endpoint_id: id,
            name,
            expires_at: m.expires_at.unwrap_or(0),
            expired: m.expires_at.is_some_and(|t| t <= now()),
        }
    }
}

#[tonic::async_trait]
impl Rings for RingsService {
    async fn create_ring(
        &self,
        req: Request<pb::CreateRingRequest>,
    ) -> Result<Response<pb::Ring>, Status> {
        let name = req.into_inner().name;
        self.daemon.create_ring(&name).map_err(st)?;
        Ok(Response::new(pb::Ring {
            name,
            created_at: now(),
            members: 0,
        }))
    }

    async fn list_rings(
        &self,
        _req: Request<pb::ListRingsRequest>,
    ) -> Result<Response<pb::ListRingsResponse>, Status> {
        let rings = self
            .daemon
            .rings()
            .map_err(st)?
            .into_iter()
            .map(|r| pb::Ring {
                name: r.name,
                created_at: r.created_at,
                members: r.members,
            })
            .collect();
        Ok(Response::new(pb::ListRingsResponse { rings }))
    }

    async fn remove_ring(
        &self,
        req: Request<pb::RemoveRingRequest>,
    ) -> Result<Response<pb::RemoveRingResponse>, Status> {
        self.daemon
            .remove_ring(&req.into_inner().name)
            .map_err(st)?;
        Ok(Response::new(pb::RemoveRingResponse {}))
    }

    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let req = req.into_inner();
        let expires = (req.expires_at != 0).then_some(req.expires_at);
        let p = self
            .daemon
            .add_member(&req.ring, &req.peer, expires)
            .map_err(st)?;
        Ok(Response::new(self.member(&Member {
            id: *p.id.as_bytes(),
            expires_at: expires,
        })))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let req = req.into_inner();
        let p = self
            .daemon
            .remove_member(&req.ring, &req.peer)
            .map_err(st)?;
        Ok(Response::new(self.member(&Member {
            id: *p.id.as_bytes(),
            expires_at: None,
        })))
    }

    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let members = self.daemon.members(&req.into_inner().ring).map_err(st)?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members.iter().map(|m| self.member(m)).collect(),
        }))
    }
}
