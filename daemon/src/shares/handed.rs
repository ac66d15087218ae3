//! Files an operator hands over (`ringdrop_proto::handoff`): the system
//! daemon reads an operator's files only through descriptors that the
//! operator's own `ringdropctl` opened, so a share is exactly what that
//! user could read (ACLs, groups and all), and no path is reopened, so no
//! link swapped in later leads anywhere. They wait here, under a token,
//! for the `Share` request of the same user.

use std::{
    collections::HashMap,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use ringdrop_proto::handoff::{self, Item, MAX_FILES, TOKEN_LEN};
use tokio::io::unix::AsyncFd;
use tracing::warn;

use crate::{
    authority::{PeerIdentity, PeerPolicy},
    tasks::Tasks,
    transfers::hosted::Host,
};

/// How long handed files wait for their `Share` request.
const WAIT_FOR_SHARE: Duration = Duration::from_secs(60);
/// Handoffs waiting at once, in all and per user.
const PENDING_MAX: usize = 32;
const PENDING_PER_USER: usize = 4;
/// How long a client may take between two messages.
const MESSAGE_WITHIN: Duration = Duration::from_secs(10);
/// Handoffs being received at once (each holds a blocking thread).
const RECEIVING_MAX: usize = 4;
/// Descriptors held for handoffs at once, received and waiting (the unit
/// allows 65,536 in all; transfers and the store need the rest).
const HELD_MAX: usize = 20_000;

/// A file an operator handed over: its name in the collection and the
/// descriptor its client opened.
#[derive(Debug)]
pub struct HandedFile {
    pub name: String,
    pub file: std::fs::File,
}

/// Files handed over together; the descriptors they hold count against
/// [`HELD_MAX`] until this is dropped (after the share imported them).
#[derive(Debug)]
pub struct HandedFiles {
    pub files: Vec<HandedFile>,
    held: usize,
    budget: Arc<AtomicUsize>,
}

impl HandedFiles {
    /// Counts one more descriptor against the budget, or says no.
    fn hold(&mut self, file: HandedFile) -> Result<(), String> {
        let before = self.budget.fetch_add(1, Ordering::AcqRel);
        self.held += 1;
        if before >= HELD_MAX {
            return Err(format!(
                "ringdropd holds {HELD_MAX} handed files already; try again when other shares are done"
            ));
        }
        self.files.push(file);
        Ok(())
    }
}

impl Drop for HandedFiles {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.held, Ordering::AcqRel);
    }
}

struct Pending {
    uid: u32,
    offer: Offer,
    at: Instant,
}

/// What a token stands for: files to share, or a directory to fetch into.
enum Offer {
    Files(HandedFiles),
    Host(Host),
}

/// Takes a client's offer to host the files of its transfer `id` again
/// (after a daemon restart), if user `uid` owns it; the facade's rule.
pub type Rehost = Arc<dyn Fn(u32, u64, Host) -> Result<(), String> + Send + Sync>;

/// Opens file `index` of `ready` transfer `id` for user `uid`, if that
/// user owns it (`None`: a file of no bytes); the facade's rule.
pub type ReadyFiles =
    Arc<dyn Fn(u32, u64, u32) -> Result<Option<std::fs::File>, String> + Send + Sync>;

/// Answers a transfer's owner asking for its verified files one at a time
/// (the first ask already read), until it hangs up.
fn serve_reads(
    conn: &OwnedFd,
    peer: &PeerIdentity,
    reader: &ReadyFiles,
    mut id: u64,
    mut index: u32,
) -> Result<(), String> {
    loop {
        let opened = reader(peer.uid, id, index);
        let sent = match &opened {
            Ok(Some(f)) => handoff::send_reply(conn.as_raw_fd(), Ok(Some(f.as_raw_fd()))),
            Ok(None) => handoff::send_reply(conn.as_raw_fd(), Ok(None)),
            Err(why) => handoff::send_reply(conn.as_raw_fd(), Err(why)),
        };
        sent.map_err(|e| e.to_string())?;
        match handoff::recv_item(conn.as_raw_fd()) {
            Ok(Item::Read { id: i, index: n }) => (id, index) = (i, n),
            Ok(_) => return Err("unexpected message".into()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Handoffs waiting for their `Share` request; cheap to clone.
#[derive(Clone)]
pub struct Handoffs {
    pending: Arc<Mutex<HashMap<[u8; TOKEN_LEN], Pending>>>,
    held: Arc<AtomicUsize>,
    receiving: Arc<tokio::sync::Semaphore>,
}

impl Default for Handoffs {
    fn default() -> Self {
        Self {
            pending: Default::default(),
            held: Default::default(),
            receiving: Arc::new(tokio::sync::Semaphore::new(RECEIVING_MAX)),
        }
    }
}

impl std::fmt::Debug for Handoffs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handoffs").finish_non_exhaustive()
    }
}

impl Handoffs {
    fn put(&self, uid: u32, offer: Offer) -> Result<[u8; TOKEN_LEN], String> {
        let mut pending = self.pending.lock().map_err(|_| "poisoned".to_string())?;
        pending.retain(|_, p| p.at.elapsed() < WAIT_FOR_SHARE);
        if pending.len() >= PENDING_MAX
            || pending.values().filter(|p| p.uid == uid).count() >= PENDING_PER_USER
        {
            return Err("too many shares waiting to start; try again in a minute".into());
        }
        let token: [u8; TOKEN_LEN] = rand::random();
        pending.insert(
            token,
            Pending {
                uid,
                offer,
                at: Instant::now(),
            },
        );
        Ok(token)
    }

    /// What user `uid` (and no other) offered under `token`.
    fn take_offer(&self, token: &[u8], uid: u32) -> Option<Offer> {
        let token: [u8; TOKEN_LEN] = token.try_into().ok()?;
        let mut pending = self.pending.lock().ok()?;
        match pending.get(&token) {
            Some(p) if p.uid == uid && p.at.elapsed() < WAIT_FOR_SHARE => {
                pending.remove(&token).map(|p| p.offer)
            }
            _ => None,
        }
    }

    /// The files handed over under `token` by user `uid` (and no other).
    pub fn take(&self, token: &[u8], uid: u32) -> Option<HandedFiles> {
        match self.take_offer(token, uid)? {
            Offer::Files(files) => Some(files),
            Offer::Host(_) => None,
        }
    }

    /// The directory user `uid` offered under `token` to fetch into.
    pub fn take_host(&self, token: &[u8], uid: u32) -> Option<Host> {
        match self.take_offer(token, uid)? {
            Offer::Host(host) => Some(host),
            Offer::Files(_) => None,
        }
    }
}

/// Serves the handoff socket at `path` (mode 0660 for `group`, else 0600)
/// as a task of `tasks` until they stop; it is removed then.
pub fn serve(
    path: PathBuf,
    group: Option<u32>,
    policy: PeerPolicy,
    handoffs: Handoffs,
    reader: ReadyFiles,
    rehost: Rehost,
    tasks: &Tasks,
) -> std::io::Result<()> {
    let listener = bind(&path, group)?;
    // SAFETY: the listener is an OwnedFd this AsyncFd owns from here on;
    // nothing else closes or registers it.
    let listener = unsafe { AsyncFd::register(listener) }.map_err(std::io::Error::from)?;
    let receivers = tasks.clone();
    tasks.spawn("handoff-socket", async move {
        let serving = Serving {
            path,
            open: Default::default(),
        };
        let mut received = 0u64;
        while let Some(conn) = accept(&listener).await {
            // A few at once; more are closed as they come (the client says
            // so and can try again).
            let Ok(permit) = handoffs.receiving.clone().try_acquire_owned() else {
                warn!("file handoff refused: {RECEIVING_MAX} are being received already");
                continue;
            };
            received += 1;
            let key = received;
            serving.hold(key, &conn);
            let open = serving.open.clone();
            let (policy, handoffs) = (policy.clone(), handoffs.clone());
            let (reader, rehost) = (reader.clone(), rehost.clone());
            receivers.spawn_blocking("handoff-receive", move || {
                if let Err(e) = receive(conn, &policy, &handoffs, &reader, &rehost) {
                    warn!("file handoff refused: {e}");
                }
                if let Ok(mut open) = open.lock() {
                    open.remove(&key);
                }
                drop(permit);
            });
        }
    });
    Ok(())
}

/// The next connection on `listener`; `None` once it fails for good.
async fn accept(listener: &AsyncFd<OwnedFd>) -> Option<OwnedFd> {
    loop {
        let mut guard = listener.readable().await.ok()?;
        // SAFETY: accept4 on our listening socket; a returned descriptor is
        // owned at once.
        let fd = unsafe {
            libc::accept4(
                listener.get_ref().as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: fd was just returned by accept4 and is ours.
            return Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => guard.clear_ready(),
            std::io::ErrorKind::Interrupted => {}
            // Out of descriptors, say: not a busy loop.
            _ => {
                warn!("file handoff socket: accept failed: {e}");
                drop(guard);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The handoff socket being served. When its task ends (at shutdown it
/// is cancelled) the socket's path is removed and the connections still
/// being received are shut down, so their blocking reads end at once and
/// shutdown, which waits for them, never waits on a slow client.
struct Serving {
    path: PathBuf,
    /// Copies of the connections being received, by their number.
    open: Arc<Mutex<HashMap<u64, OwnedFd>>>,
}

impl Serving {
    /// Keeps a copy of `conn` until its receive ends.
    fn hold(&self, key: u64, conn: &OwnedFd) {
        if let (Ok(copy), Ok(mut open)) = (conn.try_clone(), self.open.lock()) {
            open.insert(key, copy);
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
        if let Ok(open) = self.open.lock() {
            for conn in open.values() {
                // SAFETY: shutdown(2) of a socket this map owns a copy of;
                // it ends the connection for every copy and closes none.
                unsafe { libc::shutdown(conn.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
    }
}

fn bind(path: &Path, group: Option<u32>) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    // A stale socket of an earlier run; the control socket's own checks
    // already made sure no other daemon serves here.
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        std::fs::remove_file(path)?;
    }
    let fd = handoff::listen(path)?;
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(if group.is_some() { 0o660 } else { 0o600 }),
    )?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(fd)
}

/// Reads one handoff: who sends it (from the socket), its files (each
/// name sanitised, each descriptor a regular file), then answers with a
/// token.
fn receive(
    conn: OwnedFd,
    policy: &PeerPolicy,
    handoffs: &Handoffs,
    reader: &ReadyFiles,
    rehost: &Rehost,
) -> Result<(), String> {
    let peer = PeerIdentity::of_fd(conn.as_raw_fd()).map_err(|e| e.to_string())?;
    policy.check(&peer)?;
    handoff::recv_within(conn.as_raw_fd(), Some(MESSAGE_WITHIN)).map_err(|e| e.to_string())?;
    let mut files = HandedFiles {
        files: Vec::new(),
        held: 0,
        budget: handoffs.held.clone(),
    };
    loop {
        match handoff::recv_item(conn.as_raw_fd()).map_err(|e| e.to_string())? {
            Item::Done => break,
            Item::File { name, fd } => {
                ringdrop_proto::place::sanitize(&name).map_err(|e| e.to_string())?;
                let file = std::fs::File::from(fd);
                let meta = file.metadata().map_err(|e| e.to_string())?;
                if !meta.is_file() {
                    return Err(format!("{name:?} is not a regular file"));
                }
                files.hold(HandedFile { name, file })?;
                if files.files.len() > MAX_FILES {
                    return Err(format!("more than {MAX_FILES} files in one share"));
                }
            }
            Item::Read { id, index } if files.files.is_empty() => {
                return serve_reads(&conn, &peer, reader, id, index);
            }
            Item::Host { id, dir } if files.files.is_empty() => {
                return offer_host(conn, peer.uid, id, dir, handoffs, rehost);
            }
            _ => return Err("unexpected message".into()),
        }
    }
    let token = handoffs.put(peer.uid, Offer::Files(files))?;
    handoff::send_bytes(conn.as_raw_fd(), &token).map_err(|e| e.to_string())
}

/// A client offers its private directory `dir` for the files of transfer
/// `id` (0: the fetch it is about to start: answered with a token).
fn offer_host(
    conn: OwnedFd,
    uid: u32,
    id: u64,
    dir: String,
    handoffs: &Handoffs,
    rehost: &Rehost,
) -> Result<(), String> {
    if !crate::transfers::hosted::is_partial_name(&dir) {
        return Err(format!(
            "{dir:?} is not the name of a private fetch directory"
        ));
    }
    if id == 0 {
        let reply = conn.try_clone().map_err(|e| e.to_string())?;
        let token = handoffs.put(uid, Offer::Host(Host::new(conn, dir, uid)))?;
        return handoff::send_bytes(reply.as_raw_fd(), &token).map_err(|e| e.to_string());
    }
    let reply = conn.try_clone().map_err(|e| e.to_string())?;
    match rehost(uid, id, Host::new(conn, dir, uid)) {
        Ok(()) => handoff::send_done(reply.as_raw_fd()).map_err(|e| e.to_string()),
        // The client offers again until it sees its transfer end: a
        // refusal here is routine (shutting down, already ready).
        Err(why) => {
            tracing::debug!(uid, id, "directory offered again, not taken: {why}");
            handoff::send_reply(reply.as_raw_fd(), Err(&why)).ok();
            Ok(())
        }
    }
}
