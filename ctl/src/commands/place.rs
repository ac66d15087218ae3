//! Placing the files of a transfer the daemon fetched for us (the system
//! service may not write our destination): they arrive over the control
//! socket, are checked against their hashes as they arrive, and are written
//! as this user with the same staged export the daemon uses
//! (`ringdrop_proto::place`): temporary names, durable, renamed without
//! overwrite, all or nothing.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use ringdrop_proto::{
    place::{self, stage, Entry, ExportError, Staging},
    v1::{self as pb, TransferState},
};

use crate::{client::Client, error::CliError, output::Out};

/// Whether this transfer's files are ours to place now.
pub fn ours_to_place(t: &pb::Transfer) -> bool {
    t.client_places && t.state == TransferState::Ready as i32
}

/// The uid this client runs as.
pub fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Becomes user `uid` for good: its primary group, its supplementary
/// groups (initgroups) and its uid, in that order, so the files of its
/// transfer are opened and written exactly as that user could. Only root
/// can; anyone else is told to run the command as that user.
pub fn become_user(uid: u32, id: u64) -> Result<(), CliError> {
    let name = place::user_name(uid);
    let refuse = |why: String| {
        CliError::failed(format!(
            "transfer {id} was started by user {name} (uid {uid}) and its files are theirs: {why}; run `ringdropctl transfers wait {id}` as that user"
        ))
    };
    if my_uid() != 0 {
        return Err(refuse("only they may place them".into()));
    }
    let Ok(Some((cname, gid))) = place::user_entry(uid) else {
        return Err(refuse(format!(
            "uid {uid} has no user entry, so its groups are unknown"
        )));
    };
    // SAFETY: plain system calls on values we own; each result is checked.
    let ok = unsafe {
        libc::initgroups(cname.as_ptr(), gid) == 0
            && libc::setgid(gid) == 0
            && libc::setuid(uid) == 0
    };
    if !ok || my_uid() != uid {
        return Err(refuse(format!(
            "cannot become that user: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// Why this user cannot write `dest`, if they cannot (sent with the fetch,
/// so the daemon refuses it before any byte moves when the files are ours
/// to place).
pub fn cannot_write(dest: &Path) -> Option<String> {
    place::check_writable(dest)
        .err()
        .map(|(dir, e)| format!("{}: {e}", dir.display()))
}

fn export_err(e: ExportError) -> CliError {
    CliError::failed(format!("{e}"))
}

/// One file on its way to disk: its temporary file and the hash so far.
struct Incoming {
    index: u32,
    file: fs::File,
    name: String,
    hasher: blake3::Hasher,
    written: u64,
    flushed: u64,
}

impl Incoming {
    fn new(index: u32, file: fs::File, name: &str) -> Self {
        Self {
            index,
            file,
            name: name.to_string(),
            hasher: blake3::Hasher::new(),
            written: 0,
            flushed: 0,
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), CliError> {
        if offset != self.written {
            return Err(CliError::failed(format!(
                "the daemon sent {:?} out of order (offset {offset}, expected {})",
                self.name, self.written
            )));
        }
        self.file
            .write_all(data)
            .map_err(|e| CliError::failed(format!("cannot write {:?}: {e}", self.name)))?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        if self.written >= self.flushed + stage::WRITEBACK_EVERY {
            stage::start_writeback(&self.file, self.flushed, self.written);
            self.flushed = self.written;
        }
        Ok(())
    }

    /// The whole file arrived and matches its hash.
    fn check(&self, entry: &Entry, id: u64) -> Result<(), CliError> {
        if self.written != entry.size || self.hasher.finalize().as_bytes() != &entry.hash {
            return Err(CliError::failed(format!(
                "{:?} arrived damaged ({} of {} bytes, or the wrong hash); nothing was written: retry with `ringdropctl transfers wait {id}`",
                entry.name, self.written, entry.size
            )));
        }
        Ok(())
    }
}

/// Receives the bytes of the files of ready transfer `id` over the
/// control socket and writes them into their staged files, each checked
/// against its hash as it arrives (daemons that hand no descriptors).
async fn stream_from_daemon(
    c: &Client,
    id: u64,
    files: &[Entry],
    order: &[u32],
    staged: &HashMap<u32, usize>,
    staging: &Staging,
    bar: &indicatif::ProgressBar,
) -> Result<(), CliError> {
    let mut chunks = c
        .transfers()
        .read_transfer_files(pb::ReadTransferFilesRequest {
            id,
            files: order.to_vec(),
        })
        .await?
        .into_inner();
    let mut next = order.iter();
    let mut current: Option<Incoming> = None;
    let mut done = 0u64;
    while let Some(chunk) = chunks.message().await? {
        if current.as_ref().map(|f| f.index) != Some(chunk.file) {
            if let Some(f) = current.take() {
                f.check(&files[f.index as usize], id)?;
            }
            if next.next() != Some(&chunk.file) {
                return Err(CliError::failed(format!(
                    "the daemon sent file {} out of order",
                    chunk.file
                )));
            }
            let file = staging.create(staged[&chunk.file]).map_err(export_err)?;
            current = Some(Incoming::new(
                chunk.file,
                file,
                &files[chunk.file as usize].name,
            ));
        }
        if let Some(f) = current.as_mut() {
            f.write(chunk.offset, &chunk.data)?;
        }
        done += chunk.data.len() as u64;
        bar.set_position(done);
    }
    if let Some(f) = current.take() {
        f.check(&files[f.index as usize], id)?;
    }
    if next.next().is_some() {
        return Err(CliError::failed(format!(
            "the daemon ended the transfer of the files early; nothing was written: retry with `ringdropctl transfers wait {id}`"
        )));
    }
    Ok(())
}

/// Copies the files of ready transfer `id` from read-only descriptors of
/// the daemon's verified incoming files (`ringdrop_proto::handoff`), in
/// the kernel (`copy_file_range`), into their staged files: no bytes
/// cross the control socket and none are hashed again (the daemon
/// verified every chunk against the content hash as it arrived). False
/// when the daemon cannot hand them over (nothing was written then).
fn copy_from_daemon(
    socket: &Path,
    id: u64,
    files: &[Entry],
    order: &[u32],
    staged: &HashMap<u32, usize>,
    staging: &Staging,
    bar: &indicatif::ProgressBar,
) -> Result<bool, CliError> {
    use ringdrop_proto::handoff::{self, Item};
    use std::os::fd::AsRawFd;
    let Ok(sock) = handoff::connect(&handoff::socket_for(socket)) else {
        return Ok(false);
    };
    let lost = |e: std::io::Error| CliError::failed(format!("ringdropd's file socket: {e}"));
    let mut done = 0u64;
    for (n, &index) in order.iter().enumerate() {
        let entry = &files[index as usize];
        handoff::send_read(sock.as_raw_fd(), id, index).map_err(lost)?;
        let source = match handoff::recv_item(sock.as_raw_fd()).map_err(lost)? {
            Item::File { fd, .. } => Some(fs::File::from(fd)),
            Item::Empty if entry.size == 0 => None,
            // The first file says whether this daemon hands files over.
            Item::Refused(_) if n == 0 => return Ok(false),
            Item::Refused(why) => return Err(CliError::failed(why)),
            _ => {
                return Err(CliError::failed(format!(
                    "ringdropd sent no file for {:?}",
                    entry.name
                )))
            }
        };
        let target = staging.create(staged[&index]).map_err(export_err)?;
        if let Some(source) = source {
            copy_range(&source, &target, entry)?;
        }
        done += entry.size;
        bar.set_position(done);
    }
    Ok(true)
}

/// Copies `entry.size` bytes of `from` into `to`, in the kernel where it
/// can (a reflink on filesystems that share extents).
fn copy_range(from: &fs::File, to: &fs::File, entry: &Entry) -> Result<(), CliError> {
    use std::os::fd::AsRawFd;
    let fail = |e: std::io::Error| CliError::failed(format!("cannot write {:?}: {e}", entry.name));
    let mut copied = 0u64;
    let mut flushed = 0u64;
    while copied < entry.size {
        let want = (entry.size - copied).min(stage::WRITEBACK_EVERY) as usize;
        let (mut off_in, mut off_out) = (copied as i64, copied as i64);
        // SAFETY: both descriptors are open; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        let n = if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                // No kernel copy between these two: read and write.
                Some(libc::EXDEV)
                | Some(libc::ENOSYS)
                | Some(libc::EINVAL)
                | Some(libc::EOPNOTSUPP) => copy_by_hand(from, to, copied, want).map_err(fail)?,
                _ => return Err(fail(e)),
            }
        } else {
            n as usize
        };
        if n == 0 {
            return Err(CliError::failed(format!(
                "{:?} ended early in ringdropd's incoming files ({copied} of {} bytes); nothing was written: retry with `ringdropctl transfers wait`",
                entry.name, entry.size
            )));
        }
        copied += n as u64;
        if copied >= flushed + stage::WRITEBACK_EVERY {
            stage::start_writeback(to, flushed, copied);
            flushed = copied;
        }
    }
    Ok(())
}

/// One piece of a copy through user space, at `at`.
fn copy_by_hand(from: &fs::File, to: &fs::File, at: u64, len: usize) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len.min(1 << 20)];
    let n = from.read_at(&mut buf, at)?;
    to.write_all_at(&buf[..n], at)?;
    Ok(n)
}

/// Receives a `ready` transfer's files and places them at its destination
/// as this user; the daemon then marks it completed. Returns the final row.
pub async fn place(c: &Client, t: &pb::Transfer, out: &Out) -> Result<pb::Transfer, CliError> {
    let id = t.id;
    let listed = c
        .transfers()
        .list_transfer_files(pb::ListTransferFilesRequest { id })
        .await?
        .into_inner();
    let files: Vec<Entry> = listed
        .files
        .into_iter()
        .map(|f| {
            let hash: [u8; 32] = f.hash.as_slice().try_into().map_err(|_| {
                CliError::failed(format!("the daemon sent a bad hash for {:?}", f.name))
            })?;
            Ok(Entry {
                name: f.name,
                hash,
                size: f.size,
            })
        })
        .collect::<Result<_, CliError>>()?;
    let dest = PathBuf::from(&t.dest);
    // The same container name the daemon would use (transfer name, or hash).
    let container = if t.name.is_empty() { &t.hash } else { &t.name };
    let plan = place::plan(&dest, &files, t.force, container).map_err(export_err)?;
    let placed = if listed.hosted_dir.is_empty() {
        copy_and_place(c, t, out, plan, &files).await?
    } else {
        adopt_and_place(&dest, &listed.hosted_dir, plan, &files).await?
    };
    let t = c
        .transfers()
        .finish_transfer(pb::FinishTransferRequest {
            id,
            files: placed.iter().map(|p| p.display().to_string()).collect(),
        })
        .await?
        .into_inner();
    Ok(t)
}

/// Places files the daemon wrote into our own private directory `name`
/// beside `dest` (hosted): renamed into place, then the directory goes.
async fn adopt_and_place(
    dest: &Path,
    name: &str,
    plan: place::Plan,
    files: &[Entry],
) -> Result<Vec<PathBuf>, CliError> {
    // Ours only if still a private directory of this user's.
    let root = place::root_of(dest);
    let Some(dir) = place::PartialDir::open(&root, name).ok().flatten() else {
        return Err(CliError::failed(format!(
            "the fetched files were in {}, which is gone or no longer private: cancel the transfer and fetch again",
            root.join(name).display()
        )));
    };
    let index: HashMap<String, usize> = files
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    tokio::task::spawn_blocking(move || {
        let mut staging = Staging::prepare(plan)?;
        let items: Vec<(usize, String)> =
            staging.items().map(|(i, e)| (i, e.name.clone())).collect();
        for (i, name) in items {
            let file = *index
                .get(&name)
                .ok_or_else(|| ExportError::UnsafeName(name.clone()))?;
            staging.adopt(i, &dir, file)?;
        }
        // Verified by the daemon as it wrote them; synced by it too.
        let placed = staging.finish(false)?;
        dir.remove().ok();
        Ok(placed)
    })
    .await
    .map_err(|e| CliError::failed(e.to_string()))?
    .map_err(export_err)
}

/// Copies the files from the daemon's data dir (or over the socket) into
/// a staging of ours and places them.
async fn copy_and_place(
    c: &Client,
    t: &pb::Transfer,
    out: &Out,
    plan: place::Plan,
    files: &[Entry],
) -> Result<Vec<PathBuf>, CliError> {
    let (id, dest) = (t.id, PathBuf::from(&t.dest));
    let need: u64 = plan.items.iter().map(|(e, _)| e.size).sum();
    place::check_space(&dest, need).map_err(export_err)?;
    let staging = Staging::prepare(plan).map_err(export_err)?;
    let index: HashMap<&str, u32> = files
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i as u32))
        .collect();
    // The daemon's file index -> the staging's item index.
    let mut order = Vec::new();
    let mut staged = HashMap::new();
    for (i, entry) in staging.items() {
        let file = index[entry.name.as_str()];
        order.push(file);
        staged.insert(file, i);
    }
    let bar = out.bar(need, format!("placing {}", crate::output::clean(&t.name)));
    // First the kernel's copy from descriptors of the daemon's verified
    // files; the bytes over the control socket where the daemon cannot
    // hand them over (no handoff socket, or an older ringdropd's store).
    let (staging, copied) = {
        let (socket, files, order, staged, bar) = (
            c.socket.clone(),
            files.to_vec(),
            order.clone(),
            staged.clone(),
            bar.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let copied = copy_from_daemon(&socket, id, &files, &order, &staged, &staging, &bar);
            (staging, copied)
        })
        .await
        .map_err(|e| CliError::failed(e.to_string()))?
    };
    if !copied? && !order.is_empty() {
        stream_from_daemon(c, id, files, &order, &staged, &staging, &bar).await?;
    }
    bar.finish_and_clear();
    // Hashes were checked on the way in; fsync, rename and directory sync
    // block.
    tokio::task::spawn_blocking(move || staging.finish(false))
        .await
        .map_err(|e| CliError::failed(e.to_string()))?
        .map_err(export_err)
}
