//! `send`, `sent` and `inbox`: files sent to a peer's inbox, with receipts.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ringdrop_proto::v1 as pb;
use serde_json::{json, Value};

use super::{
    absolute,
    fetch::{follow_started, DestArgs},
};
use crate::{
    client,
    error::CliError,
    output::{bytes, clean, Out},
};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// File or directory to send.
    path: PathBuf,
    /// The peer: an address-book name, endpoint id or ticket.
    #[arg(long)]
    to: String,
    /// How long the offer waits to be delivered and fetched (default 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    expires: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub struct SentArgs {
    #[command(subcommand)]
    cmd: Option<SentCmd>,
}

#[derive(Debug, Subcommand)]
pub enum SentCmd {
    /// List offers you sent and where each stands (the default).
    Ls,
    /// Withdraw an offer: the peer's access to it ends.
    Withdraw { id: u64 },
    /// Forget an ended offer (forgotten by itself 30 days after it expires).
    Rm { id: u64 },
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    #[command(subcommand)]
    cmd: Option<InboxCmd>,
}

#[derive(Debug, Subcommand)]
pub enum InboxCmd {
    /// List offers sent to you (the default).
    Ls,
    /// Fetch an offer.
    Accept {
        id: u64,
        #[command(flatten)]
        dest: DestArgs,
    },
    /// Decline an offer; the sender is told.
    Reject { id: u64 },
    /// Forget an answered offer (forgotten by itself after 30 days).
    Rm { id: u64 },
}

fn sent_json(o: &pb::SentOffer) -> Value {
    json!({
        "id": o.id, "peer": o.peer, "peer_name": o.peer_name, "name": o.name,
        "size": o.size, "files": o.files, "state": o.state, "bytes": o.bytes,
        "created_at": o.created_at, "expires_at": o.expires_at,
        "attempts": o.attempts, "last_error": o.last_error, "hash": o.hash,
    })
}

fn sent_line(o: &pb::SentOffer) -> String {
    let to = if o.peer_name.is_empty() {
        o.peer.chars().take(12).collect()
    } else {
        clean(&o.peer_name)
    };
    let progress = if o.state == "fetching" {
        format!(" {} of {}", bytes(o.bytes), bytes(o.size))
    } else {
        String::new()
    };
    let why = if o.last_error.is_empty() || o.state != "queued" && o.state != "refused" {
        String::new()
    } else {
        format!(" ({})", clean(&o.last_error))
    };
    format!(
        "{:>4}  to {to:<16} {:<10}{progress} {} ({}){why}",
        o.id,
        o.state,
        clean(&o.name),
        bytes(o.size)
    )
}

fn inbox_json(o: &pb::InboxOffer) -> Value {
    json!({
        "id": o.id, "from": o.from, "from_name": o.from_name, "name": o.name,
        "size": o.size, "files": o.files, "ticket": o.ticket,
        "received_at": o.received_at, "state": o.state, "transfer_id": o.transfer_id,
    })
}

fn inbox_line(o: &pb::InboxOffer) -> String {
    let from = if o.from_name.is_empty() {
        o.from.chars().take(12).collect()
    } else {
        clean(&o.from_name)
    };
    let transfer = if o.transfer_id == 0 {
        String::new()
    } else {
        format!(" (transfer {})", o.transfer_id)
    };
    format!(
        "{:>4}  from {from:<16} {:<9} {} ({}, {} files){transfer}",
        o.id,
        o.state,
        clean(&o.name),
        bytes(o.size),
        o.files
    )
}

pub async fn send(socket: Option<PathBuf>, out: &Out, args: SendArgs) -> Result<(), CliError> {
    let path = absolute(&args.path)?;
    let c = client::connect(socket).await?;
    let handoff = super::handoff::hand_over(&c.socket, &path, None).await?;
    let o = c
        .contacts()
        .send(pb::SendRequest {
            path: path.display().to_string(),
            handoff: handoff.unwrap_or_default(),
            peer: args.to,
            expires_in: args.expires.map_or(0, |d| d.as_secs().max(1) as i64),
        })
        .await?
        .into_inner();
    out.emit(sent_json(&o), || {
        format!(
            "Offer {} of {} ({}) queued for {}; see `ringdropctl sent`",
            o.id,
            clean(&o.name),
            bytes(o.size),
            if o.peer_name.is_empty() {
                &o.peer
            } else {
                &o.peer_name
            }
        )
    });
    Ok(())
}

pub async fn sent(socket: Option<PathBuf>, out: &Out, args: SentArgs) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    match args.cmd.unwrap_or(SentCmd::Ls) {
        SentCmd::Ls => {
            let list = c
                .contacts()
                .list_sent(pb::ListSentRequest {})
                .await?
                .into_inner()
                .offers;
            out.emit(Value::Array(list.iter().map(sent_json).collect()), || {
                if list.is_empty() {
                    return "Nothing sent.".into();
                }
                list.iter().map(sent_line).collect::<Vec<_>>().join("\n")
            });
        }
        SentCmd::Withdraw { id } => {
            let o = c
                .contacts()
                .withdraw(pb::WithdrawRequest { id })
                .await?
                .into_inner();
            out.emit(sent_json(&o), || format!("Withdrew offer {}", o.id));
        }
        SentCmd::Rm { id } => {
            let o = c
                .contacts()
                .remove_sent(pb::RemoveSentRequest { id })
                .await?
                .into_inner();
            out.emit(sent_json(&o), || format!("Forgot offer {}", o.id));
        }
    }
    Ok(())
}

pub async fn inbox(socket: Option<PathBuf>, out: &Out, args: InboxArgs) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    match args.cmd.unwrap_or(InboxCmd::Ls) {
        InboxCmd::Ls => {
            let r = c
                .contacts()
                .list_inbox(pb::ListInboxRequest {})
                .await?
                .into_inner();
            let list = r.offers;
            out.emit(Value::Array(list.iter().map(inbox_json).collect()), || {
                let mut text = if list.is_empty() {
                    "The inbox is empty.".to_string()
                } else {
                    list.iter().map(inbox_line).collect::<Vec<_>>().join("\n")
                };
                if r.refused > 0 {
                    text.push_str(&format!(
                        "\n({} offers refused since the daemon started: not from a contact, or past the inbox's limits)",
                        r.refused
                    ));
                }
                text
            });
        }
        InboxCmd::Accept { id, dest } => {
            let (path, caller_cannot_write) = dest.resolve()?;
            let r = c
                .contacts()
                .accept_offer(pb::AcceptOfferRequest {
                    id,
                    out: path.display().to_string(),
                    force: dest.force,
                    caller_cannot_write,
                })
                .await?
                .into_inner();
            follow_started(&c, out, r.transfer.unwrap_or_default(), dest.detach).await?;
        }
        InboxCmd::Reject { id } => {
            let o = c
                .contacts()
                .reject_offer(pb::RejectOfferRequest { id })
                .await?
                .into_inner();
            out.emit(inbox_json(&o), || format!("Rejected offer {}", o.id));
        }
        InboxCmd::Rm { id } => {
            let o = c
                .contacts()
                .remove_inbox_offer(pb::RemoveInboxOfferRequest { id })
                .await?
                .into_inner();
            out.emit(inbox_json(&o), || format!("Forgot offer {}", o.id));
        }
    }
    Ok(())
}
