//! A fetch of a ring share and the ring: the rosters its owner signs
//! (asked for at each attempt), the members it fetches from beside the
//! owner, and what this node holds of it to serve the other members, while
//! it fetches and after (`crate::swarm`).

use std::{collections::HashSet, path::PathBuf, sync::Arc};

use bao_tree::ChunkRanges;
use iroh::{endpoint::Connection, EndpointAddr, EndpointId};
use iroh_blobs::{BlobFormat, Hash};
use tracing::{debug, info};

use super::{
    attempt::{AttemptError, Session, Want},
    incoming::{Incoming, Sink},
    many::{self, Provider},
    worker::{outboards_of, Following, Worker},
};
use crate::{
    access::roster::Held,
    registry::source_of,
    swarm::{self, holdings::HeldFile, Holding},
};

/// Members a fetch takes from at once at most.
const MAX_MEMBERS: usize = 16;
/// How often a running fetch looks for members it does not fetch from.
const DISCOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// Data-dir directory of completed holdings' outboards.
pub const HELD: &str = "held";

impl Worker {
    /// The valid rosters of the ticket's provider that cover this content:
    /// asked of it now (it learns where this node is), else those held.
    pub(super) async fn ring_rosters(&self, session: &Session<'_>) -> Vec<Held> {
        let root = self.ticket.content.hash;
        let owner = self.ticket.addr.id;
        if self.ticket.content.format == BlobFormat::Raw {
            return Vec::new();
        }
        let asked = async {
            let conn = swarm::client::connect(session.me, self.ticket.addr.clone()).await?;
            let me: Vec<_> = session.me.addr().ip_addrs().copied().collect();
            swarm::client::rosters(&conn, &root, me).await
        };
        match asked.await {
            Ok(signed) => {
                let now = ringdrop_proto::clock::now_ms();
                for s in signed {
                    if let Err(e) = self.swarm.rosters.take(&owner, s, now) {
                        debug!(id = self.id, "roster not taken: {e}");
                    }
                }
            }
            Err(e) => debug!(id = self.id, "no rosters from the provider: {e}"),
        }
        self.swarm
            .rosters
            .covering(&owner, &root, ringdrop_proto::clock::now_ms())
    }

    /// Registers what this transfer holds, to be served to the ring's
    /// members as it arrives, if it is a ring share and may be re-served
    /// (else says why not).
    pub(super) fn hold(
        &self,
        session: &Session<'_>,
        inc: &Incoming,
        named: &[(String, Hash)],
        have: &[ChunkRanges],
        rosters: &[Held],
    ) -> Option<Arc<Holding>> {
        if rosters.is_empty() {
            return None;
        }
        let why_not = if !self.swarm.settings.reserve {
            Some("not re-served to the ring: this node's config says reserve = false")
        } else if self.no_reserve {
            Some("not re-served to the ring: fetched with --no-reserve")
        } else if inc.dir.own().is_none() {
            Some("not re-served to the ring: its files are placed by its owner's ringdropctl, where ringdropd does not read")
        } else {
            None
        };
        if let Some(why) = why_not {
            self.swarm.holdings.set_why_not(self.id, why.into());
            return None;
        }
        let dir = inc.dir.path();
        let outboards = outboards_of(&self.data_dir, self.id);
        let files = named
            .iter()
            .enumerate()
            .map(|(i, (_, hash))| HeldFile {
                hash: *hash.as_bytes(),
                size: inc.rec.sizes.get(i).copied().flatten(),
                data: dir.join(i.to_string()),
                outboard: outboards.join(i.to_string()),
                have: have.get(i).cloned().unwrap_or_default(),
                placed: None,
            })
            .collect();
        let holding = Holding::new(
            self.id,
            self.ticket.content.hash,
            self.ticket.addr.clone(),
            &session.positions,
            files,
        );
        Some(self.swarm.holdings.add(holding))
    }

    /// Connects to the members of `rosters` (not this node, not the owner,
    /// none in `known`), a few at a time; those that answer are providers.
    pub(super) async fn members(
        &self,
        session: &Session<'_>,
        rosters: &[Held],
        known: &HashSet<EndpointId>,
    ) -> Vec<Provider<Following>> {
        let now = ringdrop_proto::clock::now();
        let me = session.me.id();
        let mut addrs: Vec<EndpointAddr> = Vec::new();
        for held in rosters {
            for addr in held.roster.others(&me, now) {
                let new = addr.id != self.ticket.addr.id && !known.contains(&addr.id);
                if new && !addr.is_empty() && !addrs.iter().any(|a| a.id == addr.id) {
                    addrs.push(addr);
                }
            }
        }
        addrs.truncate(MAX_MEMBERS.saturating_sub(known.len()));
        let dials = addrs
            .into_iter()
            .map(|addr| async move { swarm::client::connect(session.me, addr).await });
        let conns: Vec<Result<Connection, String>> = futures::future::join_all(dials).await;
        conns
            .into_iter()
            .filter_map(|c| {
                c.map_err(|e| debug!(id = self.id, "member not reached: {e}"))
                    .ok()
            })
            .map(|conn| Provider {
                id: conn.remote_id(),
                limit: self
                    .links
                    .0
                    .downlink(conn.remote_id(), self.links.1.clone()),
                member: true,
                guard: Some(self.follow_provider(&conn)),
                conn,
            })
            .collect()
    }

    /// Fetches `wants` of a ring share: from the owner at once, and from
    /// every member as it is reached (`transfers/many.rs`).
    pub(super) async fn fetch_ring<L>(
        &self,
        session: &Session<'_>,
        (sink, holding): (&Sink, Option<&Holding>),
        rosters: &[Held],
        wants: &[Want],
        leaf: L,
    ) -> Result<(), AttemptError>
    where
        L: FnMut(EndpointId, usize, u64, usize) -> Result<(), AttemptError> + Send,
    {
        let owner = Provider {
            id: self.ticket.addr.id,
            conn: session.conn.clone(),
            limit: session.limit.clone(),
            member: false,
            guard: None,
        };
        let (joined, joining) = tokio::sync::mpsc::channel(4);
        let leaf = std::sync::Mutex::new(leaf);
        let fetch = many::fetch(session, vec![owner], (sink, holding, joining), wants, &leaf);
        tokio::select! {
            fetched = fetch => fetched,
            () = self.discover(session, rosters, joined) => Ok(()),
        }
    }

    /// While a fetch runs: dials the members of `rosters`, then asks for
    /// the roster again now and then, and hands each member reached to
    /// `joined` (the fetch starts with the owner at once; a member that
    /// came later, or whose address the owner did not know yet, joins
    /// when it can be reached). Never ends.
    pub(super) async fn discover(
        &self,
        session: &Session<'_>,
        rosters: &[Held],
        joined: tokio::sync::mpsc::Sender<Provider<Following>>,
    ) {
        let mut known = HashSet::new();
        let mut rosters = rosters.to_vec();
        loop {
            for p in self.members(session, &rosters, &known).await {
                known.insert(p.id);
                if joined.send(p).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(DISCOVER_EVERY).await;
            rosters = self.ring_rosters(session).await;
        }
    }

    /// The files are in place: what this node holds is served from there
    /// from now on (their outboards kept in the data dir), and recorded so
    /// that it still is after a restart. Blocking work off the runtime.
    pub(super) async fn held_in_place(&self, placed: Vec<(usize, PathBuf)>) {
        let Some(holding) = self
            .swarm
            .holdings
            .of(&self.ticket.content.hash)
            .into_iter()
            .find(|h| h.transfer == self.id)
        else {
            return;
        };
        let from = outboards_of(&self.data_dir, self.id);
        let to = self.data_dir.join(HELD).join(self.id.to_string());
        let moved = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(to.parent().unwrap_or(&to))?;
            if from.exists() {
                std::fs::rename(&from, &to)?;
            } else {
                std::fs::create_dir_all(&to)?;
            }
            let sources = placed
                .into_iter()
                .map(|(i, path)| {
                    let m = std::fs::symlink_metadata(&path)?;
                    Ok((i, source_of(&path, &m)))
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok::<_, std::io::Error>((sources, to))
        })
        .await;
        let (sources, to) = match moved {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                self.forget_held(format!("not re-served: cannot keep its outboards: {e}"));
                return;
            }
            Err(e) => {
                self.forget_held(format!("not re-served: {e}"));
                return;
            }
        };
        holding.placed(sources, &to);
        let Some(rec) = holding.record() else {
            self.forget_held("not re-served: some of its files were already in place".into());
            return;
        };
        if let Err(e) = self.registry.put_held(self.id, &rec).await {
            self.forget_held(format!("not re-served: {e}"));
            return;
        }
        info!(
            id = self.id,
            files = rec.files.len(),
            "completed; re-served to the ring's members from where it was placed"
        );
    }

    fn forget_held(&self, why: String) {
        self.swarm.holdings.remove(self.id);
        self.swarm.holdings.set_why_not(self.id, why.clone());
        self.publish.send_modify(|v| v.serving = why);
    }
}

/// Removes what a transfer held (its record, outboards and holding). Blocking.
pub fn discard_held(data_dir: &std::path::Path, registry: &crate::registry::Registry, id: u64) {
    let dir = data_dir.join(HELD).join(id.to_string());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).ok();
    }
    registry.blocking().remove_held(id).ok();
}
