//! `fetch TICKET`: hands the fetch to the daemon, then follows it.

use std::path::PathBuf;

use clap::Args;
use ringdrop_proto::v1 as pb;

use super::{absolute, place, transfers};
use crate::{
    client,
    error::CliError,
    output::{transfer_json, Out},
};

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A ringdrop ticket (rdrop...) or an iroh blob ticket (blob..., e.g. from sendme).
    ticket: String,
    /// Destination: an existing directory to fetch into, or the path of the
    /// file / directory to create (default: the current directory).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Replace existing files at the destination.
    #[arg(long)]
    force: bool,
    /// Return at once; the daemon keeps fetching.
    #[arg(long, short)]
    detach: bool,
}

pub async fn fetch(socket: Option<PathBuf>, out: &Out, args: FetchArgs) -> Result<(), CliError> {
    let dest = absolute(&args.out.unwrap_or_else(|| PathBuf::from(".")))?;
    let c = client::connect(socket).await?;
    let t = c
        .transfers()
        .fetch(pb::FetchRequest {
            ticket: args.ticket,
            out: dest.display().to_string(),
            force: args.force,
            caller_cannot_write: place::cannot_write(&dest).unwrap_or_default(),
        })
        .await?
        .into_inner()
        .transfer
        .unwrap_or_default();
    follow_started(&c, out, t, args.detach).await
}

/// Follows a transfer just started (or, with `detach`, says how to).
pub async fn follow_started(
    c: &client::Client,
    out: &Out,
    t: pb::Transfer,
    detach: bool,
) -> Result<(), CliError> {
    let id = t.id;
    if detach {
        out.emit(transfer_json(&t), || {
            let then = if t.client_places {
                " (and places the files here once fetched)"
            } else {
                ""
            };
            format!("Transfer {id} started; follow it with `ringdropctl transfers wait {id}`{then}")
        });
        return Ok(());
    }
    tokio::select! {
        res = transfers::follow_and_place(c, id, out) => transfers::report(out, &res?),
        _ = tokio::signal::ctrl_c() => {
            out.hint(format!(
                "\nTransfer {id} keeps running in the daemon; follow it with `ringdropctl transfers wait {id}`"
            ));
            Err(CliError::new(130, "interrupted"))
        }
    }
}
