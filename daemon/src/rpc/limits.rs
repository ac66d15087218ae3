//! `ringdrop.v1.Limits`: bandwidth limits.

use ringdrop_proto::v1::{self as pb, limits_server::Limits};
use tonic::{Request, Response, Status};

use super::{convert, status::st};
use crate::daemon::{Daemon, LimitsChange, PeerChange, RateChange};

pub struct LimitsService {
    daemon: Daemon,
}

impl LimitsService {
    pub fn new(daemon: Daemon) -> Self {
        Self { daemon }
    }
}

/// A proto rate change: absent leaves it, 0 is unlimited.
fn rate(v: Option<u64>) -> RateChange {
    v.map(|r| Some(r).filter(|r| *r > 0))
}

#[tonic::async_trait]
impl Limits for LimitsService {
    async fn get_limits(
        &self,
        req: Request<pb::GetLimitsRequest>,
    ) -> Result<Response<pb::LimitsView>, Status> {
        let caller = super::caller(&req)?;
        let view = self.daemon.limits(&caller).await.map_err(st)?;
        Ok(Response::new(convert::limits(&view)))
    }

    async fn set_limits(
        &self,
        req: Request<pb::SetLimitsRequest>,
    ) -> Result<Response<pb::LimitsView>, Status> {
        let caller = super::caller(&req)?;
        let r = req.into_inner();
        let change = LimitsChange {
            reset: r.reset,
            up: rate(r.up),
            down: rate(r.down),
            alt_up: rate(r.alt_up),
            alt_down: rate(r.alt_down),
            alt_hours: r.alt_hours,
            alt_days: r.alt_days,
            peers: r
                .peers
                .into_iter()
                .map(|p| PeerChange {
                    peer: p.peer,
                    up: rate(p.up),
                    down: rate(p.down),
                })
                .collect(),
        };
        let view = self.daemon.set_limits(&caller, change).await.map_err(st)?;
        Ok(Response::new(convert::limits(&view)))
    }

    async fn set_transfer_limit(
        &self,
        req: Request<pb::SetTransferLimitRequest>,
    ) -> Result<Response<pb::LimitsView>, Status> {
        let caller = super::caller(&req)?;
        let r = req.into_inner();
        let down = Some(r.down).filter(|d| *d > 0);
        let view = self
            .daemon
            .set_transfer_limit(&caller, r.id, down)
            .await
            .map_err(st)?;
        Ok(Response::new(convert::limits(&view)))
    }
}
