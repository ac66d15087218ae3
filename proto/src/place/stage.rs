//! The staged write of a planned collection, contained beneath the
//! destination: every file operation is relative to a directory descriptor
//! opened from the destination's own directory, walking one component at a
//! time with `O_NOFOLLOW`, so no symlink below it is ever followed, before
//! or during the write (a local user who can write in a shared destination
//! cannot redirect it). Files are first written under unpredictable
//! temporary names created with `O_EXCL` (mode 0600: private until
//! renamed), then all are made durable (one `fsync` each, or one `syncfs`
//! for many), then renamed (atomic, never over a file that appeared
//! meanwhile unless `force`, and then by exchange, so the replaced file can
//! be put back); on failure everything this export did is undone. Who fills
//! the temporary files (the daemon's store, or the client from the control
//! socket) is the caller's business: [`Staging::create`] hands out the file.

use std::{
    collections::{BTreeSet, HashMap},
    ffi::CString,
    fs,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Component, Path, PathBuf},
};

use super::{
    at::{
        cstr, is_dir, is_file, last_err, open_dir_at, open_file_at, open_root, rand_u64, stat_at,
    },
    io,
    partial::PartialDir,
    plan::same_content_of,
    Entry, ExportError, Plan,
};

/// One directory the export writes in: its path (for messages) and a
/// descriptor reached from the root without following a symlink.
struct Dir {
    path: PathBuf,
    fd: OwnedFd,
}

/// One file of the plan: where it goes and under which temporary name it
/// is written first.
struct Item {
    dir: usize,
    name: CString,
    tmp: CString,
    /// Renamed into place; `exchanged`: over an existing file, which now
    /// sits under the temporary name.
    renamed: bool,
    exchanged: bool,
    /// Moved in by rename from a file its writer had already synced.
    synced: bool,
}

/// A planned export in progress: the undo log of what it did. Dropped
/// without [`Staging::finish`] succeeding (an error, or the transfer was
/// paused or cancelled mid-export), it undoes all of it.
pub struct Staging {
    plan: Plan,
    dirs: Vec<Dir>,
    /// Directories this export created: (index of the parent in `dirs`, name).
    created: Vec<(usize, CString)>,
    items: Vec<Item>,
    /// Final paths that already held the right bytes.
    present: Vec<PathBuf>,
    committed: bool,
}

/// The file mode a new file gets: 0666 less this process's umask (read
/// from /proc, as umask(2) cannot be read without changing it).
fn file_mode() -> libc::mode_t {
    let umask = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    (0o666 & !umask) as libc::mode_t
}

/// A temporary name next to `name`: hidden, unpredictable, within NAME_MAX
/// bytes whatever `name`'s length or characters.
fn temp_name(name: &[u8]) -> CString {
    const KEEP: usize = 200;
    let mut cut = name.len().min(KEEP);
    // Cut at a UTF-8 character boundary (names are UTF-8: sanitised).
    while cut > 0 && cut < name.len() && (name[cut] & 0xc0) == 0x80 {
        cut -= 1;
    }
    let mut out = Vec::with_capacity(cut + 32);
    out.push(b'.');
    out.extend_from_slice(&name[..cut]);
    out.extend_from_slice(format!(".{:016x}.rdrop-part", rand_u64()).as_bytes());
    // No NUL inside: `name` came from a CString or a sanitised name.
    CString::new(out).unwrap_or_else(|_| CString::from(c".rdrop-part"))
}

impl Staging {
    /// Opens the destination, walks to (creating where missing) every
    /// directory the plan needs, checks every final name through those
    /// descriptors and picks a temporary name for every file.
    pub fn prepare(plan: Plan) -> Result<Self, ExportError> {
        let root_path = plan.root.clone();
        let root = open_root(&root_path)?;
        let mut s = Self {
            plan,
            dirs: vec![Dir {
                path: root_path.clone(),
                fd: root,
            }],
            created: Vec::new(),
            items: Vec::new(),
            present: Vec::new(),
            committed: false,
        };
        let mut index: HashMap<PathBuf, usize> = HashMap::new();
        index.insert(PathBuf::new(), 0);
        let mut keep = Vec::with_capacity(s.plan.items.len());
        let items = std::mem::take(&mut s.plan.items);
        for (entry, path) in items {
            let rel = path
                .strip_prefix(&root_path)
                .map_err(|_| ExportError::UnsafeName(entry.name.clone()))?
                .to_path_buf();
            let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let dir = s.walk(&parent_rel, &mut index)?;
            let name = cstr(rel.file_name().unwrap_or_default())?;
            match stat_at(&s.dirs[dir].fd, &name) {
                Some(st) if is_dir(&st) => return Err(ExportError::IsDir(path)),
                // Already there, byte for byte (e.g. placed just before a
                // crash): nothing to write, nothing overwritten.
                Some(st)
                    if is_file(&st)
                        && st.st_size as u64 == entry.size
                        && open_file_at(&s.dirs[dir].fd, &name)
                            .is_some_and(|f| same_content_of(f, &entry.hash)) =>
                {
                    s.present.push(path);
                    continue;
                }
                Some(_) if !s.plan.force => return Err(ExportError::Exists(path)),
                _ => {}
            }
            let tmp = temp_name(name.as_bytes());
            s.items.push(Item {
                dir,
                name,
                tmp,
                renamed: false,
                exchanged: false,
                synced: false,
            });
            keep.push((entry, path));
        }
        s.plan.items = keep;
        Ok(s)
    }

    /// The descriptor of `rel` beneath the root, creating what is missing;
    /// no symlink is followed on the way.
    fn walk(
        &mut self,
        rel: &Path,
        index: &mut HashMap<PathBuf, usize>,
    ) -> Result<usize, ExportError> {
        if let Some(&i) = index.get(rel) {
            return Ok(i);
        }
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = self.walk(parent_rel, index)?;
        let name = match rel.components().next_back() {
            Some(Component::Normal(n)) => cstr(n)?,
            _ => return Err(ExportError::UnsafeName(rel.display().to_string())),
        };
        let path = self.dirs[parent]
            .path
            .join(rel.file_name().unwrap_or_default());
        // SAFETY: valid descriptor and NUL-terminated name.
        let rc = unsafe { libc::mkdirat(self.dirs[parent].fd.as_raw_fd(), name.as_ptr(), 0o777) };
        if rc == 0 {
            self.created.push((parent, name.clone()));
        } else {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(io(&path)(err));
            }
        }
        let fd = open_dir_at(&self.dirs[parent].fd, &name, &path)?;
        self.dirs.push(Dir { path, fd });
        let i = self.dirs.len() - 1;
        index.insert(rel.to_path_buf(), i);
        Ok(i)
    }

    /// Every file to write, in plan order, with its index for [`Self::create`].
    pub fn items(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.plan.items.iter().map(|(e, _)| e).enumerate()
    }

    /// Creates file `i`'s temporary file (exclusively, private to this
    /// user until renamed) and hands it out to be filled.
    pub fn create(&self, i: usize) -> Result<fs::File, ExportError> {
        let item = &self.items[i];
        let dir = &self.dirs[item.dir];
        // SAFETY: valid descriptor and NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                dir.fd.as_raw_fd(),
                item.tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(last_err(&self.plan.items[i].1));
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(unsafe { fs::File::from_raw_fd(fd) })
    }

    /// Moves file `i`'s data, already written and synced in `from` (the
    /// transfer's private directory) under its file number `file`, to its
    /// temporary name: a rename beneath both descriptors (not synced again
    /// by [`Self::finish`]), or a copy where they are on different
    /// filesystems. An empty file that was never written is created.
    pub fn adopt(&mut self, i: usize, from: &PartialDir, file: usize) -> Result<(), ExportError> {
        let item = &self.items[i];
        let (entry, path) = &self.plan.items[i];
        let dir = &self.dirs[item.dir];
        let src = PartialDir::file_name(file);
        // SAFETY: valid descriptors and NUL-terminated names.
        let rc = unsafe {
            libc::renameat2(
                from.fd().as_raw_fd(),
                src.as_ptr(),
                dir.fd.as_raw_fd(),
                item.tmp.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            self.items[i].synced = true;
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOENT) if entry.size == 0 => self.create(i).map(drop),
            Some(libc::EXDEV) => {
                let mut input = from
                    .open_read(file)
                    .map_err(io(from.path()))?
                    .ok_or_else(|| io(path)(std::io::ErrorKind::NotFound.into()))?;
                let mut out = self.create(i)?;
                std::io::copy(&mut input, &mut out).map_err(io(path))?;
                Ok(())
            }
            _ => Err(io(path)(err)),
        }
    }

    /// Makes every staged file durable, checks its hash if `verify`, gives
    /// it its final mode and renames it into place; then syncs the
    /// directories. Returns every file of the content at the destination
    /// (written now or already present). Blocking: run it off the async
    /// runtime.
    pub fn finish(mut self, verify: bool) -> Result<Vec<PathBuf>, ExportError> {
        self.sync_staged()?;
        let mode = file_mode();
        for i in 0..self.items.len() {
            let (dir, tmp) = (self.items[i].dir, self.items[i].tmp.clone());
            let (entry, path) = &self.plan.items[i];
            let fd = &self.dirs[dir].fd;
            let file = open_file_at(fd, &tmp).ok_or_else(|| last_err(path))?;
            if verify && !same_content_of(file.try_clone().map_err(io(path))?, &entry.hash) {
                return Err(ExportError::Mismatch(entry.name.clone()));
            }
            // SAFETY: file is an open descriptor.
            if unsafe { libc::fchmod(file.as_raw_fd(), mode) } != 0 {
                return Err(last_err(path));
            }
            self.rename_into_place(i)?;
        }
        // Make the renames durable before the transfer is reported complete.
        let touched: BTreeSet<usize> = self.items.iter().map(|it| it.dir).collect();
        for d in touched {
            // SAFETY: an open directory descriptor.
            if unsafe { libc::fsync(self.dirs[d].fd.as_raw_fd()) } != 0 {
                return Err(last_err(&self.dirs[d].path));
            }
        }
        // Committed: the files replaced under `force` go.
        for it in &self.items {
            if it.exchanged {
                // SAFETY: valid descriptor and NUL-terminated name.
                unsafe { libc::unlinkat(self.dirs[it.dir].fd.as_raw_fd(), it.tmp.as_ptr(), 0) };
            }
        }
        self.committed = true;
        let mut files = std::mem::take(&mut self.present);
        files.extend(self.plan.items.iter().map(|(_, p)| p.clone()));
        Ok(files)
    }

    /// Renames item `i` into place: never over a file that appeared
    /// meanwhile, unless `force`, and then by exchange, so that an undo
    /// can put the replaced file back.
    fn rename_into_place(&mut self, i: usize) -> Result<(), ExportError> {
        let it = &self.items[i];
        let fd = self.dirs[it.dir].fd.as_raw_fd();
        let path = &self.plan.items[i].1;
        let rename = |flags| {
            // SAFETY: valid descriptor and NUL-terminated names.
            let rc = unsafe { libc::renameat2(fd, it.tmp.as_ptr(), fd, it.name.as_ptr(), flags) };
            if rc == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        match rename(libc::RENAME_NOREPLACE) {
            Ok(()) => {
                self.items[i].renamed = true;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.plan.force => {
                rename(libc::RENAME_EXCHANGE).map_err(io(path))?;
                self.items[i].renamed = true;
                self.items[i].exchanged = true;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(ExportError::Exists(path.clone()))
            }
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Makes the staged files' data durable before any is renamed into
    /// place (files adopted already synced are not synced again).
    fn sync_staged(&self) -> Result<(), ExportError> {
        let open = |i: usize| {
            let it = &self.items[i];
            open_file_at(&self.dirs[it.dir].fd, &it.tmp)
                .ok_or_else(|| last_err(&self.plan.items[i].1))
        };
        let unsynced: Vec<usize> = (0..self.items.len())
            .filter(|&i| !self.items[i].synced)
            .collect();
        if unsynced.len() <= FSYNC_EACH_MAX {
            for i in unsynced {
                open(i)?.sync_all().map_err(io(&self.plan.items[i].1))?;
            }
            return Ok(());
        }
        // One syncfs per filesystem the staged files' directories are on.
        let mut devices = BTreeSet::new();
        let dirs: BTreeSet<usize> = unsynced.iter().map(|&i| self.items[i].dir).collect();
        for d in dirs {
            let dir = &self.dirs[d];
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: an open descriptor and a valid out pointer.
            if unsafe { libc::fstat(dir.fd.as_raw_fd(), &mut st) } != 0 {
                return Err(last_err(&dir.path));
            }
            // SAFETY: an open descriptor for the duration of the call.
            if devices.insert(st.st_dev) && unsafe { libc::syncfs(dir.fd.as_raw_fd()) } != 0 {
                return Err(last_err(&dir.path));
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for it in self.items.iter().rev() {
            let fd = self.dirs[it.dir].fd.as_raw_fd();
            // SAFETY: valid descriptor and NUL-terminated names.
            unsafe {
                if it.exchanged {
                    // Put the user's file back where it was.
                    libc::renameat2(
                        fd,
                        it.tmp.as_ptr(),
                        fd,
                        it.name.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    );
                    libc::unlinkat(fd, it.tmp.as_ptr(), 0);
                } else if it.renamed {
                    libc::unlinkat(fd, it.name.as_ptr(), 0);
                } else {
                    libc::unlinkat(fd, it.tmp.as_ptr(), 0);
                }
            }
        }
        for (parent, name) in self.created.iter().rev() {
            // SAFETY: valid descriptor and NUL-terminated name.
            unsafe {
                libc::unlinkat(
                    self.dirs[*parent].fd.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_REMOVEDIR,
                )
            };
        }
    }
}

/// Dirty bytes of a staged file handed to writeback at once, so that the
/// final `fsync` finds most of the file on its way to disk: measured on a
/// GiB, copy plus `fsync` went from ~2 s to ~1.3-1.7 s, about the disk's
/// own write time.
pub const WRITEBACK_EVERY: u64 = 16 << 20;

/// Starts writeback of `file`'s bytes `from..to` without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a head start for the
/// `fsync` that follows, so a failure is ignored: that `fsync` reports it.
pub fn start_writeback(file: &fs::File, from: u64, to: u64) {
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

/// Above this many files one `syncfs` per filesystem replaces a `fsync`
/// per file (a journal commit each: seconds for thousands of small files).
const FSYNC_EACH_MAX: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::place::plan;

    fn entry(name: &str, data: &[u8]) -> Entry {
        Entry {
            name: name.into(),
            hash: *blake3::hash(data).as_bytes(),
            size: data.len() as u64,
        }
    }

    /// Under `--force`, a failure after the first file was renamed over
    /// the user's own puts the user's file back and leaves nothing else.
    #[test]
    fn a_failed_forced_placement_puts_the_replaced_files_back() {
        let dest = std::env::temp_dir().join(format!("rdrop-stage-{:016x}", rand_u64()));
        fs::create_dir_all(dest.join("d")).unwrap();
        fs::write(dest.join("d/a.txt"), b"the user's own a.txt").unwrap();
        let entries = [entry("d/a.txt", b"new a"), entry("d/b.txt", b"new b")];
        let plan = plan::plan(&dest, &entries, true, "c").unwrap();
        let staging = Staging::prepare(plan).unwrap();
        std::io::Write::write_all(&mut staging.create(0).unwrap(), b"new a").unwrap();
        // File 1 is never written: finishing fails at it, after file 0
        // was exchanged with the user's a.txt.
        let err = staging.finish(false).unwrap_err();
        assert!(matches!(err, ExportError::Io { .. }), "{err}");
        assert_eq!(
            fs::read(dest.join("d/a.txt")).unwrap(),
            b"the user's own a.txt"
        );
        let left: Vec<_> = fs::read_dir(dest.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a.txt")]);
        fs::remove_dir_all(&dest).unwrap();
    }

    /// Names longer than the part of them a temporary name keeps, equal in
    /// that part, and names of multi-byte characters up to NAME_MAX: their
    /// temporary names are distinct, within NAME_MAX, still UTF-8, and the
    /// files all land.
    #[test]
    fn long_names_get_distinct_temporary_names_within_name_max() {
        let common = "a".repeat(230);
        let long = [format!("{common}1"), format!("{common}2")];
        let wide = "\u{00e9}".repeat(127); // 254 bytes
        let widest = "\u{1f600}".repeat(63); // 252 bytes
        for n in long.iter().chain([&wide, &widest]) {
            let t = temp_name(n.as_bytes());
            assert!(
                t.as_bytes().len() <= plan::MAX_COMPONENT,
                "{}",
                t.as_bytes().len()
            );
            assert!(std::str::from_utf8(t.as_bytes()).is_ok());
        }
        assert_ne!(temp_name(long[0].as_bytes()), temp_name(long[0].as_bytes()));

        let dest = std::env::temp_dir().join(format!("rdrop-stage-{:016x}", rand_u64()));
        fs::create_dir_all(&dest).unwrap();
        let names = [&long[0], &long[1], &wide, &widest];
        let entries: Vec<Entry> = names
            .iter()
            .map(|n| entry(&format!("top/{n}"), n.as_bytes()))
            .collect();
        let plan = plan::plan(&dest, &entries, false, "c").unwrap();
        let staging = Staging::prepare(plan).unwrap();
        for (i, n) in names.iter().enumerate() {
            std::io::Write::write_all(&mut staging.create(i).unwrap(), n.as_bytes()).unwrap();
        }
        staging.finish(false).unwrap();
        for n in names {
            assert_eq!(fs::read(dest.join("top").join(n)).unwrap(), n.as_bytes());
        }
        fs::remove_dir_all(&dest).unwrap();
    }
}
