//! Walks what the user asked to share and names each file the way the
//! collection will: `name` for a file, `dir/relative/path` for a directory.
//! Symlinks are not followed; the daemon's own data dir is never shared.

use std::{
    fs,
    path::{Path, PathBuf},
};

use tracing::warn;

use crate::registry::{source_of, Source};

/// A file to import.
#[derive(Debug, Clone)]
pub struct ScannedFile {
    /// Name inside the collection (`/`-separated).
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// The file as it was when scanned (size, times, inode).
    pub source: Source,
}

/// Why a path cannot be shared.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("path must be absolute: {0}")]
    NotAbsolute(PathBuf),
    #[error("{path}: {msg}")]
    Io { path: PathBuf, msg: String },
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is inside ringdropd's data directory; share something else")]
    InDataDir(PathBuf),
    #[error("{0} is neither a file nor a directory")]
    NotFileOrDir(PathBuf),
    #[error("{0} contains no files to share")]
    Empty(PathBuf),
    #[error("file name {0:?} is not valid UTF-8; rename it to share it")]
    BadName(PathBuf),
    #[error("invalid share name {0:?}: it must be one path component without '/'")]
    BadShareName(String),
    #[error("ringdropd runs as user {user}, which cannot read {path} ({msg}); nothing was shared. The daemon shares files by reference and must be able to read them whenever a peer asks: make the path readable to it (for the system service: `chmod o+x` on each parent directory and `chmod -R o+rX` on the path, or move it under /srv), or run a daemon of your own (`systemd/install.sh --user`)")]
    Unreadable {
        user: String,
        path: PathBuf,
        msg: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ScanError + '_ {
    move |e| match e.kind() {
        std::io::ErrorKind::NotFound => ScanError::Missing(path.to_path_buf()),
        std::io::ErrorKind::PermissionDenied => unreadable(path, e),
        _ => ScanError::Io {
            path: path.to_path_buf(),
            msg: e.to_string(),
        },
    }
}

fn unreadable(path: &Path, e: std::io::Error) -> ScanError {
    ScanError::Unreadable {
        user: ringdrop_proto::place::user_name(crate::authority::my_uid()),
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// Fails unless this process can open `path` for reading: a share must
/// not fail later, when a peer asks for it.
fn check_readable(path: &Path) -> Result<(), ScanError> {
    fs::File::open(path).map(drop).map_err(io_err(path))
}

/// Lists the files of `path` in a stable order.
pub fn scan(
    path: &Path,
    data_dir: &Path,
    name: Option<&str>,
) -> Result<(PathBuf, Vec<ScannedFile>), ScanError> {
    if !path.is_absolute() {
        return Err(ScanError::NotAbsolute(path.to_path_buf()));
    }
    let path = fs::canonicalize(path).map_err(io_err(path))?;
    let data_dir = fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    if path.starts_with(&data_dir) {
        return Err(ScanError::InDataDir(path));
    }
    let top = match name {
        Some(n) if n.is_empty() || n.contains('/') || n == "." || n == ".." || n.contains('\0') => {
            return Err(ScanError::BadShareName(n.to_string()))
        }
        Some(n) => n.to_string(),
        None => path
            .file_name()
            .map(|n| {
                n.to_str()
                    .map(str::to_string)
                    .ok_or_else(|| ScanError::BadName(path.clone()))
            })
            .transpose()?
            .unwrap_or_else(|| "root".to_string()),
    };
    let meta = fs::metadata(&path).map_err(io_err(&path))?;
    let mut files = Vec::new();
    if meta.is_file() {
        check_readable(&path)?;
        files.push(ScannedFile {
            name: top,
            path: path.clone(),
            size: meta.len(),
            source: source_of(&path, &meta),
        });
    } else if meta.is_dir() {
        walk(&path, &top, &data_dir, &mut files)?;
        if files.is_empty() {
            return Err(ScanError::Empty(path));
        }
    } else {
        return Err(ScanError::NotFileOrDir(path));
    }
    Ok((path, files))
}

fn walk(
    dir: &Path,
    prefix: &str,
    data_dir: &Path,
    out: &mut Vec<ScannedFile>,
) -> Result<(), ScanError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let ty = entry.file_type().map_err(io_err(&path))?;
        let fname = entry
            .file_name()
            .into_string()
            .map_err(|_| ScanError::BadName(path.clone()))?;
        let name = format!("{prefix}/{fname}");
        if ty.is_symlink() {
            warn!(path = %path.display(), "not following symlink");
        } else if ty.is_dir() {
            if path.starts_with(data_dir) {
                warn!(path = %path.display(), "skipping ringdropd's own data directory");
                continue;
            }
            walk(&path, &name, data_dir, out)?;
        } else if ty.is_file() {
            let meta = entry.metadata().map_err(io_err(&path))?;
            check_readable(&path)?;
            out.push(ScannedFile {
                name,
                size: meta.len(),
                source: source_of(&path, &meta),
                path,
            });
        } else {
            warn!(path = %path.display(), "skipping special file");
        }
    }
    Ok(())
}
