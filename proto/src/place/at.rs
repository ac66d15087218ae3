//! File operations relative to an open directory, following no symlink:
//! what staging a plan and keeping a private directory of incoming files
//! both stand on.

use std::{
    ffi::{CStr, CString, OsStr},
    fs,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use super::{io, ExportError};

pub(super) fn cstr(s: &OsStr) -> Result<CString, ExportError> {
    CString::new(s.as_bytes()).map_err(|_| ExportError::UnsafeName(s.to_string_lossy().into()))
}

pub(super) fn last_err(path: &Path) -> ExportError {
    io(path)(std::io::Error::last_os_error())
}

/// A symlink where a directory of the export should be: refused, named.
pub(super) fn redirected(path: &Path) -> ExportError {
    ExportError::Io {
        path: path.to_path_buf(),
        msg: "is a symlink or not a directory; nothing is written through it (remove it, or choose another --out)".into(),
    }
}

/// Opens `name` beneath `dir` as a directory, following no symlink.
pub(super) fn open_dir_at(dir: &OwnedFd, name: &CStr, path: &Path) -> Result<OwnedFd, ExportError> {
    // SAFETY: dir is an open descriptor and name a NUL-terminated string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => redirected(path),
            _ => io(path)(err),
        });
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory the user named (its own path may hold symlinks: the
/// user chose it), as the root of everything the export does. One
/// exception: a symlink in a directory other users may write (`/tmp`) may
/// be theirs, planted where the user expected a new directory.
pub(super) fn open_root(path: &Path) -> Result<OwnedFd, ExportError> {
    use std::os::unix::fs::MetadataExt;
    let planted = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        && path
            .parent()
            .and_then(|p| fs::metadata(p).ok())
            .is_some_and(|p| p.mode() & 0o022 != 0);
    if planted {
        return Err(redirected(path));
    }
    let c = cstr(path.as_os_str())?;
    // SAFETY: c is a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_err(path));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// 64 unpredictable bits from the kernel.
pub(super) fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: b is a writable buffer of 8 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        // Never seen; the name is still checked with O_EXCL.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t ^ (std::process::id() as u64).rotate_left(32);
    }
    u64::from_ne_bytes(b)
}

/// What is at `name` beneath `dir`, without following a symlink.
pub(super) fn stat_at(dir: &OwnedFd, name: &CStr) -> Option<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, NUL-terminated name and out pointer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (rc == 0).then_some(st)
}

pub(super) fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub(super) fn is_file(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Opens a regular file beneath `dir` for reading, following no symlink.
pub(super) fn open_file_at(dir: &OwnedFd, name: &CStr) -> Option<fs::File> {
    // SAFETY: valid descriptor and NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    // SAFETY: fd was just opened and is owned by nobody else.
    (fd >= 0).then(|| unsafe { fs::File::from_raw_fd(fd) })
}
