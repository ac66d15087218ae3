//! `ringdrop.v1.Shares`: share, list, unshare.

use std::{path::PathBuf, pin::Pin};
use tokio_util::task::AbortOnDropHandle;

use futures::Stream;
use ringdrop_proto::v1::{self as pb, share_progress::Event, shares_server::Shares};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert, status::st};
use crate::{
    daemon::{Daemon, TicketFormat},
    shares::ShareEvent,
};

pub struct SharesService {
    daemon: Daemon,
}

impl SharesService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

type ShareStream = Pin<Box<dyn Stream<Item = Result<pb::ShareProgress, Status>> + Send>>;

fn progress(event: Event) -> Result<pb::ShareProgress, Status> {
    Ok(pb::ShareProgress { event: Some(event) })
}

/// Forwards the import's progress to the client's stream until it ends
/// (or the client left: the import's sends then fail, and it goes on).
async fn forward_progress(
    mut events: mpsc::Receiver<ShareEvent>,
    out: mpsc::Sender<Result<pb::ShareProgress, Status>>,
) {
    while let Some(ev) = events.recv().await {
        let msg = match ev {
            ShareEvent::Scanned { files, bytes } => {
                Event::Scanned(pb::ShareScanned { files, bytes })
            }
            ShareEvent::Hashed(n) => Event::HashedBytes(n),
        };
        if out.send(progress(msg)).await.is_err() {
            return;
        }
    }
}

#[tonic::async_trait]
impl Shares for SharesService {
    type ShareStream = ShareStream;

    async fn share(
        &self,
        req: Request<pb::ShareRequest>,
    ) -> Result<Response<Self::ShareStream>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        let path = PathBuf::from(&req.path);
        if !path.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "path must be absolute (the daemon does not know your working directory): {}",
                req.path
            )));
        }
        let format = match pb::TicketFormat::try_from(req.ticket_format) {
            Ok(pb::TicketFormat::Blob) => TicketFormat::Blob,
            _ => TicketFormat::Ringdrop,
        };
        let share_req = crate::shares::ShareRequest {
            path,
            name: Some(req.name).filter(|n| !n.is_empty()),
            rings: req.rings,
            listed: req.listed,
            reserve: req.reserve,
            inherit: true,
            handed: None,
        };
        let handoff = req.handoff;
        let (out_tx, out_rx) = mpsc::channel(16);
        let daemon = self.daemon.clone();
        self.daemon.spawn("rpc-share", async move {
            let (ev_tx, ev_rx) = mpsc::channel(16);
            // A child task, so the import is not polled with it; it ends
            // with the share's sender.
            let forward =
                AbortOnDropHandle::new(tokio::spawn(forward_progress(ev_rx, out_tx.clone())));
            let res = daemon
                .share_handed(&caller, share_req, &handoff, format, ev_tx)
                .await;
            forward.await.ok();
            let msg = match res {
                Ok(created) => Ok(convert::share_created(&created)),
                Err(e) => Err(st(e)),
            };
            out_tx.send(msg).await.ok();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn list_shares(
        &self,
        req: Request<pb::ListSharesRequest>,
    ) -> Result<Response<pb::ListSharesResponse>, Status> {
        let caller = super::caller(&req)?;
        let shares = self
            .daemon
            .shares(&caller)
            .await
            .map_err(st)?
            .iter()
            .map(convert::share)
            .collect();
        Ok(Response::new(pb::ListSharesResponse { shares }))
    }

    async fn unshare(
        &self,
        req: Request<pb::UnshareRequest>,
    ) -> Result<Response<pb::UnshareResponse>, Status> {
        let caller = super::caller(&req)?;
        let rec = self
            .daemon
            .unshare(&caller, &req.into_inner().hash)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::UnshareResponse {
            share: Some(convert::share(&rec)),
        }))
    }
}
