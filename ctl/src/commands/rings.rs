//! `ring ...`, `peer ...`, `remote ls`, `uploads`: access control and who
//! gets what.

use std::path::PathBuf;

use clap::Subcommand;
use ringdrop_proto::v1 as pb;
use serde_json::{json, Value};

use crate::{
    client,
    error::CliError,
    output::{bytes, clean, Out},
};

#[derive(Debug, Subcommand)]
pub enum RingCmd {
    /// Create a ring.
    #[command(after_help = "Example:\n  ringdropctl ring create team")]
    Create { name: String },
    /// List rings ("open" is built in: anyone holding the ticket).
    #[command(after_help = "Example:\n  ringdropctl ring ls")]
    Ls,
    /// Remove a ring; its members lose access to its shares at once.
    #[command(after_help = "Example:\n  ringdropctl ring rm team")]
    Rm { name: String },
    /// Add a member (endpoint id, ticket or address-book name).
    #[command(
        after_help = "Examples:\n  ringdropctl ring add-member team bob\n  ringdropctl ring add-member team 1fe0b439... --expires 12h"
    )]
    AddMember {
        ring: String,
        peer: String,
        /// Membership ends after this long, e.g. 30m, 12h, 7d.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
    },
    /// Remove a member; its running transfers stop.
    #[command(after_help = "Example:\n  ringdropctl ring remove-member team bob")]
    RemoveMember { ring: String, peer: String },
    /// List a ring's members.
    #[command(after_help = "Example:\n  ringdropctl ring members team")]
    Members { ring: String },
    /// Print an invite: whoever runs `ring join` with it becomes a member.
    #[command(
        after_help = "Examples:\n  ringdropctl ring invite team\n  ringdropctl ring invite team --uses 5 --expires 2d --member-for 30d"
    )]
    Invite {
        ring: String,
        /// How many peers may use it (default 1).
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long the invite is valid (default 1d, at most 30d).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
        /// How long the membership it grants lasts (default: for good).
        #[arg(long, value_parser = humantime::parse_duration)]
        member_for: Option<std::time::Duration>,
    },
    /// Join a ring with an invite someone printed with `ring invite`.
    #[command(
        after_help = "Examples:\n  ringdropctl ring join rdropinvite...\n  ringdropctl ring join rdropinvite... --name alice"
    )]
    Join {
        invite: String,
        /// Name for the inviter in your address book (default: the name it proposes).
        #[arg(long)]
        name: Option<String>,
    },
    /// List invites (of one ring, or all).
    #[command(after_help = "Example:\n  ringdropctl ring invites team")]
    Invites { ring: Option<String> },
    /// Withdraw an invite (by id or a unique prefix).
    #[command(after_help = "Example:\n  ringdropctl ring uninvite 3f2a")]
    Uninvite { id: String },
}

fn invite_json(i: &pb::Invite) -> Value {
    let mut v = json!({
        "id": i.id,
        "ring": i.ring,
        "uses_left": i.uses_left,
        "uses": i.uses,
        "expires_at": i.expires_at,
        "member_for": i.member_for,
        "created_at": i.created_at,
        "revoked": i.revoked,
    });
    if !i.ticket.is_empty() {
        v["ticket"] = json!(i.ticket);
    }
    v
}

fn invite_line(i: &pb::Invite) -> String {
    let state = if i.revoked {
        "withdrawn".to_string()
    } else if i.uses_left == 0 {
        "used up".to_string()
    } else {
        format!("{} use(s) left", i.uses_left)
    };
    format!(
        "{}  {:<12} {state}, used {}, expires {}",
        &i.id[..i.id.len().min(8)],
        clean(&i.ring),
        i.uses,
        when(i.expires_at)
    )
}

/// Unix seconds as a UTC time.
fn when(t: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
    )
    .to_string()
}

#[derive(Debug, Subcommand)]
pub enum PeerCmd {
    /// Name an endpoint (its id, or a ticket it printed).
    #[command(
        after_help = "Examples:\n  ringdropctl peer add bob 1fe0b4394ecef2b1...\n  ringdropctl peer add alice rdrop..."
    )]
    Add { name: String, endpoint: String },
    /// List the address book.
    #[command(after_help = "Example:\n  ringdropctl peer ls")]
    Ls,
    /// Accept this peer's offers by themselves into a directory.
    #[command(
        after_help = "Examples:\n  ringdropctl peer trust alice --accept-into ~/Inbox\n  ringdropctl peer trust bob --accept-into /var/lib/ringdrop/downloads --max-size 2G"
    )]
    Trust {
        peer: String,
        /// Directory the offers are fetched into: one of yours (they are
        /// your transfers; each lands as a new entry there).
        #[arg(long)]
        accept_into: PathBuf,
        /// Larger offers wait in the inbox (e.g. 500M, 2G).
        #[arg(long, value_parser = ringdrop_proto::units::parse_bytes)]
        max_size: Option<u64>,
        /// Most accepted by themselves in any 24 hours; more waits in the
        /// inbox (default 10G).
        #[arg(long, value_parser = ringdrop_proto::units::parse_bytes)]
        max_per_day: Option<u64>,
    },
    /// Stop accepting this peer's offers by themselves.
    #[command(after_help = "Example:\n  ringdropctl peer untrust alice")]
    Untrust { peer: String },
    /// Remove a name.
    #[command(after_help = "Example:\n  ringdropctl peer rm bob")]
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// List what PEER shares with you (only what you may fetch).
    #[command(
        after_help = "Examples:\n  ringdropctl remote ls alice\n  ringdropctl --json remote ls 66765f82... | jq -r '.[].ticket'"
    )]
    Ls { peer: String },
}

fn member_json(m: &pb::Member) -> Value {
    json!({
        "endpoint_id": m.endpoint_id,
        "name": m.name,
        "expires_at": if m.expires_at == 0 { Value::Null } else { Value::from(m.expires_at) },
        "expired": m.expired,
    })
}

fn member_line(m: &pb::Member) -> String {
    let exp = match (m.expires_at, m.expired) {
        (0, _) => String::new(),
        (_, true) => "  (expired)".into(),
        (t, false) => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
            format!("  (expires {})", humantime::format_rfc3339_seconds(at))
        }
    };
    format!("{}  {}{exp}", m.endpoint_id, m.name)
}

pub async fn ring(socket: Option<PathBuf>, out: &Out, cmd: RingCmd) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    let mut rings = c.rings();
    match cmd {
        RingCmd::Create { name } => {
            rings
                .create_ring(pb::CreateRingRequest { name: name.clone() })
                .await?;
            out.emit(json!({ "name": name }), || format!("Created ring {name}"));
        }
        RingCmd::Ls => list_rings(&mut rings, out).await?,
        RingCmd::Rm { name } => {
            rings
                .remove_ring(pb::RemoveRingRequest { name: name.clone() })
                .await?;
            out.emit(json!({ "name": name }), || format!("Removed ring {name}"));
        }
        RingCmd::AddMember {
            ring,
            peer,
            expires,
        } => add_member(&mut rings, out, ring, peer, expires).await?,
        RingCmd::RemoveMember { ring, peer } => {
            let m = rings
                .remove_member(pb::RemoveMemberRequest {
                    ring: ring.clone(),
                    peer,
                })
                .await?
                .into_inner();
            out.emit(member_json(&m), || {
                format!("Removed {} from {ring}", m.endpoint_id)
            });
        }
        RingCmd::Members { ring } => list_members(&mut rings, out, ring).await?,
        RingCmd::Invite {
            ring,
            uses,
            expires,
            member_for,
        } => invite(&mut rings, out, ring, uses, expires, member_for).await?,
        RingCmd::Join { invite, name } => join(&mut rings, out, invite, name).await?,
        RingCmd::Invites { ring } => list_invites(&mut rings, out, ring).await?,
        RingCmd::Uninvite { id } => {
            let i = rings
                .revoke_invite(pb::RevokeInviteRequest { id })
                .await?
                .into_inner();
            out.emit(invite_json(&i), || format!("Withdrew invite {}", i.id));
        }
    }
    Ok(())
}

type RingsClient = pb::rings_client::RingsClient<tonic::transport::Channel>;

async fn list_rings(rings: &mut RingsClient, out: &Out) -> Result<(), CliError> {
    let list = rings
        .list_rings(pb::ListRingsRequest {})
        .await?
        .into_inner()
        .rings;
    let v = list
        .iter()
        .map(|r| json!({ "name": r.name, "members": r.members, "created_at": r.created_at }))
        .collect();
    out.emit(Value::Array(v), || {
        list.iter()
            .map(|r| {
                if r.name == "open" {
                    "open        (anyone holding the ticket)".to_string()
                } else {
                    format!("{:<11} {} members", r.name, r.members)
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

async fn add_member(
    rings: &mut RingsClient,
    out: &Out,
    ring: String,
    peer: String,
    expires: Option<std::time::Duration>,
) -> Result<(), CliError> {
    let expires_at = match expires {
        Some(d) => {
            let now = ringdrop_proto::clock::now();
            now.saturating_add(i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX))
        }
        None => 0,
    };
    let m = rings
        .add_member(pb::AddMemberRequest {
            ring: ring.clone(),
            peer,
            expires_at,
        })
        .await?
        .into_inner();
    out.emit(member_json(&m), || {
        format!("Added {} to {ring}", member_line(&m))
    });
    Ok(())
}

async fn list_members(rings: &mut RingsClient, out: &Out, ring: String) -> Result<(), CliError> {
    let list = rings
        .list_members(pb::ListMembersRequest { ring: ring.clone() })
        .await?
        .into_inner()
        .members;
    out.emit(Value::Array(list.iter().map(member_json).collect()), || {
        if list.is_empty() {
            return format!("Ring {ring} has no members.");
        }
        list.iter().map(member_line).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

async fn invite(
    rings: &mut RingsClient,
    out: &Out,
    ring: String,
    uses: u32,
    expires: Option<std::time::Duration>,
    member_for: Option<std::time::Duration>,
) -> Result<(), CliError> {
    let i = rings
        .create_invite(pb::CreateInviteRequest {
            ring,
            uses,
            valid_for: expires.map_or(0, |d| d.as_secs().max(1) as i64),
            member_for: member_for.map_or(0, |d| d.as_secs().max(1) as i64),
        })
        .await?
        .into_inner();
    out.emit(invite_json(&i), || {
        format!(
            "{}\n\nOn the other machine: ringdropctl ring join {} (valid until {}, {} use(s))",
            i.ticket,
            i.ticket,
            when(i.expires_at),
            i.uses_left
        )
    });
    Ok(())
}

async fn join(
    rings: &mut RingsClient,
    out: &Out,
    invite: String,
    name: Option<String>,
) -> Result<(), CliError> {
    let j = rings
        .join_ring(pb::JoinRingRequest {
            invite,
            name: name.unwrap_or_default(),
        })
        .await?
        .into_inner();
    let json = json!({
        "ring": j.ring,
        "endpoint_id": j.endpoint_id,
        "name": j.name,
        "member_until": j.member_until,
    });
    out.emit(json, || {
        let until = if j.member_until == 0 {
            String::new()
        } else {
            format!(" until {}", when(j.member_until))
        };
        format!(
            "Joined ring {} of {} ({}){until}; it is in your address book as {}",
            clean(&j.ring),
            clean(&j.name),
            j.endpoint_id,
            clean(&j.name)
        )
    });
    Ok(())
}

async fn list_invites(
    rings: &mut RingsClient,
    out: &Out,
    ring: Option<String>,
) -> Result<(), CliError> {
    let list = rings
        .list_invites(pb::ListInvitesRequest {
            ring: ring.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .invites;
    out.emit(Value::Array(list.iter().map(invite_json).collect()), || {
        if list.is_empty() {
            return "No invites.".into();
        }
        list.iter().map(invite_line).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

fn peer_json(p: &pb::Peer) -> Value {
    json!({
        "name": p.name,
        "endpoint_id": p.endpoint_id,
        "relay_url": p.relay_url,
        "direct_addresses": p.direct_addresses,
        "updated_at": p.updated_at,
    })
}

pub async fn peer(socket: Option<PathBuf>, out: &Out, cmd: PeerCmd) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    let mut peers = c.peers();
    match cmd {
        PeerCmd::Add { name, endpoint } => {
            let p = peers
                .add_peer(pb::AddPeerRequest { name, endpoint })
                .await?
                .into_inner();
            out.emit(peer_json(&p), || format!("{} is {}", p.name, p.endpoint_id));
        }
        PeerCmd::Trust {
            peer,
            accept_into,
            max_size,
            max_per_day,
        } => {
            let dir = super::absolute(&accept_into)?;
            let req = pb::TrustPeerRequest {
                peer,
                accept_into: dir.display().to_string(),
                max_size: max_size.unwrap_or(0),
                max_per_day: max_per_day.unwrap_or(0),
            };
            trust(&c, out, req).await?;
        }
        PeerCmd::Untrust { peer } => {
            let r = c
                .contacts()
                .untrust_peer(pb::UntrustPeerRequest { peer })
                .await?
                .into_inner();
            out.emit(json!({ "peer": r.peer, "name": r.name }), || {
                format!(
                    "Offers from {} wait in the inbox again",
                    if r.name.is_empty() { &r.peer } else { &r.name }
                )
            });
        }
        PeerCmd::Ls => list_peers(&mut peers, out).await?,
        PeerCmd::Rm { name } => {
            peers
                .remove_peer(pb::RemovePeerRequest { name: name.clone() })
                .await?;
            out.emit(json!({ "name": name }), || format!("Removed {name}"));
        }
    }
    Ok(())
}

async fn list_peers(
    peers: &mut pb::peers_client::PeersClient<tonic::transport::Channel>,
    out: &Out,
) -> Result<(), CliError> {
    let list = peers
        .list_peers(pb::ListPeersRequest {})
        .await?
        .into_inner()
        .peers;
    out.emit(Value::Array(list.iter().map(peer_json).collect()), || {
        if list.is_empty() {
            return "The address book is empty. Add a peer with `ringdropctl peer add NAME ENDPOINT_ID`.".into();
        }
        list.iter()
            .map(|p| format!("{:<16} {}  {}", p.name, p.endpoint_id, p.direct_addresses.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

async fn trust(c: &client::Client, out: &Out, req: pb::TrustPeerRequest) -> Result<(), CliError> {
    let r = c.contacts().trust_peer(req).await?.into_inner();
    let json = json!({
        "peer": r.peer,
        "name": r.name,
        "accept_into": r.accept_into,
        "max_size": r.max_size,
        "max_per_day": r.max_per_day,
    });
    out.emit(json, || {
        let limit = if r.max_size == 0 {
            String::new()
        } else {
            format!(" up to {}", bytes(r.max_size))
        };
        let limit = format!("{limit}, {} a day at most,", bytes(r.max_per_day));
        format!(
            "Offers from {} are fetched into {}{limit} by themselves",
            if r.name.is_empty() { &r.peer } else { &r.name },
            r.accept_into
        )
    });
    Ok(())
}

pub async fn remote(socket: Option<PathBuf>, out: &Out, cmd: RemoteCmd) -> Result<(), CliError> {
    let RemoteCmd::Ls { peer } = cmd;
    let c = client::connect(socket).await?;
    let r = c
        .peers()
        .remote_list(pb::RemoteListRequest { peer })
        .await?
        .into_inner();
    let v = r
        .shares
        .iter()
        .map(|s| json!({ "hash": s.hash, "name": s.name, "size": s.size, "files": s.files, "ticket": s.ticket }))
        .collect();
    out.emit(Value::Array(v), || {
        if r.shares.is_empty() {
            return format!("{} shares nothing with you.", r.endpoint_id);
        }
        r.shares
            .iter()
            .map(|s| {
                format!(
                    "{}  {:<24} {:>6} files {:>10}\n  ringdropctl fetch {}",
                    &s.hash[..16],
                    clean(&s.name),
                    s.files,
                    bytes(s.size),
                    s.ticket
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

pub async fn uploads(socket: Option<PathBuf>, out: &Out) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    let list = c
        .node()
        .list_uploads(pb::ListUploadsRequest {})
        .await?
        .into_inner()
        .uploads;
    let v = list
        .iter()
        .map(|u| {
            json!({
                "peer": u.peer, "share": u.share, "name": u.name, "hash": u.hash,
                "bytes_sent": u.bytes_sent, "rate": u.rate, "started_at": u.started_at,
            })
        })
        .collect();
    out.emit(Value::Array(v), || {
        if list.is_empty() {
            return "Nothing is being served right now.".into();
        }
        list.iter()
            .map(|u| {
                format!(
                    "{}  {:<24} {:>10} sent  {:>10}/s",
                    &u.peer[..16.min(u.peer.len())],
                    if u.name.is_empty() { &u.hash } else { &u.name },
                    bytes(u.bytes_sent),
                    bytes(u.rate)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
