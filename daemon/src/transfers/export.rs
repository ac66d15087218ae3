//! Export: places a verified collection at the destination.
//!
//! Names are sanitised before any byte is fetched (relative, no `..`, no
//! empty or absolute components, no NUL); a bad name fails the transfer and
//! writes nothing. Each file is written under a temporary name next to its
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
    collections::{BTreeSet, HashSet},
    ffi::CString,
    fs,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use iroh_blobs::{api::Store, Hash};

/// One file of a collection: its name in the collection, hash and size.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub hash: Hash,
    pub size: u64,
}

/// Why content cannot be placed at the destination.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the collection contains an unsafe file name {0:?} (absolute, '..', empty component or NUL); nothing was written")]
    UnsafeName(String),
    #[error(
        "the collection names {0:?} twice (or as both a file and a directory); nothing was written"
    )]
    Conflict(String),
    #[error("{0} already exists: pass --force to replace it, or choose another --out")]
    Exists(PathBuf),
    #[error("{0} is a directory and cannot be replaced by a file")]
    IsDir(PathBuf),
    #[error("destination must be an absolute path: {0}")]
    NotAbsolute(PathBuf),
    #[error("not enough free space at {path}: need {need} bytes, {avail} available")]
    NoSpace {
        path: PathBuf,
        need: u64,
        avail: u64,
    },
    #[error("cannot write {path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("the store cannot export {hash}: {msg}")]
    Store { hash: Hash, msg: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |e| ExportError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Splits a collection name into safe path components.
pub fn sanitize(name: &str) -> Result<Vec<&str>, ExportError> {
    let bad = || ExportError::UnsafeName(name.to_string());
    if name.is_empty() || name.starts_with('/') || name.contains('\0') {
        return Err(bad());
    }
    let parts: Vec<&str> = name.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(bad());
    }
    Ok(parts)
}

/// Where each file goes; files already present with the right content
/// are left out.
#[derive(Debug)]
pub struct Plan {
    pub items: Vec<(Entry, PathBuf)>,
    /// Final paths that already hold the right bytes.
    pub present: Vec<PathBuf>,
    /// Replace files that exist at the destination.
    pub force: bool,
}

/// Decides the final path of every entry, checking names and collisions.
///
/// `dest` an existing directory: the names are created inside it.
/// Otherwise `dest` is the single file, or the top directory that replaces
/// the collection's one top-level name (several top-level names: `dest`
/// becomes a directory holding them).
pub fn plan(dest: &Path, entries: &[Entry], force: bool) -> Result<Plan, ExportError> {
    if !dest.is_absolute() {
        return Err(ExportError::NotAbsolute(dest.to_path_buf()));
    }
    let mut split = Vec::with_capacity(entries.len());
    for e in entries {
        split.push(sanitize(&e.name)?);
    }
    let tops: BTreeSet<&str> = split.iter().map(|p| p[0]).collect();
    let into_dir = dest.is_dir();
    let strip_top = !into_dir && tops.len() == 1;
    let mut items = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    let mut dirs = HashSet::new();
    for (e, parts) in entries.iter().zip(&split) {
        let rel = if strip_top { &parts[1..] } else { &parts[..] };
        let mut path = dest.to_path_buf();
        for (i, p) in rel.iter().enumerate() {
            path.push(p);
            if i + 1 < rel.len() {
                dirs.insert(path.clone());
            }
        }
        if !seen.insert(path.clone()) {
            return Err(ExportError::Conflict(e.name.clone()));
        }
        items.push((e.clone(), path));
    }
    let mut planned = Vec::with_capacity(items.len());
    let mut present = Vec::new();
    for (e, path) in items {
        if dirs.contains(&path) {
            return Err(ExportError::Conflict(e.name.clone()));
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Err(ExportError::IsDir(path)),
            // Already there, byte for byte (e.g. placed just before a crash):
            // nothing to write, nothing overwritten.
            Ok(m) if m.is_file() && m.len() == e.size && same_content(&path, &e.hash) => {
                present.push(path);
                continue;
            }
            Ok(_) if !force => return Err(ExportError::Exists(path)),
            _ => {}
        }
        planned.push((e, path));
    }
    Ok(Plan {
        items: planned,
        present,
        force,
    })
}

/// Whether the file at `path` hashes to `hash` (BLAKE3, as iroh-blobs).
fn same_content(path: &Path, hash: &Hash) -> bool {
    let mut hasher = blake3::Hasher::new();
    match fs::File::open(path).and_then(|f| hasher.update_reader(f).map(|_| ())) {
        Ok(()) => Hash::from(hasher.finalize()) == *hash,
        Err(_) => false,
    }
}

/// Free bytes for unprivileged users on the filesystem holding `path`
/// (or its nearest existing ancestor).
pub fn available_space(path: &Path) -> std::io::Result<u64> {
    let mut p = path;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    let c = CString::new(p.as_os_str().as_bytes())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Fails early when `need` bytes will not fit at `path`.
pub fn check_space(path: &Path, need: u64) -> Result<(), ExportError> {
    let avail = available_space(path).map_err(io(path))?;
    if avail < need {
        return Err(ExportError::NoSpace {
            path: path.to_path_buf(),
            need,
            avail,
        });
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            hash: Hash::EMPTY,
            size: 0,
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        for n in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a/",
            "a\0b",
            "..",
        ] {
            assert!(sanitize(n).is_err(), "{n:?} accepted");
        }
        assert_eq!(
            sanitize("dir/sub dir/ü.txt").unwrap(),
            vec!["dir", "sub dir", "ü.txt"]
        );
    }

    #[test]
    fn plan_places_single_file_and_dirs() {
        let tmp = std::env::temp_dir().join(format!("rdrop-plan-{}", rand::random::<u64>()));
        fs::create_dir_all(&tmp).unwrap();
        // into an existing dir: names kept
        let p = plan(&tmp, &[entry("f.txt")], false).unwrap();
        assert_eq!(p.items[0].1, tmp.join("f.txt"));
        // new path: the single file is the path
        let p = plan(&tmp.join("out.bin"), &[entry("f.txt")], false).unwrap();
        assert_eq!(p.items[0].1, tmp.join("out.bin"));
        // new path: the top directory is renamed
        let p = plan(&tmp.join("new"), &[entry("d/a"), entry("d/s/b")], false).unwrap();
        assert_eq!(p.items[1].1, tmp.join("new/s/b"));
        // collisions
        assert!(matches!(
            plan(&tmp, &[entry("a"), entry("a")], false),
            Err(ExportError::Conflict(_))
        ));
        assert!(matches!(
            plan(&tmp, &[entry("a"), entry("a/b")], false),
            Err(ExportError::Conflict(_))
        ));
        fs::write(tmp.join("f.txt"), b"x").unwrap();
        assert!(matches!(
            plan(&tmp, &[entry("f.txt")], false),
            Err(ExportError::Exists(_))
        ));
        assert!(plan(&tmp, &[entry("f.txt")], true).is_ok());
        fs::remove_dir_all(tmp).ok();
    }
}
