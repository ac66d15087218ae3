//! `ringdrop.v1.Node`: status and ticket inspection.

use iroh_blobs::BlobFormat;
use ringdrop_proto::v1::{self as pb, node_server::Node};
use tonic::{Request, Response, Status};

use super::{convert, status::st};
use crate::{
    daemon::{Daemon, Seen},
    ticket::TicketKind,
};

pub struct NodeService {
    daemon: Daemon,
}

impl NodeService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

type EventStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Node for NodeService {
    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = super::caller(&req)?;
        let feed = self.daemon.watch_events(caller);
        let stream = futures::stream::unfold(feed, |mut feed| async move {
            let item = match feed.next().await? {
                Seen::Event(s) => convert::event(s),
                Seen::Lost(n) => convert::events_lost(n),
            };
            Some((Ok(item), feed))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn give_row(
        &self,
        req: Request<pb::GiveRowRequest>,
    ) -> Result<Response<pb::GiveRowResponse>, Status> {
        let caller = super::caller(&req)?;
        let r = req.into_inner();
        self.daemon
            .give_row(&caller, &r.kind, &r.key, r.uid)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::GiveRowResponse {}))
    }

    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let s = self.daemon.status().await.map_err(st)?;
        Ok(Response::new(pb::GetStatusResponse {
            endpoint_id: s.endpoint_id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            direct_addresses: s.addrs,
            relay_url: s.relay_url.unwrap_or_default(),
            data_dir: s.data_dir.display().to_string(),
            shares: s.shares,
            transfers_active: s.transfers_active,
            transfers_total: s.transfers_total,
            bytes_served: s.bytes_served,
            uptime_secs: s.uptime_secs,
            relay_mode: s.relay_mode,
            mdns: s.mdns,
            requests_allowed: s.requests_allowed,
            requests_refused: s.requests_refused,
            uploads: s.uploads,
        }))
    }

    async fn list_uploads(
        &self,
        req: Request<pb::ListUploadsRequest>,
    ) -> Result<Response<pb::ListUploadsResponse>, Status> {
        let caller = super::caller(&req)?;
        let uploads = self.daemon.uploads(&caller).await.map_err(st)?;
        Ok(Response::new(pb::ListUploadsResponse {
            uploads: uploads.iter().map(convert::upload).collect(),
        }))
    }

    async fn inspect_ticket(
        &self,
        req: Request<pb::InspectTicketRequest>,
    ) -> Result<Response<pb::InspectTicketResponse>, Status> {
        let t = self
            .daemon
            .inspect_ticket(&req.into_inner().ticket)
            .map_err(st)?;
        let relay_url = t.addr.relay_urls().next().map(|u| u.to_string());
        Ok(Response::new(pb::InspectTicketResponse {
            kind: match t.kind {
                TicketKind::Ringdrop => "ringdrop",
                TicketKind::Blob => "blob",
            }
            .into(),
            endpoint_id: t.addr.id.to_string(),
            relay_url: relay_url.unwrap_or_default(),
            direct_addresses: t.addr.ip_addrs().map(|a| a.to_string()).collect(),
            hash: t.content.hash.to_string(),
            format: match t.content.format {
                BlobFormat::Raw => "raw",
                BlobFormat::HashSeq => "hash_seq",
            }
            .into(),
            name: t.name.unwrap_or_default(),
            version: if t.kind == TicketKind::Ringdrop { 1 } else { 0 },
        }))
    }
}
