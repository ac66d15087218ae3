//! `ringdrop.v1.Contacts`: sending to a peer, the inbox, trust.

use std::path::PathBuf;

use ringdrop_proto::v1::{self as pb, contacts_server::Contacts};
use tonic::{Request, Response, Status};

use super::{convert, status::st};
use crate::daemon::Daemon;

pub struct ContactsService {
    daemon: Daemon,
}

impl ContactsService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

#[tonic::async_trait]
impl Contacts for ContactsService {
    async fn send(&self, req: Request<pb::SendRequest>) -> Result<Response<pb::SentOffer>, Status> {
        let caller = super::caller(&req)?;
        let r = req.into_inner();
        let path = PathBuf::from(&r.path);
        if !path.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "path must be absolute: {}",
                r.path
            )));
        }
        let rec = self
            .daemon
            .send(
                &caller,
                path,
                &r.handoff,
                &r.peer,
                Some(r.expires_in).filter(|s| *s != 0),
            )
            .await
            .map_err(st)?;
        Ok(Response::new(convert::sent_offer(&rec.names, &rec.rows)))
    }

    async fn list_sent(
        &self,
        req: Request<pb::ListSentRequest>,
    ) -> Result<Response<pb::ListSentResponse>, Status> {
        let caller = super::caller(&req)?;
        let offers = self.daemon.sent(&caller).await.map_err(st)?;
        Ok(Response::new(pb::ListSentResponse {
            offers: convert::sent_offers(&offers),
        }))
    }

    async fn withdraw(
        &self,
        req: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::SentOffer>, Status> {
        let caller = super::caller(&req)?;
        let rec = self
            .daemon
            .withdraw(&caller, req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::sent_offer(&rec.names, &rec.rows)))
    }

    async fn list_inbox(
        &self,
        req: Request<pb::ListInboxRequest>,
    ) -> Result<Response<pb::ListInboxResponse>, Status> {
        let caller = super::caller(&req)?;
        let inbox = self.daemon.inbox(&caller).await.map_err(st)?;
        Ok(Response::new(convert::inbox(&inbox)))
    }

    async fn accept_offer(
        &self,
        req: Request<pb::AcceptOfferRequest>,
    ) -> Result<Response<pb::AcceptOfferResponse>, Status> {
        let caller = super::caller(&req)?;
        let r = req.into_inner();
        let out = Some(r.out).filter(|o| !o.is_empty()).map(PathBuf::from);
        let accepted = self
            .daemon
            .accept_offer(
                r.id,
                out,
                r.force,
                &caller,
                Some(r.caller_cannot_write).filter(|w| !w.is_empty()),
            )
            .await
            .map_err(st)?;
        let (offer, view) = &accepted.rows;
        Ok(Response::new(pb::AcceptOfferResponse {
            offer: Some(convert::inbox_offer(&accepted.names, offer)),
            transfer: Some(convert::transfer(view)),
        }))
    }

    async fn remove_sent(
        &self,
        req: Request<pb::RemoveSentRequest>,
    ) -> Result<Response<pb::SentOffer>, Status> {
        let caller = super::caller(&req)?;
        let rec = self
            .daemon
            .remove_sent(&caller, req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::sent_offer(&rec.names, &rec.rows)))
    }

    async fn remove_inbox_offer(
        &self,
        req: Request<pb::RemoveInboxOfferRequest>,
    ) -> Result<Response<pb::InboxOffer>, Status> {
        let caller = super::caller(&req)?;
        let rec = self
            .daemon
            .remove_inbox_offer(&caller, req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::inbox_offer(&rec.names, &rec.rows)))
    }

    async fn reject_offer(
        &self,
        req: Request<pb::RejectOfferRequest>,
    ) -> Result<Response<pb::InboxOffer>, Status> {
        let caller = super::caller(&req)?;
        let rec = self
            .daemon
            .reject_offer(&caller, req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::inbox_offer(&rec.names, &rec.rows)))
    }

    async fn trust_peer(
        &self,
        req: Request<pb::TrustPeerRequest>,
    ) -> Result<Response<pb::TrustPeerResponse>, Status> {
        let caller = super::caller(&req)?;
        let r = req.into_inner();
        let (p, rec, per_day) = self
            .daemon
            .trust_peer(
                &caller,
                &r.peer,
                PathBuf::from(&r.accept_into),
                Some(r.max_size).filter(|m| *m != 0),
                Some(r.max_per_day).filter(|m| *m != 0),
            )
            .await
            .map_err(st)?;
        Ok(Response::new(pb::TrustPeerResponse {
            peer: p.id.to_string(),
            name: p.name.unwrap_or_default(),
            accept_into: rec.accept_into.display().to_string(),
            max_size: rec.max_size.unwrap_or(0),
            max_per_day: per_day,
        }))
    }

    async fn untrust_peer(
        &self,
        req: Request<pb::UntrustPeerRequest>,
    ) -> Result<Response<pb::TrustPeerResponse>, Status> {
        let caller = super::caller(&req)?;
        let p = self
            .daemon
            .untrust_peer(&caller, &req.into_inner().peer)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::TrustPeerResponse {
            peer: p.id.to_string(),
            name: p.name.unwrap_or_default(),
            ..Default::default()
        }))
    }
}
