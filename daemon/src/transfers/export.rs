//! Export: places a verified collection at the destination, as planned by
//! [`super::plan`]. Every file is first staged under a temporary name next
//! to its final place, then all are made durable (one `fsync` each, or one
//! `syncfs` for many files), then renamed (atomic, never over a file that
//! appeared meanwhile unless `force`); on failure everything this export
//! created is removed again.
//!
//! Staging is always a copy by the store (`ExportMode::Copy`, a reflink
//! where the filesystem has them). A hard link to the store's file (tried:
//! no second write) leaves the store sharing an inode with the user's file
//! until its next GC, and overwriting the download in place (`>` in a
//! shell) then corrupts the store's copy of that hash; `TryReference`
//! records the temporary name in the store, which is gone after the
//! rename.
//!
//! Data the store did not download itself (it may refer to a shared file)
//! is re-hashed before it is renamed into place.

use std::{
    collections::BTreeSet,
    ffi::CString,
    fs,
    os::{
        fd::AsRawFd,
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
    sync::Mutex,
};

use futures::{StreamExt, TryStreamExt};
use iroh_blobs::api::Store;

use super::plan::{io, same_content, Entry, ExportError, Plan};

/// Undo log: what this export created. Dropped without `commit` (an
/// error, or the transfer was paused or cancelled mid-export), it removes
/// all of it again.
#[derive(Default)]
struct Created {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    /// Temporary names in plan order; the first `renamed` are in place.
    temps: Vec<PathBuf>,
    renamed: usize,
    committed: bool,
}

impl Created {
    fn mkdirs(&mut self, dir: &Path) -> Result<(), ExportError> {
        let mut missing = Vec::new();
        let mut p = dir;
        while !p.exists() {
            missing.push(p.to_path_buf());
            match p.parent() {
                Some(parent) => p = parent,
                None => break,
            }
        }
        for d in missing.into_iter().rev() {
            fs::create_dir(&d).map_err(io(&d))?;
            self.dirs.push(d);
        }
        Ok(())
    }

    fn commit(mut self) -> Vec<PathBuf> {
        self.committed = true;
        std::mem::take(&mut self.files)
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for t in &self.temps[self.renamed..] {
            fs::remove_file(t).ok();
        }
        for f in self.files.iter().rev() {
            fs::remove_file(f).ok();
        }
        for d in self.dirs.iter().rev() {
            fs::remove_dir(d).ok();
        }
    }
}

fn temp_path(final_path: &Path, tag: u64) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Keep the temp name short enough for NAME_MAX.
    let short: String = name.chars().take(180).collect();
    final_path.with_file_name(format!(".{short}.rdrop-{tag}.part"))
}

fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Renames `tmp` to `path` atomically; without `force` it never replaces a
/// file that appeared there meanwhile (renameat2 RENAME_NOREPLACE).
fn rename_into_place(tmp: &Path, path: &Path, force: bool) -> Result<(), ExportError> {
    if force {
        return fs::rename(tmp, path).map_err(io(path));
    }
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|e| ExportError::Io {
            path: p.to_path_buf(),
            msg: e.to_string(),
        })
    };
    let (from, to) = (c(tmp)?, c(path)?);
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them
    // like rename(2) would.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == std::io::ErrorKind::AlreadyExists {
        return Err(ExportError::Exists(path.to_path_buf()));
    }
    Err(io(path)(err))
}

/// Files staged at once: the store answers many small exports faster side
/// by side than one after another.
const STAGE_AT_ONCE: usize = 16;

/// Dirty bytes of a staged file handed to writeback at once, so that the
/// final `fsync` finds most of the file on its way to disk: measured on a
/// GiB, copy plus `fsync` went from ~2 s to ~1.3-1.7 s, about the disk's
/// own write time.
const WRITEBACK_EVERY: u64 = 16 << 20;

/// Starts writeback of `file`'s bytes `from..to` without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a head start for the
/// `fsync` that follows, so a failure is ignored: that `fsync` reports it.
fn start_writeback(file: &fs::File, from: u64, to: u64) {
    // SAFETY: plain syscall on an open file descriptor.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            to.saturating_sub(from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Puts one file's data under its temporary name `tmp`: a copy by the
/// store (a reflink where the filesystem has them), handed to writeback
/// as the store reports its progress.
async fn stage(store: &Store, entry: &Entry, tmp: &Path) -> Result<(), ExportError> {
    use iroh_blobs::api::proto::ExportProgressItem;
    let failed = |msg: String| ExportError::Store {
        hash: entry.hash,
        msg,
    };
    let mut progress = store
        .export_with_opts(iroh_blobs::api::blobs::ExportOptions {
            hash: entry.hash,
            mode: iroh_blobs::api::blobs::ExportMode::Copy,
            target: tmp.to_path_buf(),
        })
        .stream()
        .await;
    // Our own handle on `tmp`, opened at the first progress report (the
    // store has created the file by then), and how far it was handed on.
    let mut written: Option<(fs::File, u64)> = None;
    while let Some(item) = progress.next().await {
        match item {
            // The bytes before `offset` are written.
            ExportProgressItem::CopyProgress(offset) => {
                if written.is_none() {
                    written = fs::OpenOptions::new()
                        .write(true)
                        .open(tmp)
                        .ok()
                        .map(|f| (f, 0));
                }
                if let Some((file, flushed)) = &mut written {
                    if offset >= *flushed + WRITEBACK_EVERY {
                        start_writeback(file, *flushed, offset);
                        *flushed = offset;
                    }
                }
            }
            ExportProgressItem::Done => return Ok(()),
            ExportProgressItem::Error(e) => return Err(failed(e.to_string())),
            ExportProgressItem::Size(_) => {}
        }
    }
    Err(failed("the store ended the export without a result".into()))
}

/// Above this many files one `syncfs` per filesystem replaces a `fsync`
/// per file (a journal commit each: seconds for thousands of small files).
const FSYNC_EACH_MAX: usize = 16;

/// Makes the staged files' data durable before any is renamed into place.
fn sync_staged(temps: &[PathBuf]) -> Result<(), ExportError> {
    if temps.len() <= FSYNC_EACH_MAX {
        for t in temps {
            fs::File::open(t)
                .and_then(|f| f.sync_all())
                .map_err(io(t))?;
        }
        return Ok(());
    }
    let mut devices = BTreeSet::new();
    for t in temps {
        let dev = fs::metadata(t).map_err(io(t))?.dev();
        if devices.insert(dev) {
            let f = fs::File::open(t).map_err(io(t))?;
            // SAFETY: f is an open file descriptor for the duration of the call.
            if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                return Err(io(t)(std::io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

/// Writes every planned file; all or nothing. Returns every file of the
/// content at the destination (written now or already present). `verify`
/// re-hashes each file before it is renamed into place: data the store did
/// not download itself may be a reference to a file someone changed since,
/// and no unverified byte may reach a destination.
pub async fn export(
    store: &Store,
    plan: &Plan,
    tag: u64,
    verify: bool,
) -> Result<Vec<PathBuf>, ExportError> {
    let mut log = Created::default();
    for (_, path) in &plan.items {
        log.mkdirs(path.parent().unwrap_or(Path::new("/")))?;
        let tmp = temp_path(path, tag);
        fs::remove_file(&tmp).ok();
        log.temps.push(tmp);
    }
    // Every copy runs to its end, failed or not, before the undo log may
    // remove temporary files: none is written after it ran.
    let failed: Mutex<Option<ExportError>> = Mutex::new(None);
    futures::stream::iter(plan.items.iter().zip(&log.temps).map(Ok))
        .try_for_each_concurrent(STAGE_AT_ONCE, |((entry, _), tmp)| {
            let failed = &failed;
            async move {
                if let Err(e) = stage(store, entry, tmp).await {
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
                Ok::<(), ExportError>(())
            }
        })
        .await?;
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    sync_staged(&log.temps)?;
    let mut parents = BTreeSet::new();
    for (i, (entry, path)) in plan.items.iter().enumerate() {
        let tmp = &log.temps[i];
        if verify && !same_content(tmp, &entry.hash) {
            return Err(ExportError::Store {
                hash: entry.hash,
                msg: format!(
                    "the local copy of {:?} no longer matches its hash (a shared file it refers to was changed since sharing); nothing was written: share that file again or unshare it, then retry",
                    entry.name
                ),
            });
        }
        rename_into_place(tmp, path, plan.force)?;
        log.renamed += 1;
        log.files.push(path.to_path_buf());
        if let Some(p) = path.parent() {
            parents.insert(p.to_path_buf());
        }
    }
    // Make the renames durable before the transfer is reported complete.
    for dir in &parents {
        sync_dir(dir)?;
    }
    let mut files = plan.present.clone();
    files.append(&mut log.commit());
    Ok(files)
}
