//! Handing open files to the daemon: a client opens what it shares as
//! itself and passes the descriptors (`SCM_RIGHTS`) over a `SOCK_SEQPACKET`
//! Unix socket beside the control socket, so the daemon reads exactly
//! what that user could open, with that user's authority, never a path
//! it reopens with its own. Shared by `ringdropd` and `ringdropctl`.
//!
//! One message a file: kind 1, name length (u32 LE), name, one descriptor;
//! then kind 2 (done). The daemon answers with a 16-byte token that the
//! `Share` request names.
//!
//! The other way, for placing a `ready` transfer: the owner's client asks
//! for one file at a time (kind 3, transfer id u64 LE, file index u32 LE)
//! and gets a read-only descriptor of the daemon's verified incoming file
//! (kind 1, no name), "empty" (kind 4: a file of no bytes) or why not
//! (kind 5, text), and copies it in the kernel; no bytes cross the socket.
//!
//! Hosting, so that a fetch for a client is written once, into files that
//! client made as itself: the client makes a private directory beside the
//! destination and says so (kind 6, transfer id u64 LE, the directory's
//! name; id 0 for a fetch not started yet: the daemon answers with a token
//! the `Fetch` request names, else with kind 2 or kind 5). From then on the
//! daemon asks for the directory's files as it needs them (kind 7, file
//! index u32 LE, 1 to write or 0 to read), and the client answers with a
//! descriptor (kind 1), "never written" (kind 4) or why not (kind 5).

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

/// Longest name in one message (a collection name's bound).
pub const MAX_NAME: usize = 4096;
/// Most files one handoff may carry (each is an open descriptor in the
/// daemon until it is imported).
pub const MAX_FILES: usize = 50_000;
/// Length of the token the daemon answers with.
pub const TOKEN_LEN: usize = 16;

const KIND_FILE: u8 = 1;
const KIND_DONE: u8 = 2;
const KIND_READ: u8 = 3;
const KIND_EMPTY: u8 = 4;
const KIND_REFUSED: u8 = 5;
const KIND_HOST: u8 = 6;
const KIND_OPEN: u8 = 7;

/// The handoff socket of the daemon serving `control_socket`.
pub fn socket_for(control_socket: &Path) -> PathBuf {
    let mut p = control_socket.as_os_str().to_owned();
    p.push(".files");
    PathBuf::from(p)
}

/// What one message carried.
#[derive(Debug)]
pub enum Item {
    File {
        name: String,
        fd: OwnedFd,
    },
    Done,
    /// A client asks for file `index` of its `ready` transfer `id`.
    Read {
        id: u64,
        index: u32,
    },
    /// The file asked for has no bytes.
    Empty,
    /// The daemon will not hand the file over, and why.
    Refused(String),
    /// A client hosts transfer `id`'s files (0: a fetch about to start)
    /// in its private directory `dir`.
    Host {
        id: u64,
        dir: String,
    },
    /// The daemon asks a hosting client for file `index` (to write or
    /// read).
    Open {
        index: u32,
        write: bool,
    },
}

fn cvt(rc: libc::ssize_t) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// A `SOCK_SEQPACKET` socket and the address of `path`, for
/// [`connect`] and [`listen`].
fn socket_and_address(
    path: &Path,
    flags: libc::c_int,
) -> io::Result<(OwnedFd, libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: socket has no preconditions; the address is zeroed and then
    // filled within its bounds.
    unsafe {
        let fd = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | flags,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        if bytes.len() >= addr.sun_path.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "socket path too long",
            ));
        }
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        Ok((fd, addr, len as libc::socklen_t))
    }
}

/// A connected `SOCK_SEQPACKET` socket to `path`.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let (fd, addr, len) = socket_and_address(path, 0)?;
    // SAFETY: a valid socket and an address of `len` bytes.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Bounds each receive on `sock` to `within` (`None`: waits for ever).
pub fn recv_within(sock: RawFd, within: Option<std::time::Duration>) -> io::Result<()> {
    let within = within.unwrap_or_default();
    let timeout = libc::timeval {
        tv_sec: within.as_secs() as libc::time_t,
        tv_usec: within.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt with a timeval we own, of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A non-blocking `SOCK_SEQPACKET` socket listening at `path` (which must
/// not exist); its file mode is the caller's to set.
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    let (fd, addr, len) = socket_and_address(path, libc::SOCK_NONBLOCK)?;
    // SAFETY: a valid socket and an address of `len` bytes.
    let rc = unsafe {
        if libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        ) != 0
        {
            -1
        } else {
            libc::listen(fd.as_raw_fd(), 16)
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Sends one file: its name in the collection and its open descriptor.
pub fn send_file(sock: RawFd, name: &str, file: RawFd) -> io::Result<()> {
    if name.len() > MAX_NAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
    }
    let mut msg = Vec::with_capacity(5 + name.len());
    msg.push(KIND_FILE);
    msg.extend_from_slice(&(name.len() as u32).to_le_bytes());
    msg.extend_from_slice(name.as_bytes());
    send(sock, &msg, Some(file))
}

/// Says every file was sent.
pub fn send_done(sock: RawFd) -> io::Result<()> {
    send(sock, &[KIND_DONE], None)
}

fn send(sock: RawFd, payload: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    // SAFETY: the control buffer is sized by CMSG_SPACE for one fd and
    // every pointer refers to memory that outlives the call.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        };
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut control = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
        cvt(libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL))?;
    }
    Ok(())
}

/// Receives one message; a malformed one is an error (the connection is
/// then dropped), and a descriptor beyond the first is closed.
pub fn recv_item(sock: RawFd) -> io::Result<Item> {
    let mut buf = vec![0u8; 5 + MAX_NAME];
    let (n, fds) = recv_raw(sock, &mut buf)?;
    parse(&buf[..n], fds)
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// One datagram into `buf`: its length and the descriptors it carried.
fn recv_raw(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: the buffers are ours and sized as told to the kernel; every
    // descriptor the kernel hands over is taken into an OwnedFd at once.
    let n = unsafe {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let space = libc::CMSG_SPACE((4 * std::mem::size_of::<RawFd>()) as u32) as usize;
        let mut control = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let n = cvt(libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC))?;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let header = libc::CMSG_LEN(0) as usize;
                let count = ((*cmsg).cmsg_len as usize).saturating_sub(header)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(bad("message truncated"));
        }
        n
    };
    Ok((n, fds))
}

/// What a datagram of `bytes` with `fds` says.
fn parse(bytes: &[u8], mut fds: Vec<OwnedFd>) -> io::Result<Item> {
    match bytes {
        [] => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        )),
        [KIND_DONE] if fds.is_empty() => Ok(Item::Done),
        [KIND_READ, rest @ ..] if rest.len() == 12 && fds.is_empty() => {
            let id = u64::from_le_bytes(rest[..8].try_into().map_err(|_| bad("bad id"))?);
            let index = u32::from_le_bytes(rest[8..].try_into().map_err(|_| bad("bad index"))?);
            Ok(Item::Read { id, index })
        }
        [KIND_EMPTY] if fds.is_empty() => Ok(Item::Empty),
        [KIND_HOST, rest @ ..] if rest.len() > 8 && fds.is_empty() => {
            let id = u64::from_le_bytes(rest[..8].try_into().map_err(|_| bad("bad id"))?);
            let dir =
                String::from_utf8(rest[8..].to_vec()).map_err(|_| bad("name is not UTF-8"))?;
            Ok(Item::Host { id, dir })
        }
        [KIND_OPEN, a, b, c, d, w] if fds.is_empty() && *w <= 1 => Ok(Item::Open {
            index: u32::from_le_bytes([*a, *b, *c, *d]),
            write: *w == 1,
        }),
        [KIND_REFUSED, rest @ ..] if fds.is_empty() => {
            Ok(Item::Refused(String::from_utf8_lossy(rest).into_owned()))
        }
        [KIND_FILE, a, b, c, d, rest @ ..] => {
            let len = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
            if len != rest.len() || len > MAX_NAME {
                return Err(bad("bad name length"));
            }
            let name = String::from_utf8(rest.to_vec()).map_err(|_| bad("name is not UTF-8"))?;
            if fds.len() != 1 {
                return Err(bad("a file message carries exactly one descriptor"));
            }
            let fd = fds.remove(0);
            Ok(Item::File { name, fd })
        }
        _ => Err(bad("unknown message")),
    }
}

/// Asks for file `index` of ready transfer `id`.
pub fn send_read(sock: RawFd, id: u64, index: u32) -> io::Result<()> {
    let mut msg = vec![KIND_READ];
    msg.extend_from_slice(&id.to_le_bytes());
    msg.extend_from_slice(&index.to_le_bytes());
    send(sock, &msg, None)
}

/// Answers a read: the file's descriptor, `None` for a file of no bytes,
/// or `Err(why)`.
pub fn send_reply(sock: RawFd, reply: Result<Option<RawFd>, &str>) -> io::Result<()> {
    match reply {
        Ok(Some(fd)) => send(sock, &[KIND_FILE, 0, 0, 0, 0], Some(fd)),
        Ok(None) => send(sock, &[KIND_EMPTY], None),
        Err(why) => {
            let mut msg = vec![KIND_REFUSED];
            msg.extend_from_slice(why.as_bytes().get(..MAX_NAME).unwrap_or(why.as_bytes()));
            send(sock, &msg, None)
        }
    }
}

/// Says this client hosts transfer `id`'s files (0: the fetch it is about
/// to start) in its private directory named `dir`.
pub fn send_host(sock: RawFd, id: u64, dir: &str) -> io::Result<()> {
    if dir.is_empty() || dir.len() > MAX_NAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad name"));
    }
    let mut msg = vec![KIND_HOST];
    msg.extend_from_slice(&id.to_le_bytes());
    msg.extend_from_slice(dir.as_bytes());
    send(sock, &msg, None)
}

/// Asks the hosting client for file `index`.
pub fn send_open(sock: RawFd, index: u32, write: bool) -> io::Result<()> {
    let mut msg = vec![KIND_OPEN];
    msg.extend_from_slice(&index.to_le_bytes());
    msg.push(u8::from(write));
    send(sock, &msg, None)
}

/// Sends `bytes` as one message (the daemon's token).
pub fn send_bytes(sock: RawFd, bytes: &[u8]) -> io::Result<()> {
    send(sock, bytes, None)
}

/// Receives one message of at most `max` bytes.
pub fn recv_bytes(sock: RawFd, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    // SAFETY: buf is ours and at least `max` bytes long.
    let n = cvt(unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), max, 0) })?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_and_its_name_cross_a_socket_pair() {
        let mut pair = [0; 2];
        // SAFETY: socketpair fills the two-element array.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: both descriptors are fresh and ours.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
        let dir = std::env::temp_dir().join(format!("rdrop-handoff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), b"hello").unwrap();
        let f = std::fs::File::open(dir.join("f")).unwrap();
        send_file(a.as_raw_fd(), "dir/f", f.as_raw_fd()).unwrap();
        send_done(a.as_raw_fd()).unwrap();
        match recv_item(b.as_raw_fd()).unwrap() {
            Item::File { name, fd } => {
                assert_eq!(name, "dir/f");
                let got =
                    std::fs::read_to_string(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
                assert_eq!(got, "hello");
            }
            other => panic!("expected a file, got {other:?}"),
        }
        assert!(matches!(recv_item(b.as_raw_fd()).unwrap(), Item::Done));
        // The other way: a read, and the three answers.
        send_read(a.as_raw_fd(), 7, 3).unwrap();
        assert!(matches!(
            recv_item(b.as_raw_fd()).unwrap(),
            Item::Read { id: 7, index: 3 }
        ));
        send_reply(b.as_raw_fd(), Ok(Some(f.as_raw_fd()))).unwrap();
        assert!(matches!(
            recv_item(a.as_raw_fd()).unwrap(),
            Item::File { .. }
        ));
        send_reply(b.as_raw_fd(), Ok(None)).unwrap();
        assert!(matches!(recv_item(a.as_raw_fd()).unwrap(), Item::Empty));
        send_reply(b.as_raw_fd(), Err("not yours")).unwrap();
        assert!(matches!(recv_item(a.as_raw_fd()).unwrap(), Item::Refused(w) if w == "not yours"));
        // Hosting: the offer and the daemon's asks.
        send_host(a.as_raw_fd(), 9, ".ringdrop-00.partial").unwrap();
        assert!(matches!(
            recv_item(b.as_raw_fd()).unwrap(),
            Item::Host { id: 9, dir } if dir == ".ringdrop-00.partial"
        ));
        send_open(b.as_raw_fd(), 5, true).unwrap();
        assert!(matches!(
            recv_item(a.as_raw_fd()).unwrap(),
            Item::Open {
                index: 5,
                write: true
            }
        ));
        // A file message without a descriptor is refused.
        send(a.as_raw_fd(), &[KIND_FILE, 1, 0, 0, 0, b'x'], None).unwrap();
        assert!(recv_item(b.as_raw_fd()).is_err());
        std::fs::remove_dir_all(dir).ok();
    }
}
