//! Who may do what: the caller of every control-socket request (its uid
//! and groups, read from the socket), the rules table every RPC has a row
//! in, and the questions the facade asks before it touches a row.
//!
//! The model (docs/ARCHITECTURE.md, "Authority"): admins (root and the
//! daemon's own user) see and control every row but never read or write
//! files as another user; an operator (a member of the socket's group)
//! sees and changes only rows it owns; node-wide facts anyone may read.

mod peer;

pub use peer::{my_uid, PeerIdentity, PeerPolicy};

/// The group whose members are a system daemon's operators: they may
/// use its control socket.
pub const SOCKET_GROUP: &str = "ringdrop";

/// Who sent a request, as the kernel told us at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    admin: bool,
}

impl Caller {
    /// The client at the other end of the socket; `daemon_uid` is the user
    /// the daemon runs as.
    pub fn from_peer(peer: &PeerIdentity, daemon_uid: u32) -> Self {
        Self {
            uid: peer.uid,
            gid: peer.gid,
            groups: peer.groups.clone(),
            admin: peer.uid == 0 || peer.uid == daemon_uid,
        }
    }

    /// The daemon acting on its own (trusted senders' offers, loops).
    pub fn daemon() -> Self {
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            uid,
            gid,
            groups: Vec::new(),
            admin: true,
        }
    }

    /// A caller known only by uid (the owner of a trust rule, a file
    /// handoff): an admin if it is root or the daemon's user.
    pub fn operator(uid: u32, gid: u32) -> Self {
        Self {
            uid,
            gid,
            groups: Vec::new(),
            admin: uid == 0 || uid == my_uid(),
        }
    }

    /// Root or the daemon's own user.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether this caller may see and control a row owned by `owner`.
    pub fn controls(&self, owner: u32) -> bool {
        self.admin || self.uid == owner
    }

    /// Whether this caller may read or write the files of a row owned by
    /// `owner`: only the owner itself, admins included (root collecting
    /// another user's files would write with root's authority what that
    /// user asked for).
    pub fn handles_files_of(&self, owner: u32) -> bool {
        self.uid == owner
    }
}

/// Whether local user `uid` is still an operator of a system daemon whose
/// socket group is `group`: it exists and has `group` as its primary or a
/// supplementary group. `None` when the user database cannot be read (no
/// verdict, nothing changes).
pub fn still_member(uid: u32, group: &str) -> Option<bool> {
    let cgroup = std::ffi::CString::new(group).ok()?;
    let Some((name, primary)) = ringdrop_proto::place::user_entry(uid).ok()? else {
        return Some(false); // deleted
    };
    // SAFETY: getgrnam_r writes into `gr` and `gbuf`, which we own and
    // which outlive every pointer read from them.
    unsafe {
        let mut gbuf = vec![0 as libc::c_char; 256 * 1024];
        let mut gr: libc::group = std::mem::zeroed();
        let mut gout: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(
            cgroup.as_ptr(),
            &mut gr,
            gbuf.as_mut_ptr(),
            gbuf.len(),
            &mut gout,
        );
        if rc != 0 || gout.is_null() {
            return None;
        }
        if gr.gr_gid == primary {
            return Some(true);
        }
        let mut member = gr.gr_mem;
        while !member.is_null() && !(*member).is_null() {
            if std::ffi::CStr::from_ptr(*member) == name.as_c_str() {
                return Some(true);
            }
            member = member.add(1);
        }
        Some(false)
    }
}

/// What a method lets a caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any admitted caller: node-wide facts, nothing of another user's.
    Anyone,
    /// Any caller, on rows it owns (admins: every row); what it creates is
    /// its own.
    OwnRows,
    /// Only the owner of the row, admins included: its files are read or
    /// written with the owner's authority.
    OwnerOnly,
    /// Offers in the inbox: admins, and operators whose own rows make the
    /// sender a contact; the first answer settles an offer.
    Contacts,
    /// Node-wide settings: admins only.
    Admin,
}

/// Every method served on the control socket and its rule. A method
/// missing here is refused (the guard fails closed), and a unit test holds
/// this table to the descriptor sets.
pub const RULES: &[(&str, Rule)] = &[
    // ringdrop.v1.Node
    ("/ringdrop.v1.Node/GetStatus", Rule::Anyone),
    ("/ringdrop.v1.Node/InspectTicket", Rule::Anyone),
    ("/ringdrop.v1.Node/ListUploads", Rule::OwnRows),
    ("/ringdrop.v1.Node/WatchEvents", Rule::OwnRows),
    ("/ringdrop.v1.Node/GiveRow", Rule::Admin),
    // ringdrop.v1.Shares
    ("/ringdrop.v1.Shares/Share", Rule::OwnRows),
    ("/ringdrop.v1.Shares/ListShares", Rule::OwnRows),
    ("/ringdrop.v1.Shares/Unshare", Rule::OwnRows),
    // ringdrop.v1.Transfers
    ("/ringdrop.v1.Transfers/Fetch", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/ListTransfers", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/GetTransfer", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/WatchTransfer", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/WatchTransfers", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/PauseTransfer", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/ResumeTransfer", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/CancelTransfer", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/RemoveTransfer", Rule::OwnRows),
    ("/ringdrop.v1.Transfers/ListTransferFiles", Rule::OwnerOnly),
    ("/ringdrop.v1.Transfers/ReadTransferFiles", Rule::OwnerOnly),
    ("/ringdrop.v1.Transfers/FinishTransfer", Rule::OwnerOnly),
    // ringdrop.v1.Rings
    ("/ringdrop.v1.Rings/CreateRing", Rule::OwnRows),
    ("/ringdrop.v1.Rings/ListRings", Rule::OwnRows),
    ("/ringdrop.v1.Rings/RemoveRing", Rule::OwnRows),
    ("/ringdrop.v1.Rings/AddMember", Rule::OwnRows),
    ("/ringdrop.v1.Rings/RemoveMember", Rule::OwnRows),
    ("/ringdrop.v1.Rings/ListMembers", Rule::OwnRows),
    ("/ringdrop.v1.Rings/CreateInvite", Rule::OwnRows),
    ("/ringdrop.v1.Rings/ListInvites", Rule::OwnRows),
    ("/ringdrop.v1.Rings/RevokeInvite", Rule::OwnRows),
    ("/ringdrop.v1.Rings/JoinRing", Rule::OwnRows),
    // ringdrop.v1.Peers
    ("/ringdrop.v1.Peers/AddPeer", Rule::OwnRows),
    ("/ringdrop.v1.Peers/ListPeers", Rule::OwnRows),
    ("/ringdrop.v1.Peers/RemovePeer", Rule::OwnRows),
    ("/ringdrop.v1.Peers/RemoteList", Rule::Anyone),
    // ringdrop.v1.Contacts
    ("/ringdrop.v1.Contacts/Send", Rule::OwnRows),
    ("/ringdrop.v1.Contacts/ListSent", Rule::OwnRows),
    ("/ringdrop.v1.Contacts/Withdraw", Rule::OwnRows),
    ("/ringdrop.v1.Contacts/ListInbox", Rule::Contacts),
    ("/ringdrop.v1.Contacts/AcceptOffer", Rule::Contacts),
    ("/ringdrop.v1.Contacts/RejectOffer", Rule::Contacts),
    ("/ringdrop.v1.Contacts/TrustPeer", Rule::OwnRows),
    ("/ringdrop.v1.Contacts/UntrustPeer", Rule::OwnRows),
    ("/ringdrop.v1.Contacts/RemoveSent", Rule::OwnRows),
    ("/ringdrop.v1.Contacts/RemoveInboxOffer", Rule::Contacts),
    ("/ringdrop.v1.Limits/GetLimits", Rule::Anyone),
    ("/ringdrop.v1.Limits/SetLimits", Rule::Admin),
    ("/ringdrop.v1.Limits/SetTransferLimit", Rule::OwnRows),
    // Health and reflection: facts about the server, nothing of a user's.
    ("/grpc.health.v1.Health/Check", Rule::Anyone),
    ("/grpc.health.v1.Health/Watch", Rule::Anyone),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Rule::Anyone,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Rule::Anyone,
    ),
];

/// The rule of the method at `path` (`/package.Service/Method`).
pub fn rule_for(path: &str) -> Option<Rule> {
    RULES.iter().find(|(p, _)| *p == path).map(|(_, r)| *r)
}

/// Whether `caller` may call the method at `path` at all; the rows it may
/// touch are decided by the facade.
pub fn admit(caller: &Caller, path: &str) -> Result<Rule, String> {
    match rule_for(path) {
        None => Err(format!(
            "{path} has no rule in ringdropd's authority table, so nobody may call it"
        )),
        Some(Rule::Admin) if !caller.is_admin() => Err(format!(
            "{path} changes the whole node: only root and the daemon's own user may call it"
        )),
        Some(rule) => Ok(rule),
    }
}

/// The method path of a request, put in its extensions before the guard
/// runs (tonic's interceptors see no URI).
#[derive(Debug, Clone)]
pub struct MethodPath(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn methods(set: &[u8]) -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(set).expect("descriptor set decodes");
        let mut out = Vec::new();
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let name = service.name.unwrap_or_default();
                for m in service.method {
                    out.push(format!("/{package}.{name}/{}", m.name.unwrap_or_default()));
                }
            }
        }
        out
    }

    #[test]
    fn every_method_served_has_a_rule() {
        let mut served = methods(ringdrop_proto::FILE_DESCRIPTOR_SET);
        assert!(
            served.len() >= 40,
            "the ringdrop descriptor set lists {served:?}"
        );
        served.extend(methods(tonic_health::pb::FILE_DESCRIPTOR_SET));
        let missing: Vec<_> = served.iter().filter(|m| rule_for(m).is_none()).collect();
        assert!(missing.is_empty(), "methods without a rule: {missing:?}");
        // And no row names a method nobody serves (a renamed method would
        // leave a stale row and a new method without one).
        let stale: Vec<_> = RULES
            .iter()
            .filter(|(p, _)| !p.contains("reflection") && !served.iter().any(|m| m == p))
            .collect();
        assert!(stale.is_empty(), "rules for methods not served: {stale:?}");
    }

    #[test]
    fn root_is_a_member_of_its_own_group_and_nobody_of_no_group() {
        assert_eq!(still_member(0, "root"), Some(true));
        assert_eq!(still_member(65534, "root"), Some(false));
        assert_eq!(still_member(0, "no-such-group-here"), None);
    }

    #[test]
    fn a_method_without_a_row_is_refused_and_admin_rows_need_an_admin() {
        let op = Caller::operator(4242, 4242);
        assert!(admit(&op, "/ringdrop.v1.Node/Reboot").is_err());
        assert_eq!(admit(&op, "/ringdrop.v1.Node/GetStatus"), Ok(Rule::Anyone));
        assert!(!op.controls(4243));
        assert!(op.controls(4242));
        assert!(admit(&op, "/ringdrop.v1.Node/GiveRow").is_err());
        let root = Caller::operator(0, 0);
        assert_eq!(admit(&root, "/ringdrop.v1.Node/GiveRow"), Ok(Rule::Admin));
        assert!(root.controls(4242));
        assert!(!root.handles_files_of(4242));
    }
}
