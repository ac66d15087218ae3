//! `status` and `id`.

use std::path::PathBuf;

use ringdrop_proto::v1 as pb;
use serde_json::json;

use crate::{
    client,
    error::CliError,
    output::{bytes, Out},
};

async fn fetch(socket: Option<PathBuf>) -> Result<pb::GetStatusResponse, CliError> {
    let c = client::connect(socket).await?;
    Ok(c.node()
        .get_status(pb::GetStatusRequest {})
        .await?
        .into_inner())
}

pub async fn status(socket: Option<PathBuf>, out: &Out) -> Result<(), CliError> {
    let s = fetch(socket).await?;
    out.emit(
        json!({
            "endpoint_id": s.endpoint_id,
            "version": s.version,
            "direct_addresses": s.direct_addresses,
            "relay_url": s.relay_url,
            "relay_mode": s.relay_mode,
            "mdns": s.mdns,
            "data_dir": s.data_dir,
            "shares": s.shares,
            "transfers_active": s.transfers_active,
            "transfers_total": s.transfers_total,
            "bytes_served": s.bytes_served,
            "uptime_secs": s.uptime_secs,
            "requests_allowed": s.requests_allowed,
            "requests_refused": s.requests_refused,
            "uploads": s.uploads,
        }),
        || {
            format!(
                "ringdropd {}\nendpoint id: {}\naddresses:   {}\nrelay:       {}{}\nmDNS:        {}\ndata dir:    {}\nshares:      {}\ntransfers:   {} active, {} total\nserved:      {} ({} uploads now; requests {} allowed, {} refused)\nuptime:      {}s",
                s.version,
                s.endpoint_id,
                if s.direct_addresses.is_empty() { "-".to_string() } else { s.direct_addresses.join(", ") },
                s.relay_mode,
                if s.relay_url.is_empty() { String::new() } else { format!(" ({})", s.relay_url) },
                if s.mdns { "on" } else { "off" },
                s.data_dir,
                s.shares,
                s.transfers_active,
                s.transfers_total,
                bytes(s.bytes_served),
                s.uploads,
                s.requests_allowed,
                s.requests_refused,
                s.uptime_secs,
            )
        },
    );
    Ok(())
}

pub async fn id(socket: Option<PathBuf>, out: &Out) -> Result<(), CliError> {
    let s = fetch(socket).await?;
    out.emit(json!({ "endpoint_id": s.endpoint_id }), || {
        s.endpoint_id.clone()
    });
    Ok(())
}

/// The uid of user `user` (a name or a number).
fn uid_of(user: &str) -> Result<u32, CliError> {
    user.parse()
        .ok()
        .or_else(|| ringdrop_proto::place::uid_of(user))
        .ok_or_else(|| CliError::bad_input(format!("no user {user:?} on this machine")))
}

/// `give KIND KEY USER`: an admin gives a row to a user.
pub async fn give(
    socket: Option<PathBuf>,
    out: &Out,
    kind: String,
    key: String,
    user: String,
) -> Result<(), CliError> {
    let uid = uid_of(&user)?;
    let c = client::connect(socket).await?;
    c.node()
        .give_row(pb::GiveRowRequest {
            kind: kind.clone(),
            key: key.clone(),
            uid,
        })
        .await?;
    out.emit(json!({ "kind": kind, "key": key, "uid": uid }), || {
        format!("{kind} {key} is now user {user}'s (uid {uid})")
    });
    Ok(())
}
