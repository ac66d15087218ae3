//! `share`, `shares ls`, `unshare`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use ringdrop_proto::v1::{self as pb, share_progress::Event};
use serde_json::Value;

use super::absolute;
use crate::{
    client,
    error::CliError,
    output::{bytes, share_json, Out},
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TicketFormat {
    /// ringdrop's own ticket (rdrop...).
    Ringdrop,
    /// iroh-blobs ticket (blob...), fetchable with sendme.
    Blob,
}

#[derive(Debug, Args)]
pub struct ShareArgs {
    /// File or directory to share.
    path: PathBuf,
    /// Name to publish it under (default: its file or directory name).
    #[arg(long)]
    name: Option<String>,
    /// Ticket to print.
    #[arg(long, value_enum, default_value = "ringdrop")]
    ticket_format: TicketFormat,
    /// Restrict to this ring (repeatable); default for new content: "open"
    /// (anyone with the ticket). Content or a path already shared keeps its
    /// rings; `--ring open` is the only way to open it up.
    #[arg(long = "ring")]
    rings: Vec<String>,
    /// Show an open share in `remote ls` to any peer that asks (ring shares
    /// are listed to their members only; open ones are unlisted by default:
    /// anyone can reach a node, only ticket holders should find its files).
    #[arg(long)]
    listed: bool,
    /// Members of its rings do not serve it to each other (they fetch it
    /// from this node only); `--reserve` turns that back on.
    #[arg(long, conflicts_with = "reserve")]
    no_reserve: bool,
    /// Members of its rings serve it to each other again (the default).
    #[arg(long)]
    reserve: bool,
}

#[derive(Debug, Subcommand)]
pub enum SharesCmd {
    /// List shares.
    #[command(
        after_help = "Examples:\n  ringdropctl shares ls\n  ringdropctl --json shares ls | jq -r '.[] | select(.changed) | .path'"
    )]
    Ls,
}

/// Shares below this size show no progress bar.
const BAR_THRESHOLD: u64 = 64 * 1024 * 1024;

pub async fn share(socket: Option<PathBuf>, out: &Out, args: ShareArgs) -> Result<(), CliError> {
    let path = absolute(&args.path)?;
    let c = client::connect(socket).await?;
    let handoff = super::handoff::hand_over(&c.socket, &path, args.name.as_deref()).await?;
    let mut stream = c
        .shares()
        .share(pb::ShareRequest {
            path: path.display().to_string(),
            handoff: handoff.unwrap_or_default(),
            name: args.name.unwrap_or_default(),
            rings: args.rings,
            listed: args.listed,
            reserve: (args.reserve || args.no_reserve).then_some(args.reserve),
            ticket_format: match args.ticket_format {
                TicketFormat::Ringdrop => pb::TicketFormat::Ringdrop,
                TicketFormat::Blob => pb::TicketFormat::Blob,
            } as i32,
        })
        .await?
        .into_inner();
    let mut bar = None;
    while let Some(msg) = stream.message().await? {
        match msg.event {
            Some(Event::Scanned(s)) if s.bytes >= BAR_THRESHOLD => {
                bar = Some(out.bar(s.bytes, format!("hashing {} files", s.files)));
            }
            Some(Event::HashedBytes(n)) => {
                if let Some(b) = &bar {
                    b.set_position(n);
                }
            }
            Some(Event::Created(created)) => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let share = created.share.unwrap_or_default();
                let mut v = share_json(&share);
                v["ticket"] = Value::from(created.ticket.clone());
                v["created"] = Value::from(created.created);
                out.emit(v, || {
                    format!(
                        "{} {} ({} files, {}) with {}\nhash: {}\n\nFetch it on another machine with:\n  ringdropctl fetch {}",
                        if created.created { "Shared" } else { "Already shared" },
                        share.name,
                        share.files,
                        bytes(share.size),
                        share.rings.join(", "),
                        share.hash,
                        created.ticket
                    )
                });
                return Ok(());
            }
            _ => {}
        }
    }
    Err(CliError::failed(
        "the daemon ended the share without a result",
    ))
}

pub async fn shares(socket: Option<PathBuf>, out: &Out, cmd: SharesCmd) -> Result<(), CliError> {
    match cmd {
        SharesCmd::Ls => {
            let c = client::connect(socket).await?;
            let list = c
                .shares()
                .list_shares(pb::ListSharesRequest {})
                .await?
                .into_inner()
                .shares;
            out.emit(Value::Array(list.iter().map(share_json).collect()), || {
                if list.is_empty() {
                    return "No shares. Share something with `ringdropctl share PATH`.".into();
                }
                list.iter()
                    .map(|s| {
                        format!(
                            "{}  {:<24} {:>6} files {:>10}  served {:>10}  rings {}{}  {}",
                            &s.hash[..16],
                            s.name,
                            s.files,
                            bytes(s.size),
                            bytes(s.bytes_served),
                            if s.rings.is_empty() {
                                "(none: nobody)".to_string()
                            } else {
                                s.rings.join(",")
                            },
                            if s.changed {
                                "  CHANGED since sharing: not served, share again to refresh"
                            } else {
                                ""
                            },
                            s.path
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
    }
}

pub async fn unshare(socket: Option<PathBuf>, out: &Out, hash: String) -> Result<(), CliError> {
    let c = client::connect(socket).await?;
    let s = c
        .shares()
        .unshare(pb::UnshareRequest { hash })
        .await?
        .into_inner()
        .share
        .unwrap_or_default();
    out.emit(share_json(&s), || {
        format!("Unshared {} ({})", s.name, s.hash)
    });
    Ok(())
}
