//! What the facade answers with when rows name things by id: the rows and
//! the names for them, resolved once per answer from an index (the
//! registry's address-book index; share names from one read of the
//! shares), never a scan per row. `rpc/convert.rs` maps these to proto.

use std::collections::HashMap;

use iroh_blobs::Hash;

use super::{Daemon, PeerNames};
use crate::{
    authority::Caller,
    provider::Upload,
    registry::{RegistryError, ShareRecord},
};

/// `rows` that name peers by endpoint id, with the address book's names.
#[derive(Debug)]
pub struct Named<T> {
    pub rows: T,
    pub names: PeerNames,
}

/// A share as listed: its row, a ticket for it (ringdrop form), the bytes
/// served of it and whether its files changed since sharing.
#[derive(Debug)]
pub struct ShareView {
    pub rec: ShareRecord,
    pub ticket: String,
    pub served: u64,
    pub changed: bool,
}

/// A share request's answer: the share, the ticket in the form asked
/// for, and whether the content was new.
#[derive(Debug)]
pub struct Created {
    pub share: ShareView,
    pub ticket: String,
    pub created: bool,
}

/// An upload under way, with the name of the share it serves (empty: a
/// share the caller does not own, or none).
#[derive(Debug)]
pub struct UploadView {
    pub upload: Upload,
    pub share_name: String,
}

impl Daemon {
    /// `rows` with the names of the peers they mention.
    pub(super) async fn named<T>(&self, rows: T) -> Named<T> {
        Named {
            rows,
            names: self.peer_names().await,
        }
    }

    /// `rec` as listed, with a ticket.
    pub(super) fn share_view(&self, rec: ShareRecord, served: u64, changed: bool) -> ShareView {
        Self::share_view_at(&self.ticket_addr(), rec, served, changed)
    }

    /// A share as answers show it, its ticket at `addr`.
    pub(super) fn share_view_at(
        addr: &iroh::EndpointAddr,
        rec: ShareRecord,
        served: u64,
        changed: bool,
    ) -> ShareView {
        let format = super::TicketFormat::Ringdrop;
        let ticket = super::shares::ticket_at(addr.clone(), rec.hash, &rec.name, format);
        ShareView {
            rec,
            ticket,
            served,
            changed,
        }
    }

    /// What is being served right now of the shares `caller` owns (an
    /// admin: everything), each with its share's name.
    pub async fn uploads(&self, caller: &Caller) -> Result<Vec<UploadView>, RegistryError> {
        let names = self.share_names(caller).await?;
        Ok(self
            .uploads_for(caller)
            .await
            .into_iter()
            .map(|upload| UploadView {
                share_name: share_name(&names, upload.share),
                upload,
            })
            .collect())
    }
}

fn share_name(names: &HashMap<Hash, String>, share: Option<Hash>) -> String {
    share
        .and_then(|h| names.get(&h).cloned())
        .unwrap_or_default()
}
