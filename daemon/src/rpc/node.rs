//! `ringdrop.v1.Node`: status and ticket inspection.

use iroh_blobs::BlobFormat;
use ringdrop_proto::v1::{self as pb, node_server::Node};
use tonic::{Request, Response, Status};

use super::status::st;
use crate::{daemon::Daemon, ticket::TicketKind};

pub struct NodeService {
    daemon: Daemon,
}

impl NodeService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn get_status(
        &self,
        _req: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let s = self.daemon.status().map_err(st)?;
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
