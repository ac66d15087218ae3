//! The private directory a fetch writes its files into while they arrive:
//! created beneath the destination's own directory (the staging root, so
//! that placing a finished file is a rename on the same filesystem), mode
//! 0700 and owned by the writer, with files named by their number in the
//! collection (no name a peer chose is used before the plan checked it).
//! Reopened after a restart only if it is still a directory of ours that
//! nobody else may enter; anything else at that name is left alone and a
//! new directory is made.

use std::{
    ffi::CString,
    fs,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use super::{
    at::{cstr, open_dir_at, open_root, rand_u64, stat_at},
    io, ExportError,
};

/// A transfer's private directory of incoming files.
#[derive(Debug)]
pub struct PartialDir {
    root: OwnedFd,
    name: CString,
    path: PathBuf,
    fd: OwnedFd,
}

/// Open flags of every file descriptor opened here.
const NO_FOLLOW: libc::c_int = libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl PartialDir {
    /// Creates a new directory with an unpredictable hidden name in `root`.
    pub fn create(root: &Path) -> Result<Self, ExportError> {
        let root_fd = open_root(root)?;
        let name = format!(".ringdrop-{:016x}.partial", rand_u64());
        let c = cstr(name.as_ref())?;
        // SAFETY: valid descriptor and NUL-terminated name.
        if unsafe { libc::mkdirat(root_fd.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
            return Err(io(root)(std::io::Error::last_os_error()));
        }
        let path = root.join(&name);
        let fd = open_dir_at(&root_fd, &c, &path)?;
        Ok(Self {
            root: root_fd,
            name: c,
            path,
            fd,
        })
    }

    /// Reopens the directory `name` in `root` made by [`Self::create`];
    /// `None` when it is gone or is not a private directory of this user.
    pub fn open(root: &Path, name: &str) -> Result<Option<Self>, ExportError> {
        let root_fd = open_root(root)?;
        let c = cstr(name.as_ref())?;
        let path = root.join(name);
        let Some(st) = stat_at(&root_fd, &c) else {
            return Ok(None);
        };
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let private = st.st_mode & libc::S_IFMT == libc::S_IFDIR
            && st.st_uid == me
            && st.st_mode & 0o077 == 0;
        if !private {
            return Ok(None);
        }
        let fd = open_dir_at(&root_fd, &c, &path)?;
        Ok(Some(Self {
            root: root_fd,
            name: c,
            path,
            fd,
        }))
    }

    /// The directory's name in its root, to reopen it after a restart.
    pub fn name(&self) -> String {
        self.name.to_string_lossy().into_owned()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub(super) fn file_name(file: usize) -> CString {
        // Digits only: never a NUL.
        CString::new(file.to_string()).unwrap_or_default()
    }

    /// The device the directory is on (to tell whether two paths share
    /// their free space).
    pub fn device(&self) -> std::io::Result<u64> {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: an open descriptor and a valid out pointer.
        if unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st.st_dev)
    }

    /// File `file`, created (0600) if missing, for reading and writing at
    /// offsets.
    pub fn file(&self, file: usize) -> std::io::Result<fs::File> {
        let name = Self::file_name(file);
        // SAFETY: valid descriptor and NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | NO_FOLLOW,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(unsafe { fs::File::from_raw_fd(fd) })
    }

    /// File `file` for reading, if it was ever written.
    pub fn open_read(&self, file: usize) -> std::io::Result<Option<fs::File>> {
        let name = Self::file_name(file);
        // SAFETY: valid descriptor and NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | NO_FOLLOW,
            )
        };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return match err.kind() {
                std::io::ErrorKind::NotFound => Ok(None),
                _ => Err(err),
            };
        }
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(Some(unsafe { fs::File::from_raw_fd(fd) }))
    }

    /// Makes everything written on the directory's filesystem durable.
    pub fn sync_fs(&self) -> std::io::Result<()> {
        // SAFETY: an open descriptor.
        if unsafe { libc::syncfs(self.fd.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes the directory and whatever is still in it.
    pub fn remove(self) -> std::io::Result<()> {
        let listing = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        for entry in fs::read_dir(&listing)?.flatten() {
            let Ok(name) = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
                entry.file_name().as_os_str(),
            )) else {
                continue;
            };
            // SAFETY: valid descriptor and NUL-terminated name.
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), name.as_ptr(), 0) };
        }
        // SAFETY: valid descriptor and NUL-terminated name.
        if unsafe {
            libc::unlinkat(
                self.root.as_raw_fd(),
                self.name.as_ptr(),
                libc::AT_REMOVEDIR,
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rdrop-partial-{:016x}", rand_u64()));
        fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn private_reopened_and_removed() {
        let root = scratch();
        let p = PartialDir::create(&root).unwrap();
        let mode = fs::metadata(p.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::os::unix::fs::FileExt::write_all_at(&p.file(3).unwrap(), b"abc", 5).unwrap();
        let name = p.name();
        drop(p);
        let p = PartialDir::open(&root, &name).unwrap().expect("reopened");
        let f = p.open_read(3).unwrap().unwrap();
        assert_eq!(f.metadata().unwrap().len(), 8);
        assert!(p.open_read(4).unwrap().is_none());
        p.remove().unwrap();
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
        fs::remove_dir(&root).unwrap();
    }

    #[test]
    fn a_directory_others_may_enter_or_a_symlink_is_not_reopened() {
        let root = scratch();
        fs::create_dir(root.join("open")).unwrap();
        fs::set_permissions(root.join("open"), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(PartialDir::open(&root, "open").unwrap().is_none());
        let elsewhere = scratch();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("link")).unwrap();
        assert!(PartialDir::open(&root, "link").unwrap().is_none());
        assert!(PartialDir::open(&root, "missing").unwrap().is_none());
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&elsewhere).unwrap();
    }
}
