//! Where the control socket lives, shared by the daemon and every client.

use std::path::PathBuf;

/// Environment variable that names the control socket.
pub const SOCKET_ENV: &str = "RINGDROP_SOCKET";
/// The socket of a system-wide daemon (systemd unit).
pub const SYSTEM_SOCKET: &str = "/run/ringdrop/ringdropd.sock";
/// File name of the socket inside its runtime directory.
pub const SOCKET_FILE: &str = "ringdropd.sock";

/// The per-user runtime directory for ringdrop: `$XDG_RUNTIME_DIR/ringdrop`,
/// or `<tmp>/ringdrop-<uid>` when no runtime dir is set.
pub fn user_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("ringdrop"),
        _ => {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("ringdrop-{uid}"))
        }
    }
}

/// The per-user socket path.
pub fn user_socket() -> PathBuf {
    user_runtime_dir().join(SOCKET_FILE)
}

/// Sockets a client tries, in order: `$RINGDROP_SOCKET`, the user socket,
/// then the system socket.
pub fn candidate_sockets() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
        return out;
    }
    out.push(user_socket());
    out.push(PathBuf::from(SYSTEM_SOCKET));
    out
}

/// Whether a client may trust a socket in `dir` not to be another user's
/// impostor: nobody but its owner may write in it, and its owner is this
/// user or root, or was given it by root (its parent is root's and shut to
/// others, as /run is for /run/ringdrop). A directory in the shared temp
/// dir that someone else created first fails this.
pub fn trusted_socket_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    let shut = |m: &std::fs::Metadata| m.mode() & 0o022 == 0;
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !shut(&meta) {
        return Err(format!(
            "{} may be written by other users, so its socket could be anyone's",
            dir.display()
        ));
    }
    if meta.uid() == me || meta.uid() == 0 {
        return Ok(());
    }
    let parent_is_roots = dir
        .parent()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|p| p.uid() == 0 && shut(&p));
    if parent_is_roots {
        return Ok(());
    }
    Err(format!(
        "{} belongs to uid {}, not to you: someone else may have created it first",
        dir.display(),
        meta.uid()
    ))
}
