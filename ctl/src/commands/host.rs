//! Hosting a fetch's files (`ringdrop_proto::handoff`): for a system
//! daemon that runs as another user, this client makes a private directory
//! beside the destination as this user and opens its files for the daemon
//! as it asks, so the daemon writes the verified data once, where it will
//! be placed, with nothing but descriptors this user opened. Placing is
//! then a rename (`place::place`), not a copy.
//!
//! The hosting lasts as long as a thread here answers the daemon: when the
//! daemon closes the connection (its attempt ended, or it restarted) the
//! thread offers the directory again for the transfer, until the client
//! sees the transfer end.

use std::{
    fs,
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ringdrop_proto::{
    handoff::{self, Item, TOKEN_LEN},
    place::{self, PartialDir},
};

/// How long the directory is offered again after the daemon went away.
const REOFFER_FOR: Duration = Duration::from_secs(120);
/// How long the daemon has to answer an offer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A private directory offered to the daemon, and the thread answering it.
#[derive(Debug)]
pub struct Hosting {
    dir: Arc<PartialDir>,
    /// The transfer, once the daemon named it (0 before).
    id: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// Offers a private directory beside `dest` for a fetch about to start:
/// the token its `Fetch` request names and the hosting, or `None` (not a
/// daemon of another user's, or the directory cannot be made: the daemon
/// then writes in its data dir and the files are copied).
pub fn offer(socket: &Path, dest: &Path) -> Option<(Vec<u8>, Hosting)> {
    use std::os::unix::fs::MetadataExt;
    let hsock = handoff::socket_for(socket);
    let meta = fs::symlink_metadata(&hsock).ok()?;
    if meta.uid() == super::place::my_uid() {
        return None;
    }
    let dir = PartialDir::create(&place::root_of(dest)).ok()?;
    let offered = (|| {
        let conn = handoff::connect(&hsock)?;
        handoff::send_host(conn.as_raw_fd(), 0, &dir.name())?;
        let token = handoff::recv_bytes(conn.as_raw_fd(), 64)?;
        Ok::<_, std::io::Error>((conn, token))
    })();
    let (conn, token) = match offered {
        Ok((conn, token)) if token.len() == TOKEN_LEN => (conn, token),
        _ => {
            dir.remove().ok();
            return None;
        }
    };
    let hosting = Hosting {
        dir: Arc::new(dir),
        id: Default::default(),
        stop: Default::default(),
    };
    let (dir, id, stop) = (
        hosting.dir.clone(),
        hosting.id.clone(),
        hosting.stop.clone(),
    );
    let spawned = std::thread::Builder::new()
        .name("rdrop-host".into())
        .spawn(move || host(conn, &hsock, &dir, &id, &stop));
    spawned.is_ok().then_some((token, hosting))
}

impl Hosting {
    /// The daemon started the fetch as transfer `id`.
    pub fn started(&self, id: u64) {
        self.id.store(id, Ordering::SeqCst);
    }

    /// The transfer ended (placed, failed, cancelled or never hosted):
    /// the thread stops offering, and the directory and what is left in
    /// it are removed.
    pub fn end(self) {
        self.stop.store(true, Ordering::SeqCst);
        match Arc::try_unwrap(self.dir) {
            Ok(dir) => {
                dir.remove().ok();
            }
            // The thread still holds it: it is removed by path.
            Err(dir) => {
                fs::remove_dir_all(dir.path()).ok();
            }
        }
    }

    /// The client stops following (interrupted): the daemon keeps
    /// writing into what it holds; the directory stays for `transfers
    /// wait` to place from.
    pub fn leave(self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Answers the daemon's asks on `conn`, offering the directory again
/// whenever the daemon closes it, until the client stops (the transfer
/// ended) or the daemon takes no offer for [`REOFFER_FOR`].
fn host(conn: OwnedFd, hsock: &Path, dir: &PartialDir, id: &AtomicU64, stop: &AtomicBool) {
    let mut conn = Some(conn);
    let mut away_since: Option<Instant> = None;
    let mut pause = Duration::from_millis(300);
    while !stop.load(Ordering::SeqCst) {
        if let Some(c) = conn.take() {
            answer(&c, dir);
            away_since = None;
            continue;
        }
        let transfer = id.load(Ordering::SeqCst);
        let since = *away_since.get_or_insert_with(Instant::now);
        if transfer == 0 || since.elapsed() > REOFFER_FOR {
            return;
        }
        std::thread::sleep(pause);
        // Refused or not back yet: offered again until this client stops
        // (it knows when the transfer ended) or the daemon stays away.
        // A refusal is no proof the transfer is done: a daemon shutting
        // down refuses too, and the restarted one needs the offer.
        match reoffer(hsock, transfer, dir) {
            Ok(Some(c)) => conn = Some(c),
            Ok(None) => pause = Duration::from_secs(1),
            Err(_) => pause = Duration::from_millis(300),
        }
    }
}

/// Offers `dir` again for transfer `id`: the connection if taken, `None`
/// if the daemon refused it.
fn reoffer(hsock: &Path, id: u64, dir: &PartialDir) -> std::io::Result<Option<OwnedFd>> {
    let conn = handoff::connect(hsock)?;
    handoff::send_host(conn.as_raw_fd(), id, &dir.name())?;
    // A daemon on its way out may take the connection and never answer.
    handoff::recv_within(conn.as_raw_fd(), Some(ANSWER_WITHIN))?;
    let answer = handoff::recv_item(conn.as_raw_fd())?;
    handoff::recv_within(conn.as_raw_fd(), None)?;
    match answer {
        Item::Done => Ok(Some(conn)),
        _ => Ok(None),
    }
}

/// Opens what the daemon asks for until it hangs up.
fn answer(conn: &OwnedFd, dir: &PartialDir) {
    loop {
        let (index, write) = match handoff::recv_item(conn.as_raw_fd()) {
            Ok(Item::Open { index, write }) => (index, write),
            // A signal cut the wait short: wait again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            _ => return,
        };
        let opened = if write {
            dir.file(index as usize).map(Some)
        } else {
            dir.open_read(index as usize)
        };
        let sent = match &opened {
            Ok(Some(f)) => handoff::send_reply(conn.as_raw_fd(), Ok(Some(f.as_raw_fd()))),
            Ok(None) => handoff::send_reply(conn.as_raw_fd(), Ok(None)),
            Err(e) => handoff::send_reply(conn.as_raw_fd(), Err(&e.to_string())),
        };
        if sent.is_err() {
            return;
        }
    }
}
