//! `ringdrop.v1.Transfers`: fetch, list, get, watch.

use std::{path::PathBuf, pin::Pin};

use futures::Stream;
use ringdrop_proto::v1::{self as pb, transfers_server::Transfers};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert, status::st};
use crate::daemon::Daemon;

pub struct TransfersService {
    daemon: Daemon,
}

impl TransfersService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Transfer, Status>> + Send>>;

#[tonic::async_trait]
impl Transfers for TransfersService {
    type WatchTransferStream = WatchStream;

    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let req = req.into_inner();
        let out = Some(req.out).filter(|o| !o.is_empty()).map(PathBuf::from);
        let view = self.daemon.fetch(&req.ticket, out, req.force).map_err(st)?;
        Ok(Response::new(pb::FetchResponse {
            transfer: Some(convert::transfer(&view)),
        }))
    }

    async fn list_transfers(
        &self,
        _req: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        let transfers = self.daemon.transfers().list().map_err(st)?;
        Ok(Response::new(pb::ListTransfersResponse {
            transfers: transfers.iter().map(convert::transfer).collect(),
        }))
    }

    async fn get_transfer(
        &self,
        req: Request<pb::GetTransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let view = self
            .daemon
            .transfers()
            .get(req.into_inner().id)
            .map_err(st)?;
        Ok(Response::new(convert::transfer(&view)))
    }

    async fn watch_transfer(
        &self,
        req: Request<pb::WatchTransferRequest>,
    ) -> Result<Response<Self::WatchTransferStream>, Status> {
        let id = req.into_inner().id;
        let transfers = self.daemon.transfers().clone();
        let rx = transfers.subscribe(id).map_err(st)?;
        let stop = self.daemon.shutdown_token();
        let (tx, out) = mpsc::channel(4);
        tokio::spawn(async move {
            if let Some(mut rx) = rx {
                loop {
                    let snapshot = convert::transfer(&rx.borrow_and_update());
                    if tx.send(Ok(snapshot)).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { break },
                        _ = stop.cancelled() => return,
                        _ = tx.closed() => return,
                    }
                    // At most ~10 updates a second reach the client.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            // Ended (or had already): the final row from the registry.
            let last = transfers.get(id).map(|v| convert::transfer(&v)).map_err(st);
            tx.send(last).await.ok();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }
}
