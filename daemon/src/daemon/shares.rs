//! The facade's shares: share, list, unshare, tickets and the files
//! operators hand over, each judged as its caller.

use iroh::EndpointAddr;
use iroh_blobs::Hash;
use std::sync::Arc;
use tokio::sync::mpsc;

use tracing::{info, warn};

use super::{Created, Daemon, ShareView};
use crate::{
    authority::Caller,
    registry::RegistryError,
    shares::{self, ShareError, ShareEvent, Shared},
    ticket::{Ticket, TicketError, TicketKind},
};

/// Which ticket text to hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketFormat {
    Ringdrop,
    Blob,
}

impl Daemon {
    /// Serves the socket operators hand their files over (beside the
    /// control socket, see `shares::handed`) as a task until shutdown.
    pub fn serve_handoffs(&self, group: Option<u32>, policy: &crate::authority::PeerPolicy) {
        let path = ringdrop_proto::handoff::socket_for(self.config().socket.as_path());
        // Both are called on the handoff's blocking threads.
        let rt = tokio::runtime::Handle::current();
        let reader: shares::handed::ReadyFiles = {
            let (daemon, rt) = (self.clone(), rt.clone());
            Arc::new(move |uid, id, index| rt.block_on(daemon.ready_file(uid, id, index)))
        };
        let rehost: shares::handed::Rehost = {
            let daemon = self.clone();
            Arc::new(move |uid, id, host| rt.block_on(daemon.rehost(uid, id, host)))
        };
        let served = shares::handed::serve(
            path.clone(),
            group,
            policy.clone(),
            self.inner.handoffs.clone(),
            reader,
            rehost,
            &self.inner.tasks,
        );
        if let Err(e) = served {
            warn!(path = %path.display(), "operators cannot share: no handoff socket: {e}");
        }
    }

    /// The files `caller` handed over under `token` (none: an empty token).
    pub(super) fn handed(
        &self,
        caller: &Caller,
        token: &[u8],
    ) -> Result<Option<shares::handed::HandedFiles>, ShareError> {
        if token.is_empty() {
            return Ok(None);
        }
        self.inner
            .handoffs
            .take(token, caller.uid)
            .map(Some)
            .ok_or(ShareError::HandoffGone)
    }

    /// A ticket for a share, with the node's current addresses.
    pub fn ticket(&self, hash: Hash, name: &str, format: TicketFormat) -> String {
        ticket_at(self.ticket_addr(), hash, name, format)
    }

    /// A client's share request: its files handed over under `handoff`
    /// (see `shares::handed`), the ticket given in `format`.
    pub async fn share_handed(
        &self,
        caller: &Caller,
        mut req: shares::ShareRequest,
        handoff: &[u8],
        format: TicketFormat,
        events: mpsc::Sender<ShareEvent>,
    ) -> Result<Created, ShareError> {
        req.handed = self.handed(caller, handoff)?;
        let shared = self.share(caller, req, events).await?;
        let rec = shared.share;
        Ok(Created {
            ticket: self.ticket(rec.hash, &rec.name, format),
            share: self.share_view(rec, 0, false),
            created: shared.created,
        })
    }

    /// Shares a file or directory (absolute path on this host) as
    /// [`shares::share`] says. Peers fetching a share this one replaced
    /// (its files changed) are disconnected.
    pub(super) async fn share(
        &self,
        caller: &Caller,
        req: shares::ShareRequest,
        events: mpsc::Sender<ShareEvent>,
    ) -> Result<Shared, ShareError> {
        let path = req.path.clone();
        let reserve = req.reserve;
        if !caller.is_admin() && req.handed.is_none() {
            return Err(ShareError::NotHanded("share"));
        }
        let shared =
            shares::share(&self.inner.store, &self.inner.content, caller, req, events).await?;
        info!(uid = caller.uid, hash = %shared.share.hash, path = %path.display(), "shared");
        if let Some(on) = reserve {
            let (hash, owner) = (shared.share.hash, shared.share.owner);
            self.inner.registry.set_reserve(hash, owner, on).await?;
        }
        for old in &shared.replaced {
            self.disconnect_share(&old.hash);
        }
        if !shared.replaced.is_empty() {
            self.inner.content.prune().await;
        }
        Ok(shared)
    }

    /// All shares with the bytes served for each and whether they are
    /// "changed" (the policy's verdict: their files, or another file their
    /// content was imported from, changed since sharing; not served).
    pub async fn shares(&self, caller: &Caller) -> Result<Vec<ShareView>, RegistryError> {
        let served = self.inner.registry.served_by_share().await?;
        let addr = self.ticket_addr();
        let rows: Vec<_> = (self.inner.registry.shares().await?.into_iter())
            .filter(|s| caller.controls(s.owner))
            .map(|s| {
                let bytes = served.get(&s.hash).copied().unwrap_or(0);
                (s, bytes)
            })
            .collect();
        // The verdicts stat every source file: off the runtime.
        let policy = self.inner.policy.clone();
        let judged: Vec<_> = tokio::task::spawn_blocking(move || {
            rows.into_iter()
                .map(|(s, served)| {
                    let changed = !policy.fresh_now(&s);
                    (s, served, changed)
                })
                .collect()
        })
        .await
        .map_err(|e| RegistryError::Task(e.into()))?;
        Ok(judged
            .into_iter()
            .map(|(s, served, changed)| Self::share_view_at(&addr, s, served, changed))
            .collect())
    }

    /// The names of the shares `caller` controls, by content (no file is
    /// looked at).
    pub(super) async fn share_names(
        &self,
        caller: &Caller,
    ) -> Result<std::collections::HashMap<Hash, String>, RegistryError> {
        let all = self.inner.registry.shares().await?;
        Ok(all
            .into_iter()
            .filter(|s| caller.controls(s.owner))
            .map(|s| (s.hash, s.name))
            .collect())
    }

    /// Stops sharing; peers fetching it are disconnected.
    pub async fn unshare(
        &self,
        caller: &Caller,
        hash_or_prefix: &str,
    ) -> Result<ShareView, ShareError> {
        let rec = shares::unshare(
            &self.inner.store,
            &self.inner.registry,
            caller,
            hash_or_prefix,
        )
        .await?;
        info!(uid = caller.uid, hash = %rec.hash, "unshared");
        self.disconnect_share(&rec.hash);
        self.inner.content.prune().await;
        Ok(self.share_view(rec, 0, false))
    }

    /// Closes the connections of every peer being served `share` now.
    pub(super) fn disconnect_share(&self, share: &Hash) {
        for peer in self.inner.uploads.peers_of(share) {
            self.inner.gate.disconnect(peer);
        }
    }

    /// Decodes a ticket.
    pub fn inspect_ticket(&self, ticket: &str) -> Result<Ticket, TicketError> {
        ticket.parse()
    }
}

/// A ticket for `hash` at `addr` (a listing makes the address once: asking
/// the endpoint for it costs more than the ticket).
pub(super) fn ticket_at(
    addr: EndpointAddr,
    hash: Hash,
    name: &str,
    format: TicketFormat,
) -> String {
    let mut t = Ticket::new(addr, hash, Some(name.to_string()));
    if format == TicketFormat::Blob {
        t.kind = TicketKind::Blob;
    }
    t.to_string()
}
