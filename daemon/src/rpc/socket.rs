//! The control socket: created 0600 (0660 for a system group) in a private
//! directory, a stale socket replaced, a live one refused; every client's
//! credentials taken at accept (`authority::peer` reads and judges them).

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tokio::net::{UnixListener, UnixStream};

use crate::authority::{my_uid, PeerIdentity};

/// Errors preparing the control socket.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another ringdropd is already serving on {0}: stop it first, or start this one with --socket (and --data-dir) of its own")]
    InUse(PathBuf),
    #[error("control socket {path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("socket directory {0} belongs to another user; remove it or choose --socket")]
    ForeignDir(PathBuf),
    #[error("socket directory {0} may be written by other users, who could replace the socket: use a directory only you can write (e.g. under $XDG_RUNTIME_DIR), or choose --socket")]
    SharedDir(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it: choose another --socket")]
    NotASocket(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |e| SocketError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// A control-socket connection with its client's identity, taken at accept
/// time; tonic hands the identity to every request as an extension.
#[derive(Debug)]
pub struct PeerStream {
    stream: UnixStream,
    peer: PeerIdentity,
}

impl PeerStream {
    pub fn new(stream: UnixStream) -> std::io::Result<Self> {
        let peer = PeerIdentity::of(&stream)?;
        Ok(Self { stream, peer })
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerIdentity;
    fn connect_info(&self) -> PeerIdentity {
        self.peer.clone()
    }
}

impl tokio::io::AsyncRead for PeerStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PeerStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
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
        let me = my_uid();
        // Ours (or root's), and nobody else may write in it: otherwise
        // another user could replace the socket with one of their own.
        if meta.uid() != me && meta.uid() != 0 {
            return Err(SocketError::ForeignDir(dir.to_path_buf()));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(SocketError::SharedDir(dir.to_path_buf()));
        }
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        // Only ever a stale socket is removed, never a file someone named
        // by mistake.
        if !meta.file_type().is_socket() {
            return Err(SocketError::NotASocket(path.to_path_buf()));
        }
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
