//! Placing fetched content at its destination, shared by the daemon (which
//! writes where it may itself) and `ringdropctl` (which writes as the
//! caller, for the system service): the plan of where every file goes
//! ([`plan`]) and the staged, durable, all-or-nothing write ([`stage`]).
//! Free of iroh, so the client stays thin.

mod at;
pub mod partial;
pub mod plan;
pub mod stage;

use std::path::{Path, PathBuf};

pub use partial::PartialDir;
pub use plan::{
    available_space, check_names, check_space, plan, root_of, same_content, sanitize, Plan,
};
pub use stage::Staging;

/// A BLAKE3 hash, as iroh-blobs names content.
pub type ContentHash = [u8; 32];

/// One file of a collection: its name in the collection, hash and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub hash: ContentHash,
    pub size: u64,
}

/// Why content cannot be placed at the destination.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the collection contains an unsafe file name {0:?} (absolute, '..', empty component or control character); nothing was written")]
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
    #[error("no space left on device at {path}: need {need} bytes, {avail} available")]
    NoSpace {
        path: PathBuf,
        need: u64,
        avail: u64,
    },
    #[error("cannot write {path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("cannot read the content of {name:?}: {msg}")]
    Source { name: String, msg: String },
    #[error("the collection's top-level name {0:?} is hidden (or not a plain name): it is never created inside an existing directory by itself; name it yourself with --out DIR/NAME")]
    HiddenTop(String),
    #[error("the collection has a name too long or too deep ({0:?}...): at most 255 bytes a component, 4096 bytes and 128 levels a name; nothing was written")]
    TooLong(String),
    #[error("the collection has {0} files, more than ringdrop places at once (1,000,000); nothing was written")]
    TooMany(usize),
    #[error("the local copy of {0:?} no longer matches its hash (a shared file it refers to was changed since sharing); nothing was written: share that file again or unshare it, then retry")]
    Mismatch(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |e| ExportError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// A local user's login name and primary group: `Ok(None)` when there is
/// no such user, an error when the user database cannot be read.
pub fn user_entry(uid: u32) -> std::io::Result<Option<(std::ffi::CString, u32)>> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use
    // of `pw.pw_name`, which points into it.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    if out.is_null() || pw.pw_name.is_null() {
        return Ok(None);
    }
    // SAFETY: getpwuid_r filled pw_name with a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }.to_owned();
    Ok(Some((name, pw.pw_gid)))
}

/// The uid of the local user named `name`, if there is one.
pub fn uid_of(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and outlives it.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    (rc == 0 && !out.is_null()).then_some(pw.pw_uid)
}

/// The login name of `uid`, or `uid N` when it has none.
pub fn user_name(uid: u32) -> String {
    match user_entry(uid) {
        Ok(Some((name, _))) => format!("'{}'", name.to_string_lossy()),
        _ => format!("uid {uid}"),
    }
}

/// Whether this process may create `dest` (or entries in it, if it is a
/// directory): the nearest existing ancestor must be a directory it can
/// write and search. The error names that directory and why.
pub fn check_writable(dest: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    use std::os::unix::ffi::OsStrExt;
    let mut dir = dest;
    while std::fs::symlink_metadata(dir).is_err() {
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
    if dir == dest && !dest.is_dir() {
        // An existing file (replaced with --force): its directory counts.
        dir = dest.parent().unwrap_or(Path::new("/"));
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| (dir.to_path_buf(), e.into()))?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        return Ok(());
    }
    Err((dir.to_path_buf(), std::io::Error::last_os_error()))
}
