//! Export: places a verified collection at the destination, as planned by
//! [`super::plan`]. Each file is written under a temporary name next to its
//! final place, flushed, then renamed (atomic); on failure everything this
//! export created is removed again. Existing files are only replaced with
//! `force`.
//!
//! Always a copy (`ExportMode::Copy`), never `TryReference`: a moved file
//! stays referenced by the store, and once the user edits it the store
//! holds "complete" data that no longer matches its hash, which it can
//! neither repair nor forget while a tag pins it. Data the store did not
//! download itself (it may refer to a shared file) is re-hashed before it
//! is renamed into place.

use std::{
    collections::BTreeSet,
    ffi::CString,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use iroh_blobs::api::Store;

use super::plan::{io, same_content, Entry, ExportError, Plan};

/// Undo log: what this export created. Dropped without `commit` (an
/// error, or the transfer was paused or cancelled mid-export), it removes
/// all of it again.
#[derive(Default)]
struct Created {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    temp: Option<PathBuf>,
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
        if let Some(t) = self.temp.take() {
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

/// Copies one file into place. `verify` re-hashes the copy first: data the
/// store did not download itself may be a reference to a file someone
/// changed since, and no unverified byte may reach a destination.
async fn place(
    store: &Store,
    entry: &Entry,
    path: &Path,
    tag: u64,
    force: bool,
    verify: bool,
    log: &mut Created,
) -> Result<(), ExportError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    log.mkdirs(parent)?;
    let tmp = temp_path(path, tag);
    fs::remove_file(&tmp).ok();
    log.temp = Some(tmp.clone());
    store
        .export_with_opts(iroh_blobs::api::blobs::ExportOptions {
            hash: entry.hash,
            mode: iroh_blobs::api::blobs::ExportMode::Copy,
            target: tmp.clone(),
        })
        .finish()
        .await
        .map_err(|e| ExportError::Store {
            hash: entry.hash,
            msg: e.to_string(),
        })?;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    if verify && !same_content(&tmp, &entry.hash) {
        return Err(ExportError::Store {
            hash: entry.hash,
            msg: format!(
                "the local copy of {:?} no longer matches its hash (a shared file it refers to was changed since sharing); nothing was written: share that file again or unshare it, then retry",
                entry.name
            ),
        });
    }
    rename_into_place(&tmp, path, force)?;
    log.temp = None;
    log.files.push(path.to_path_buf());
    Ok(())
}

/// Writes every planned file; all or nothing. Returns every file of the
/// content at the destination (written now or already present). `verify`
/// re-hashes each copy (for data this transfer did not download itself).
pub async fn export(
    store: &Store,
    plan: &Plan,
    tag: u64,
    verify: bool,
) -> Result<Vec<PathBuf>, ExportError> {
    let mut log = Created::default();
    let mut parents = BTreeSet::new();
    for (entry, path) in &plan.items {
        place(store, entry, path, tag, plan.force, verify, &mut log).await?;
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
