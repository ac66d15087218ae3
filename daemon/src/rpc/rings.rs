//! `ringdrop.v1.Rings`: rings and their members.

use ringdrop_proto::v1::{self as pb, rings_server::Rings};
use tonic::{Request, Response, Status};

use super::{convert, status::st};
use crate::daemon::Daemon;

pub struct RingsService {
    daemon: Daemon,
}

impl RingsService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

/// Default validity of an invite: one day.
const INVITE_VALID: i64 = 24 * 3600;

#[tonic::async_trait]
impl Rings for RingsService {
    async fn create_invite(
        &self,
        req: Request<pb::CreateInviteRequest>,
    ) -> Result<Response<pb::Invite>, Status> {
        let caller = super::caller(&req)?;
        let r = req.into_inner();
        let valid_for = if r.valid_for == 0 {
            INVITE_VALID
        } else {
            r.valid_for
        };
        let (rec, ticket) = self
            .daemon
            .create_invite(
                &caller,
                &r.ring,
                r.uses.max(1),
                valid_for,
                Some(r.member_for).filter(|s| *s != 0),
            )
            .await
            .map_err(st)?;
        Ok(Response::new(convert::invite(&rec, ticket)))
    }

    async fn list_invites(
        &self,
        req: Request<pb::ListInvitesRequest>,
    ) -> Result<Response<pb::ListInvitesResponse>, Status> {
        let caller = super::caller(&req)?;
        let ring = req.into_inner().ring;
        let invites = self
            .daemon
            .invites(&caller, Some(ring.as_str()).filter(|r| !r.is_empty()))
            .await
            .map_err(st)?
            .iter()
            .map(|i| convert::invite(i, String::new()))
            .collect();
        Ok(Response::new(pb::ListInvitesResponse { invites }))
    }

    async fn revoke_invite(
        &self,
        req: Request<pb::RevokeInviteRequest>,
    ) -> Result<Response<pb::Invite>, Status> {
        let caller = super::caller(&req)?;
        let rec = self
            .daemon
            .revoke_invite(&caller, &req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::invite(&rec, String::new())))
    }

    async fn join_ring(
        &self,
        req: Request<pb::JoinRingRequest>,
    ) -> Result<Response<pb::JoinRingResponse>, Status> {
        let caller = super::caller(&req)?;
        let r = req.into_inner();
        let joined = self
            .daemon
            .join_ring(
                &caller,
                &r.invite,
                Some(r.name.as_str()).filter(|n| !n.is_empty()),
            )
            .await
            .map_err(st)?;
        Ok(Response::new(pb::JoinRingResponse {
            ring: joined.ring,
            endpoint_id: joined.inviter.to_string(),
            name: joined.name,
            member_until: joined.member_until.unwrap_or(0),
        }))
    }

    async fn create_ring(
        &self,
        req: Request<pb::CreateRingRequest>,
    ) -> Result<Response<pb::Ring>, Status> {
        let caller = super::caller(&req)?;
        let name = req.into_inner().name;
        self.daemon.create_ring(&caller, &name).await.map_err(st)?;
        Ok(Response::new(pb::Ring {
            name,
            created_at: ringdrop_proto::clock::now(),
            members: 0,
        }))
    }

    async fn list_rings(
        &self,
        req: Request<pb::ListRingsRequest>,
    ) -> Result<Response<pb::ListRingsResponse>, Status> {
        let caller = super::caller(&req)?;
        let rings = self
            .daemon
            .rings(&caller)
            .await
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
        let caller = super::caller(&req)?;
        self.daemon
            .remove_ring(&caller, &req.into_inner().name)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::RemoveRingResponse {}))
    }

    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        let expires = (req.expires_at != 0).then_some(req.expires_at);
        let m = self
            .daemon
            .add_member(&caller, &req.ring, &req.peer, expires)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::member(&m.names, &m.rows)))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        let m = self
            .daemon
            .remove_member(&caller, &req.ring, &req.peer)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::member(&m.names, &m.rows)))
    }

    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let caller = super::caller(&req)?;
        let members = self
            .daemon
            .members(&caller, &req.into_inner().ring)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::ListMembersResponse {
            members: convert::members(&members),
        }))
    }
}
