//! The access policy, in one place: whether a peer may fetch a share (the
//! gate), whether it may see it in the catalog, and whether the share's
//! source files are still what was shared. Fails closed: a registry error,
//! an empty or unknown ring set, or a changed source is "no".
//!
//! - Fetch: the share is in `open` (anyone holding the ticket), or the
//!   peer is a current member of one of its rings.
//! - List: the peer is a current member of one of its rings, or the share
//!   is `open` and its owner listed it (`share --listed`). Endpoint ids are
//!   not secrets (mDNS announces them, every ticket carries one), so
//!   "anyone who can reach the node" must not learn open tickets.
//! - Both: the share's owner is still an operator (system mode), and
//!   every source file has the size, mtime, change time and inode it
//!   had when shared (checked at most once a second per share).
//! - Re-serve (a member serving what it fetched of a ring share to other
//!   members, `crate::swarm`): this node re-serves at all, and a roster
//!   the content's owner signed, valid now, covers the content and lists
//!   both this node and the peer as current members. The owner's own
//!   serving is by the fetch rule above; nobody else's roster counts.
//! - Roster: the owner hands a ring's roster only to a current member of
//!   it who may fetch the share asked about; a member passes on only a
//!   roster that lists the asker.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use iroh_blobs::Hash;
use tracing::warn;

use crate::{
    access::roster::Roster,
    registry::{Registry, RegistryError, ShareRecord, OPEN_RING},
    shares,
};

/// Whether this node may serve content it holds to `peer` by `rosters`
/// (the valid rosters of the content's owner that cover it): re-serving
/// is on, and one of them lists this node and the peer as current members.
pub fn may_reserve(
    reserve: bool,
    rosters: &[Roster],
    me: &[u8; 32],
    peer: &[u8; 32],
    now_secs: i64,
) -> bool {
    reserve
        && rosters
            .iter()
            .any(|r| r.has_member(me, now_secs) && r.has_member(peer, now_secs))
}

/// Whether a member may pass `roster` on to `peer`: it lists the peer.
pub fn may_pass_roster(roster: &Roster, peer: &[u8; 32], now_secs: i64) -> bool {
    roster.has_member(peer, now_secs)
}

/// How long a "source files unchanged" check is trusted.
const SOURCE_CHECK_TTL: Duration = Duration::from_secs(1);
/// Freshness verdicts kept at most (one per share asked about recently).
const FRESH_MAX: usize = 4096;

/// A share row's key: its content and its owner.
pub type ShareKey = (Hash, u32);

/// The policy; shared by the gate and the catalog.
#[derive(Debug)]
pub struct Policy {
    registry: Registry,
    /// share -> (checked at, share generation then, sources unchanged)
    fresh: Mutex<HashMap<ShareKey, (Instant, u64, bool)>>,
    /// Shares of users who are no longer operators (left the group or
    /// were deleted): never served, never listed.
    suspended: std::sync::RwLock<std::collections::HashSet<ShareKey>>,
}

impl Policy {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            fresh: Mutex::new(HashMap::new()),
            suspended: Default::default(),
        }
    }

    /// Stops serving `shares` (hash, owner) (their owners are no longer
    /// operators); replaces the earlier set.
    pub fn suspend(&self, shares: std::collections::HashSet<ShareKey>) {
        if let Ok(mut s) = self.suspended.write() {
            *s = shares;
        }
    }

    /// Whether `share` belongs to a user who is no longer an operator (a
    /// poisoned lock counts as yes: fail closed).
    fn suspended(&self, share: &ShareRecord) -> bool {
        self.suspended
            .read()
            .map(|s| s.contains(&(share.hash, share.owner)))
            .unwrap_or(true)
    }

    fn is_open(share: &ShareRecord) -> bool {
        share.rings.iter().any(|r| r == OPEN_RING)
    }

    /// Whether `peer` may fetch `share` at `now`.
    pub fn may_fetch(
        &self,
        share: &ShareRecord,
        peer: &[u8; 32],
        now: i64,
    ) -> Result<bool, RegistryError> {
        if self.suspended(share) {
            return Ok(false);
        }
        let allowed = Self::is_open(share)
            || self
                .registry
                .blocking()
                .member_of_any(&share.rings, peer, now)?;
        Ok(allowed && self.fresh(share))
    }

    /// Whether the catalog shows `share` to `peer` at `now`.
    pub fn may_list(
        &self,
        share: &ShareRecord,
        peer: &[u8; 32],
        now: i64,
    ) -> Result<bool, RegistryError> {
        if self.suspended(share) {
            return Ok(false);
        }
        let allowed = (Self::is_open(share) && share.listed)
            || self
                .registry
                .blocking()
                .member_of_any(&share.rings, peer, now)?;
        Ok(allowed && self.fresh(share))
    }

    /// Whether another file that one of `share`'s blobs was imported from
    /// (the same content shared from elsewhere, maybe since unshared)
    /// changed: the store reads whichever of a blob's files opens first,
    /// unverified, so any of them must still hold what was imported. A
    /// file that is gone is harmless (the store cannot open it).
    fn other_sources_changed(&self, share: &ShareRecord) -> bool {
        share.children.iter().skip(1).any(|child| {
            match self.registry.blocking().blob_sources(child) {
                Ok(sources) => sources
                    .iter()
                    .any(|s| match std::fs::symlink_metadata(&s.path) {
                        Ok(m) => shares::source_of(&s.path, &m) != *s,
                        Err(_) => false,
                    }),
                Err(_) => true,
            }
        })
    }

    /// Whether `share`'s source files are unchanged since sharing (a
    /// verdict at most [`SOURCE_CHECK_TTL`] old, and from before no share
    /// changed: sharing again refreshes at once).
    pub fn fresh(&self, share: &ShareRecord) -> bool {
        let generation = self.registry.shares_generation();
        let cached = self
            .fresh
            .lock()
            .ok()
            .and_then(|f| f.get(&(share.hash, share.owner)).copied());
        if let Some((at, then, ok)) = cached {
            if at.elapsed() < SOURCE_CHECK_TTL && then == generation {
                return ok;
            }
        }
        let ok = self.fresh_now(share);
        if !ok {
            warn!(share = %share.hash, name = %share.name, "shared files changed since sharing (or another file the same content was shared from); not serving them (share again to refresh)");
        }
        ok
    }

    /// Whether `share`'s source files are unchanged since sharing, checked
    /// now (for `shares ls`, which a person reads right after an edit).
    pub fn fresh_now(&self, share: &ShareRecord) -> bool {
        let generation = self.registry.shares_generation();
        let ok = !shares::sources_changed(share) && !self.other_sources_changed(share);
        if let Ok(mut f) = self.fresh.lock() {
            if f.len() >= FRESH_MAX {
                let now = Instant::now();
                f.retain(|_, (at, _, _)| now.duration_since(*at) < SOURCE_CHECK_TTL);
                // All of them recent (a listing of more shares than that):
                // start over, or every insert would scan the whole map.
                if f.len() >= FRESH_MAX {
                    f.clear();
                }
            }
            f.insert((share.hash, share.owner), (Instant::now(), generation, ok));
        }
        ok
    }
}
