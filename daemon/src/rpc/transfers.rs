//! `ringdrop.v1.Transfers`: fetch, list, get, watch.

use std::{path::PathBuf, pin::Pin};

use futures::{Stream, StreamExt};
use ringdrop_proto::v1::{self as pb, transfers_server::Transfers};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert, status::st};
use crate::daemon::{Daemon, Dest};

pub struct TransfersService {
    daemon: Daemon,
}

impl TransfersService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Transfer, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::FileChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Transfers for TransfersService {
    type WatchTransferStream = WatchStream;
    type WatchTransfersStream = WatchStream;
    type ReadTransferFilesStream = ChunkStream;

    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        let out = Some(req.out).filter(|o| !o.is_empty()).map(PathBuf::from);
        let view = self
            .daemon
            .fetch(
                &req.ticket,
                Dest {
                    out,
                    force: req.force,
                    caller_cannot_write: Some(req.caller_cannot_write).filter(|w| !w.is_empty()),
                },
                &caller,
                &req.host,
                (req.only, req.no_reserve),
            )
            .await
            .map_err(st)?;
        Ok(Response::new(pb::FetchResponse {
            transfer: Some(convert::transfer(&view)),
        }))
    }

    async fn list_transfers(
        &self,
        req: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        let caller = super::caller(&req)?;
        let transfers = self.daemon.list_transfers(&caller).await.map_err(st)?;
        Ok(Response::new(pb::ListTransfersResponse {
            transfers: transfers.iter().map(convert::transfer).collect(),
        }))
    }

    async fn get_transfer(
        &self,
        req: Request<pb::GetTransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let caller = super::caller(&req)?;
        let view = self
            .daemon
            .get_transfer(&caller, req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::transfer(&view)))
    }

    async fn watch_transfer(
        &self,
        req: Request<pb::WatchTransferRequest>,
    ) -> Result<Response<Self::WatchTransferStream>, Status> {
        let caller = super::caller(&req)?;
        let id = req.into_inner().id;
        let mut watch = self.daemon.watch_transfer(&caller, id).await.map_err(st)?;
        let (tx, out) = mpsc::channel(4);
        self.daemon.spawn("rpc-watch-transfer", async move {
            loop {
                let next = tokio::select! {
                    next = watch.next() => next,
                    _ = tx.closed() => return,
                };
                let Some(next) = next else { return };
                let msg = next.map(|v| convert::transfer(&v)).map_err(st);
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn watch_transfers(
        &self,
        req: Request<pb::WatchTransfersRequest>,
    ) -> Result<Response<Self::WatchTransfersStream>, Status> {
        let caller = super::caller(&req)?;
        let mut feed = self.daemon.watch_transfers(&caller);
        let (tx, out) = mpsc::channel(64);
        self.daemon.spawn("rpc-watch-transfers", async move {
            loop {
                let next = tokio::select! {
                    next = feed.next() => next,
                    _ = tx.closed() => return,
                };
                let changed = match next {
                    None => return,
                    Some(Ok(changed)) => changed,
                    Some(Err(e)) => {
                        tx.send(Err(st(e))).await.ok();
                        return;
                    }
                };
                for v in &changed {
                    if tx.send(Ok(convert::transfer(v))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn pause_transfer(
        &self,
        req: Request<pb::PauseTransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let caller = super::caller(&req)?;
        let v = self
            .daemon
            .pause_transfer(&caller, req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::transfer(&v)))
    }

    async fn resume_transfer(
        &self,
        req: Request<pb::ResumeTransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let caller = super::caller(&req)?;
        let v = self
            .daemon
            .resume_transfer(&caller, req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::transfer(&v)))
    }

    async fn cancel_transfer(
        &self,
        req: Request<pb::CancelTransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        let v = self
            .daemon
            .cancel_transfer(&caller, req.id, req.purge)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::transfer(&v)))
    }

    async fn remove_transfer(
        &self,
        req: Request<pb::RemoveTransferRequest>,
    ) -> Result<Response<pb::RemoveTransferResponse>, Status> {
        let caller = super::caller(&req)?;
        let v = self
            .daemon
            .remove_transfer(&caller, req.into_inner().id)
            .await
            .map_err(st)?;
        Ok(Response::new(pb::RemoveTransferResponse {
            transfer: Some(convert::transfer(&v)),
        }))
    }

    async fn list_transfer_files(
        &self,
        req: Request<pb::ListTransferFilesRequest>,
    ) -> Result<Response<pb::ListTransferFilesResponse>, Status> {
        let caller = super::caller(&req)?;
        let id = req.into_inner().id;
        let (files, hosted_dir) = self.daemon.transfer_files(&caller, id).await.map_err(st)?;
        let hosted_dir = hosted_dir.unwrap_or_default();
        Ok(Response::new(pb::ListTransferFilesResponse {
            hosted_dir,
            files: files
                .into_iter()
                .map(|e| pb::TransferFile {
                    name: e.name,
                    hash: e.hash.to_vec(),
                    size: e.size,
                })
                .collect(),
        }))
    }

    async fn read_transfer_files(
        &self,
        req: Request<pb::ReadTransferFilesRequest>,
    ) -> Result<Response<Self::ReadTransferFilesStream>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        let rx = self
            .daemon
            .read_transfer_files(&caller, req.id, req.files)
            .await
            .map_err(st)?;
        let chunks = ReceiverStream::new(rx).map(|c| {
            c.map(|c| pb::FileChunk {
                file: c.file,
                offset: c.offset,
                data: c.data,
            })
            .map_err(st)
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn finish_transfer(
        &self,
        req: Request<pb::FinishTransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let caller = super::caller(&req)?;
        let req = req.into_inner();
        let files = req.files.into_iter().map(PathBuf::from).collect();
        let v = self
            .daemon
            .finish_transfer(&caller, req.id, files)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::transfer(&v)))
    }
}
