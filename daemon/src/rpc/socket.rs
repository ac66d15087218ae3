//! The control socket: created 0600 (0660 for a system group) in a private
//! directory, a stale socket replaced, a live one refused; every client's
//! credentials checked.

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tokio::net::{UnixListener, UnixStream};

/// Errors preparing the control socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another ringdropd is already serving on {0}: stop it first, or start this one with --socket (and --data-dir) of its own")]
    InUse(PathBuf),
    #[error("control socket {path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("socket directory {0} belongs to another user; remove it or choose --socket")]
    ForeignDir(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |e| SocketError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Who may talk to the daemon: its own user, root, and members of `group`.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    uid: u32,
    group: Option<u32>,
}

impl PeerPolicy {
    /// Only the daemon's user (and root).
    pub fn owner_only() -> Self {
        // SAFETY: getuid has no preconditions.
        Self {
            uid: unsafe { libc::getuid() },
            group: None,
        }
    }

    /// Also members of `gid` (system mode).
    pub fn with_group(gid: u32) -> Self {
        Self {
            group: Some(gid),
            ..Self::owner_only()
        }
    }

    /// Checks the credentials of a client (read by the kernel when it
    /// connected: SO_PEERCRED).
    pub fn check(&self, cred: &tokio::net::unix::UCred) -> Result<(), String> {
        let uid = cred.uid();
        if uid == self.uid || uid == 0 {
            return Ok(());
        }
        if let Some(group) = self.group {
            if cred.gid() == group {
                return Ok(());
            }
            if let Some(pid) = cred.pid() {
                if supplementary_groups(pid).contains(&group) {
                    return Ok(());
                }
            }
        }
        Err(format!("uid {uid} is not allowed"))
    }
}

/// Supplementary groups of a process, from /proc.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Creates the socket at `path`: mode 0600, or 0660 owned by `group` (a
/// system daemon). Its directory is created (0700, or 0750 with a group) if
/// missing and must then be ours. A socket nobody answers on is stale and
/// replaced; one that answers belongs to a running daemon.
pub async fn bind_socket(path: &Path, group: Option<u32>) -> Result<UnixListener, SocketError> {
    let (mode, dir_mode) = if group.is_some() {
        (0o660, 0o755)
    } else {
        (0o600, 0o700)
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(dir)
                .map_err(io_err(dir))?;
        }
        let meta = fs::metadata(dir).map_err(io_err(dir))?;
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        if meta.uid() != me && me != 0 && meta.uid() != 0 {
            return Err(SocketError::ForeignDir(dir.to_path_buf()));
        }
    }
    if fs::symlink_metadata(path).is_ok() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        fs::remove_file(path).map_err(io_err(path))?;
    }
    let listener = UnixListener::bind(path).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err(path))?;
    }
    Ok(listener)
}
