//! Handing the files we share to a system daemon (`ringdrop_proto::
//! handoff`): this client opens each file as this user and passes the open
//! descriptor, so the daemon shares exactly what we can read, with our
//! authority, and never opens a path of ours itself.

use std::{
    fs,
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
};

use ringdrop_proto::handoff::{self, TOKEN_LEN};

use crate::error::CliError;

/// Whether files for the daemon serving `socket` are handed over: when it
/// has a handoff socket (a system daemon) and runs as another user (root
/// and the daemon's own user share by path, as before).
fn wanted(socket: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let path = handoff::socket_for(socket);
    let meta = fs::symlink_metadata(&path).ok()?;
    let me = super::place::my_uid();
    (me != 0 && meta.uid() != me).then_some(path)
}

/// Opens `path` (a file, or a directory walked in name order, symlinks
/// and special files left out, as the daemon's own walk does) and hands
/// every file to the daemon; the token its `Share`/`Send` request names,
/// or `None` when this daemon reads paths itself.
pub async fn hand_over(
    socket: &Path,
    path: &Path,
    name: Option<&str>,
) -> Result<Option<Vec<u8>>, CliError> {
    let Some(hsock) = wanted(socket) else {
        return Ok(None);
    };
    let (path, name) = (path.to_path_buf(), name.map(str::to_string));
    tokio::task::spawn_blocking(move || send_all(&hsock, &path, name.as_deref()))
        .await
        .map_err(|e| CliError::failed(e.to_string()))?
        .map(Some)
}

fn send_all(hsock: &Path, path: &Path, name: Option<&str>) -> Result<Vec<u8>, CliError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| CliError::failed(format!("{}: {e}", p.display()))
    };
    // The path named is followed (as the daemon's own walk does); nothing
    // below it is.
    let path = &fs::canonicalize(path).map_err(io(path))?;
    let top = match name {
        Some(n) => n.to_string(),
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| CliError::bad_input(format!("{}: give it a --name", path.display())))?,
    };
    let sock = handoff::connect(hsock).map_err(io(hsock))?;
    let meta = fs::metadata(path).map_err(io(path))?;
    let mut sent = 0usize;
    if meta.is_dir() {
        walk(sock.as_raw_fd(), path, &top, &mut sent)?;
    } else {
        send_one(sock.as_raw_fd(), path, &top)?;
        sent += 1;
    }
    if sent == 0 {
        return Err(CliError::failed(format!(
            "{} contains no files to share",
            path.display()
        )));
    }
    handoff::send_done(sock.as_raw_fd()).map_err(io(hsock))?;
    let token = handoff::recv_bytes(sock.as_raw_fd(), TOKEN_LEN).map_err(io(hsock))?;
    if token.len() != TOKEN_LEN {
        return Err(CliError::failed(
            "ringdropd refused the files (see its log: too many files, or too many shares at once)",
        ));
    }
    Ok(token)
}

/// Opens one file as this user (no symlink at the last step) and sends
/// it; the descriptor is closed here once the daemon holds its copy.
fn send_one(sock: i32, path: &Path, name: &str) -> Result<(), CliError> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            CliError::failed(format!(
                "cannot read {}: {e}; nothing was shared",
                path.display()
            ))
        })?;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(CliError::failed(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    handoff::send_file(sock, name, file.as_raw_fd())
        .map_err(|e| CliError::failed(format!("handing {} to ringdropd: {e}", path.display())))
}

fn walk(sock: i32, dir: &Path, prefix: &str, sent: &mut usize) -> Result<(), CliError> {
    let err = |e: std::io::Error| CliError::failed(format!("{}: {e}", dir.display()));
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let ty = entry.file_type().map_err(err)?;
        let Some(fname) = entry.file_name().to_str().map(str::to_string) else {
            return Err(CliError::failed(format!(
                "file name {} is not valid UTF-8; rename it to share it",
                path.display()
            )));
        };
        let name = format!("{prefix}/{fname}");
        if ty.is_dir() {
            walk(sock, &path, &name, sent)?;
        } else if ty.is_file() {
            send_one(sock, &path, &name)?;
            *sent += 1;
            if *sent > handoff::MAX_FILES {
                return Err(CliError::failed(format!(
                    "more than {} files: share fewer at once",
                    handoff::MAX_FILES
                )));
            }
        }
    }
    Ok(())
}
