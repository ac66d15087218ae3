//! The daemon's background loops: live access judged again, history
//! forgotten, departed operators' rows suspended, uncollected transfers
//! failed, store tags reconciled with the registry.

use iroh_blobs::Hash;
use tracing::{info, warn};

use super::Daemon;
use crate::{authority::Caller, shares, transfers::TransferError};

/// How long finished transfers and ended offers are kept.
const KEEP_HISTORY: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// How often history older than that is forgotten.
const FORGET_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// How often a system daemon looks for users who are no longer operators.
const MEMBERS_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// How often live uploads are judged again (expiry, revocation, edits).
const LIVE_ACCESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Daemon {
    /// The loops that run for the daemon's lifetime, each until shutdown,
    /// and the `on_complete` follower if a hook is configured.
    pub(super) fn spawn_loops(&self) {
        let (tasks, config) = (&self.inner.tasks, &self.inner.config);
        if !config.on_complete.is_empty() {
            let hook = crate::events::Hook {
                argv: config.on_complete.clone(),
                timeout: config.on_complete_timeout,
            };
            crate::events::spawn_hooks(&self.inner.events, hook, tasks);
        }
        let me = self.clone();
        tasks.spawn_loop("enforce-live-access", move || {
            me.clone().enforce_live_access()
        });
        let me = self.clone();
        tasks.spawn_loop("contacts", move || me.clone().contacts_loop());
        let me = self.clone();
        tasks.spawn_loop("expire-ready", move || me.clone().expire_ready());
        let me = self.clone();
        tasks.spawn_loop("forget-history", move || me.clone().forget_history());
        let me = self.clone();
        tasks.spawn_loop("presence", move || me.clone().presence());
        let bandwidth = self.inner.bandwidth.clone();
        tasks.spawn_loop("limits-schedule", move || bandwidth.clone().run_schedule());
        let (swarm, endpoint) = (self.inner.swarm.clone(), self.inner.endpoint.clone());
        tasks.spawn_loop("rosters", move || {
            crate::swarm::keep_rosters(swarm.clone(), endpoint.clone())
        });
        if self.inner.config.system {
            let me = self.clone();
            tasks.spawn_loop("track-departures", move || me.clone().track_departures());
        }
    }

    /// Every second, every live upload is judged again by the policy:
    /// membership that expired, a ring or member removed between the
    /// decision and the start, a share unshared, a source file edited, a
    /// GET_MANY spanning a share that was revoked. A peer that may no
    /// longer fetch what it is being served is disconnected.
    async fn enforce_live_access(self) {
        let mut tick = tokio::time::interval(LIVE_ACCESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            let live = self.inner.uploads.list();
            if live.is_empty() {
                continue;
            }
            let this = self.clone();
            let cut = tokio::task::spawn_blocking(move || {
                let now = ringdrop_proto::clock::now();
                let mut cut = std::collections::BTreeSet::new();
                for u in live {
                    // Any owner's share of the content may allow it.
                    let allowed = u.shares.iter().all(|h| {
                        this.inner
                            .registry
                            .blocking()
                            .shares_of(h)
                            .is_ok_and(|rows| {
                                rows.iter().any(|rec| {
                                    matches!(
                                        this.inner.policy.may_fetch(rec, u.peer.as_bytes(), now),
                                        Ok(true)
                                    )
                                })
                            })
                    });
                    if !allowed {
                        cut.insert(u.peer);
                    }
                }
                cut
            })
            .await
            .unwrap_or_default();
            for peer in cut {
                info!(%peer, "access ended during an upload (expired, revoked or source changed): disconnecting");
                self.inner.gate.disconnect(peer);
            }
        }
    }

    /// Forgets history every hour: finished transfers, ended sent offers
    /// and answered inbox offers older than [`KEEP_HISTORY`], so the
    /// registry is bounded by what is live, not by what ever happened.
    async fn forget_history(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FORGET_EVERY) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            match self.inner.transfers.forget_finished(KEEP_HISTORY).await {
                Ok(0) => {}
                Ok(n) => info!(transfers = n, "forgot transfers finished over 30 days ago"),
                Err(e) => warn!("forgetting old transfers: {e}"),
            }
            let before = ringdrop_proto::clock::now() - KEEP_HISTORY.as_secs() as i64;
            match self.inner.registry.prune_offers(before).await {
                Ok((0, 0)) => {}
                Ok((sent, inbox)) => info!(sent, inbox, "forgot offers over 30 days old"),
                Err(e) => warn!("forgetting old offers: {e}"),
            }
        }
    }

    /// System mode: every [`MEMBERS_EVERY`], users who own shares or
    /// transfers but are no longer operators (left group `ringdrop`, or were
    /// deleted) lose them: their shares are no longer served or listed
    /// (until they are members again), their unfinished transfers are
    /// cancelled and freed.
    async fn track_departures(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(MEMBERS_EVERY) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            let Ok((suspended, cancel)) = self.departed().await else {
                continue;
            };
            self.inner.policy.suspend(suspended);
            for (id, uid) in cancel {
                warn!(
                    id,
                    uid, "its owner is no longer in group ringdrop: cancelling the transfer"
                );
                self.inner
                    .transfers
                    .cancel(&Caller::daemon(), id, true)
                    .await
                    .ok();
            }
        }
    }

    /// The shares of users who are no longer operators, and their
    /// unfinished transfers (id, owner).
    #[allow(clippy::type_complexity)]
    async fn departed(
        &self,
    ) -> Result<(std::collections::HashSet<(Hash, u32)>, Vec<(u64, u32)>), TransferError> {
        use crate::registry::daemon_uid;
        let shares = self.inner.registry.shares().await?;
        let transfers = self.inner.registry.transfers().await?;
        let mut uids: std::collections::HashSet<u32> = shares.iter().map(|s| s.owner).collect();
        uids.extend(transfers.iter().map(|r| r.owner_uid));
        uids.retain(|&uid| uid != 0 && uid != daemon_uid());
        // The group database is files (NSS): read off the runtime.
        let gone: std::collections::HashSet<u32> = tokio::task::spawn_blocking(move || {
            uids.into_iter()
                .filter(|&uid| {
                    crate::authority::still_member(uid, crate::authority::SOCKET_GROUP)
                        == Some(false)
                })
                .collect()
        })
        .await
        .unwrap_or_default();
        let suspended = shares
            .iter()
            .filter(|s| gone.contains(&s.owner))
            .map(|s| (s.hash, s.owner))
            .collect();
        let cancel = transfers
            .into_iter()
            .filter(|r| !r.state.is_terminal() && gone.contains(&r.owner_uid))
            .map(|r| (r.id, r.owner_uid))
            .collect();
        Ok((suspended, cancel))
    }

    /// Fails `ready` transfers nobody collected within `keep_ready`.
    async fn expire_ready(self) {
        let keep = self.inner.config.keep_ready;
        let every = (keep / 4).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            if let Err(e) = self.inner.transfers.expire_ready(keep).await {
                warn!("expiring ready transfers: {e}");
            }
        }
    }

    /// Registry, store and content layer are apart: make every share's
    /// tag exist (a crash may have lost a batched tag write) and remove
    /// the outboards no share lists (a crash between an unshare and its
    /// prune, or during a share's hashing).
    pub(super) async fn reconcile(&self) {
        let Ok(shares) = self.inner.registry.shares().await else {
            return;
        };
        for s in &shares {
            let tag = shares::share_tag(&s.hash, s.owner);
            let present = matches!(self.inner.store.tags().get(&tag).await, Ok(Some(_)));
            if !present {
                warn!(hash = %s.hash, "share tag missing in the store, restoring it");
                let content = iroh_blobs::HashAndFormat::hash_seq(s.hash);
                if let Err(e) = self.inner.store.tags().set(&tag, content).await {
                    warn!(hash = %s.hash, "cannot restore share tag: {e}");
                }
            }
        }
        self.inner.content.prune_at_start(shares).await;
    }
}
