//! Files a client hosts: for a transfer whose files its owner's client
//! places, that client makes a private directory beside the destination
//! as itself and opens its files for the daemon on request, over the
//! handoff socket (`ringdrop_proto::handoff`). The daemon then writes the
//! verified data once, where it will stay, with nothing of its own
//! authority: it only ever holds descriptors the owner opened.
//!
//! The connection is the hosting: when it closes (the client went away)
//! the files already open stay writable, and a file not open yet cannot be
//! had, which fails the attempt. After a daemon restart the owner's client
//! offers the same directory again ([`Hosts::attach`]); a transfer waits
//! for that a while ([`REHOST_WITHIN`]), then starts over in the data dir.

use std::{
    collections::HashMap,
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use ringdrop_proto::handoff::{self, Item};

/// How long a transfer whose files a client hosted waits, after a daemon
/// restart, for that client to offer them again.
pub const REHOST_WITHIN: Duration = Duration::from_secs(120);
/// Hosts waiting for their transfers' workers, per user and in all (each
/// holds a connection): beyond, a fetch is written in the data dir.
const OFFERED_PER_USER: usize = 64;
const OFFERED_MAX: usize = 1024;

/// Talking to the hosting client failed (it went away, or answered out
/// of turn): the attempt is retried, and the client offers its directory
/// again or the transfer falls back to the data dir.
#[derive(Debug)]
pub struct HostLost(pub std::io::Error);

impl std::fmt::Display for HostLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the hosting ringdropctl: {}", self.0)
    }
}

impl std::error::Error for HostLost {}

/// Whether `e` is a [`HostLost`].
pub fn is_host_lost(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<HostLost>())
}

/// A client's offer to host a transfer's files.
#[derive(Debug)]
pub struct Host {
    conn: OwnedFd,
    /// The private directory's name beside the destination.
    pub dir: String,
    /// The client's uid (the transfer's owner).
    pub uid: u32,
}

/// Whether `dir` is a name the client's private directory can have
/// (`ringdrop_proto::place::PartialDir`'s): nothing else is recorded.
pub fn is_partial_name(dir: &str) -> bool {
    dir.strip_prefix(".ringdrop-")
        .and_then(|r| r.strip_suffix(".partial"))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Host {
    pub fn new(conn: OwnedFd, dir: String, uid: u32) -> Self {
        Self { conn, dir, uid }
    }

    /// File `index` of the hosted directory, opened by the client for
    /// writing (created if missing) or reading (`None`: never written).
    /// Only a regular file is taken. Blocking; the socket's receive
    /// timeout bounds the wait.
    pub fn open(&self, index: usize, write: bool) -> std::io::Result<Option<File>> {
        let index = u32::try_from(index)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "file index"))?;
        let lost = |e: std::io::Error| std::io::Error::other(HostLost(e));
        handoff::send_open(self.conn.as_raw_fd(), index, write).map_err(lost)?;
        let other = |why: String| lost(std::io::Error::other(why));
        // A signal cuts a receive with a timeout short: ask the socket again.
        let answer = loop {
            match handoff::recv_item(self.conn.as_raw_fd()) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.map_err(lost)?,
            }
        };
        match answer {
            Item::File { fd, .. } => {
                let file = File::from(fd);
                if !file.metadata()?.is_file() {
                    return Err(other(
                        "the hosting client sent something else than a file".into(),
                    ));
                }
                Ok(Some(file))
            }
            Item::Empty if !write => Ok(None),
            Item::Refused(why) => Err(other(format!(
                "the hosting client cannot open file {index}: {why}"
            ))),
            _ => Err(other("the hosting client answered out of turn".into())),
        }
    }
}

/// Hosts offered for transfers, until their workers take them; cheap to
/// clone.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    offered: Arc<Mutex<HashMap<u64, Host>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Hosts {
    /// `host` hosts transfer `id` (replacing an earlier offer); false
    /// (and the offer dropped) when too many wait already.
    pub fn attach(&self, id: u64, host: Host) -> bool {
        let Ok(mut offered) = self.offered.lock() else {
            return false;
        };
        offered.remove(&id);
        let theirs = offered.values().filter(|h| h.uid == host.uid).count();
        if theirs >= OFFERED_PER_USER || offered.len() >= OFFERED_MAX {
            return false;
        }
        offered.insert(id, host);
        drop(offered);
        self.arrived.notify_waiters();
        true
    }

    /// The host offered for `id`, if any.
    pub fn take(&self, id: u64) -> Option<Host> {
        self.offered.lock().ok()?.remove(&id)
    }

    /// Forgets an offer (its transfer ended).
    pub fn drop_offer(&self, id: u64) {
        self.take(id);
    }

    /// Waits up to `within` for a host of `id` to be offered.
    pub async fn wait(&self, id: u64, within: Duration) -> Option<Host> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            if let Some(h) = self.take(id) {
                return Some(h);
            }
            if tokio::time::timeout_at(until, arrived).await.is_err() {
                return self.take(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_partial_directory_name_is_taken() {
        assert!(is_partial_name(".ringdrop-0123456789abcdef.partial"));
        for bad in [
            "",
            "..",
            "/etc",
            ".ringdrop-0123456789abcdef.partial/x",
            ".ringdrop-../../../x.partial",
            ".ringdrop-0123456789abcdeg.partial",
        ] {
            assert!(!is_partial_name(bad), "{bad}");
        }
    }
}
