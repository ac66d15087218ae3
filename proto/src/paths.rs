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
