//! Who is at the other end of a local socket (the control socket, the
//! handoff socket), as the kernel saw it when it connected, and who may
//! talk to the daemon at all.

use std::os::fd::AsRawFd;

use tokio::net::UnixStream;

/// Who a control-socket client is, as the kernel saw it when it connected:
/// SO_PEERCRED (uid, gid, pid) and SO_PEERGROUPS (supplementary groups).
/// Read from the socket itself, not from /proc, which the unit's
/// `ProtectProc=invisible` hides for other users' processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    pub groups: Vec<u32>,
}

impl PeerIdentity {
    /// Reads the credentials of the client at the other end of `stream`.
    pub fn of(stream: &UnixStream) -> std::io::Result<Self> {
        let cred = stream.peer_cred()?;
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
            groups: peer_groups(stream.as_raw_fd())?,
        })
    }
}

impl PeerIdentity {
    /// The credentials of the peer of any connected Unix socket `fd`
    /// (the file handoff's `SOCK_SEQPACKET` socket too).
    pub fn of_fd(fd: std::os::fd::RawFd) -> std::io::Result<Self> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: cred is a writable ucred of `len` bytes; fd is open.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            uid: cred.uid,
            gid: cred.gid,
            pid: Some(cred.pid),
            groups: peer_groups(fd)?,
        })
    }
}

/// Supplementary groups of a Unix socket's peer (SO_PEERGROUPS, Linux 4.13+).
fn peer_groups(fd: std::os::fd::RawFd) -> std::io::Result<Vec<u32>> {
    // NGROUPS_MAX is 65536; start small and grow to what the kernel asks for.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is a writable buffer of `len` bytes; fd is an
        // open socket for the duration of the call.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
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
        Self {
            uid: my_uid(),
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

    /// The uid the daemon runs as.
    pub fn daemon_uid(&self) -> u32 {
        self.uid
    }

    /// Checks a client's credentials: the daemon's user, root, or (system
    /// mode) a member of the group, primary or supplementary.
    pub fn check(&self, peer: &PeerIdentity) -> Result<(), String> {
        if peer.uid == self.uid || peer.uid == 0 {
            return Ok(());
        }
        if let Some(group) = self.group {
            if peer.gid == group || peer.groups.contains(&group) {
                return Ok(());
            }
        }
        Err(format!("uid {} is not allowed", peer.uid))
    }
}

/// The uid this process runs as.
pub fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The groups this process has, as getgroups(2) reports them.
    fn my_groups() -> Vec<u32> {
        // SAFETY: a zero-length query, then a buffer of the size it gave.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        let mut g = vec![0; n.max(0) as usize];
        let n = unsafe { libc::getgroups(n, g.as_mut_ptr()) };
        g.truncate(n.max(0) as usize);
        g
    }

    #[tokio::test]
    async fn identity_comes_from_the_socket_with_supplementary_groups() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = PeerIdentity::of(&a).unwrap();
        assert_eq!(peer.uid, my_uid());
        assert_eq!(peer.pid, Some(std::process::id() as i32));
        let mut want = my_groups();
        let mut got = peer.groups.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn members_are_admitted_by_primary_or_supplementary_group() {
        let policy = PeerPolicy {
            uid: 990,
            group: Some(991),
        };
        let peer = |uid, gid, groups: &[u32]| PeerIdentity {
            uid,
            gid,
            pid: None,
            groups: groups.to_vec(),
        };
        assert!(policy.check(&peer(990, 990, &[])).is_ok());
        assert!(policy.check(&peer(0, 0, &[])).is_ok());
        assert!(policy.check(&peer(1000, 991, &[])).is_ok());
        assert!(policy.check(&peer(1000, 1000, &[27, 991])).is_ok());
        let refused = policy.check(&peer(1000, 1000, &[27, 100])).unwrap_err();
        assert!(refused.contains("uid 1000 is not allowed"), "{refused}");
        let owner_only = PeerPolicy {
            uid: 990,
            group: None,
        };
        assert!(owner_only.check(&peer(1000, 991, &[991])).is_err());
    }
}
