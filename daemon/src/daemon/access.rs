//! The facade's errors of rings, members and peers, what is being served,
//! and an admin giving rows to users. Rings are `rings.rs`, the address
//! book `peers.rs`.

use std::str::FromStr;

use iroh::EndpointId;
use tracing::info;

use super::Daemon;
use crate::{
    authority::Caller,
    catalog::CatalogError,
    provider::Upload,
    registry::{Owned, RegistryError, OPEN_RING},
};

/// Errors of rings, members and peers.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no ring named '{0}': see `ringdropctl ring ls`")]
    UnknownRing(String),
    #[error("ring '{0}' already exists")]
    RingExists(String),
    #[error("ring 'open' is built in (anyone holding a ticket): it cannot be created, removed or given members")]
    OpenRing,
    #[error("invalid name {0:?}: use 1-64 letters, digits, '-', '_' or '.', and nothing that reads as an endpoint id")]
    BadName(String),
    #[error("'{0}' is not an endpoint id, a ticket or a name in the address book: add it with `ringdropctl peer add NAME ENDPOINT_ID`")]
    UnknownPeer(String),
    #[error("no peer named '{0}' in the address book")]
    NoSuchPeer(String),
    #[error("{peer} is not a member of ring '{ring}'")]
    NotMember { ring: String, peer: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("no invite with id {0}: see `ringdropctl ring invites`")]
    NoSuchInvite(String),
    #[error("{0}")]
    BadInviteTerms(String),
    #[error(transparent)]
    Join(#[from] crate::rings::invites::JoinError),
    #[error(transparent)]
    Transfer(#[from] crate::transfers::TransferError),
}

pub(super) fn check_name(name: &str) -> Result<(), AccessError> {
    // A name that reads as an endpoint id would shadow that endpoint
    // wherever a PEER argument is resolved.
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.parse::<EndpointId>().is_err();
    if ok {
        Ok(())
    } else {
        Err(AccessError::BadName(name.to_string()))
    }
}

impl Daemon {
    pub(super) fn registry(&self) -> &crate::registry::Registry {
        &self.inner.registry
    }

    /// What is being served right now of the shares `caller` owns (an
    /// admin: everything).
    pub(super) async fn uploads_for(&self, caller: &Caller) -> Vec<Upload> {
        let mut all = self.inner.uploads.list();
        if caller.is_admin() {
            return all;
        }
        let mine =
            |rows: &[crate::registry::ShareRecord]| rows.iter().any(|s| caller.controls(s.owner));
        let mut out = Vec::new();
        for u in all.drain(..) {
            let mut any = false;
            for h in &u.shares {
                any |= self
                    .registry()
                    .shares_of(h)
                    .await
                    .is_ok_and(|rows| mine(&rows));
            }
            if any {
                out.push(u);
            }
        }
        out
    }
}

impl Daemon {
    /// Gives a row to user `uid` (admins only): `kind` names the table,
    /// `key` the row as the CLI shows it.
    pub async fn give_row(
        &self,
        caller: &Caller,
        kind: &str,
        key: &str,
        uid: u32,
    ) -> Result<(), AccessError> {
        if !caller.is_admin() {
            return Err(AccessError::BadInviteTerms(
                "only root and the daemon's own user may give rows to users".into(),
            ));
        }
        let registry = self.registry();
        let missing = || AccessError::BadInviteTerms(format!("no {kind} {key:?}"));
        let (owned, bytes) = match kind {
            "share" => {
                let hash: iroh_blobs::Hash = key.parse().map_err(|_| missing())?;
                let from = self.give_share(&hash, uid).await?;
                info!(uid = caller.uid, key, from, to = uid, "share given");
                return Ok(());
            }
            "ring" => {
                if key == OPEN_RING || !registry.ring_exists(key).await? {
                    return Err(missing());
                }
                (Owned::Ring, key.as_bytes().to_vec())
            }
            "peer" => {
                registry.peer(key).await?.ok_or_else(missing)?;
                (Owned::Peer, key.as_bytes().to_vec())
            }
            "trust" => {
                let id = EndpointId::from_str(key).map_err(|_| missing())?;
                registry.trust(id.as_bytes()).await?.ok_or_else(missing)?;
                (Owned::Trust, id.as_bytes().to_vec())
            }
            "sent" => {
                let id: u64 = key.parse().map_err(|_| missing())?;
                registry.sent_offer(id).await?.ok_or_else(missing)?;
                (Owned::Sent, id.to_be_bytes().to_vec())
            }
            "transfer" => {
                let id: u64 = key.parse().map_err(|_| missing())?;
                self.inner.transfers.give(id, uid).await?;
                info!(uid = caller.uid, id, to = uid, "transfer given");
                return Ok(());
            }
            _ => {
                return Err(AccessError::BadInviteTerms(format!(
                    "no kind of row {kind:?}: share, ring, peer, trust, sent or transfer"
                )))
            }
        };
        registry.set_owner(owned, &bytes, uid).await?;
        info!(uid = caller.uid, kind, key, to = uid, "row given");
        Ok(())
    }

    /// Gives share `hash` to `uid`: the daemon user's row (from before
    /// owners), else the only one (with several users' rows, which to give
    /// is unclear). The store tag follows its owner: the new one first, so
    /// the content is never left unpinned. The uid it was taken from.
    async fn give_share(&self, hash: &iroh_blobs::Hash, uid: u32) -> Result<u32, AccessError> {
        let registry = self.registry();
        let rows = registry.shares_of(hash).await?;
        let from = match rows
            .iter()
            .find(|s| s.owner == crate::registry::daemon_uid())
        {
            Some(s) => s.owner,
            None if rows.len() == 1 => rows[0].owner,
            None if rows.is_empty() => {
                return Err(AccessError::BadInviteTerms(format!(
                    "no share {:?}",
                    hash.to_string()
                )))
            }
            None => {
                return Err(AccessError::BadInviteTerms(format!(
                    "share {hash} is shared by several users: each keeps their own"
                )))
            }
        };
        if !registry.give_share(hash, from, uid).await? {
            return Err(AccessError::BadInviteTerms(format!(
                "user {uid} shares {hash} already"
            )));
        }
        let tags = self.inner.store.tags();
        let content = iroh_blobs::HashAndFormat::hash_seq(*hash);
        if let Err(e) = tags.set(crate::shares::share_tag(hash, uid), content).await {
            tracing::warn!(%hash, "cannot tag the given share (restored at start-up): {e}");
        } else if let Err(e) = tags.delete(crate::shares::share_tag(hash, from)).await {
            tracing::warn!(%hash, "cannot drop the given share's old tag: {e}");
        }
        Ok(from)
    }
}
