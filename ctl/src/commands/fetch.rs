//! `fetch TICKET`: hands the fetch to the daemon, then follows it.

use std::path::PathBuf;

use clap::Args;
use ringdrop_proto::v1 as pb;

use super::{absolute, host, place, transfers};
use crate::{
    client,
    error::CliError,
    output::{transfer_json, Out},
};

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A ringdrop ticket (rdrop...) or an iroh blob ticket (blob..., e.g. from sendme).
    ticket: String,
    #[command(flatten)]
    dest: DestArgs,
    /// Fetch only the files matching GLOB (their '/'-separated name in the
    /// share, or a directory they are in; `*` stays within one name, `**`
    /// crosses). Repeatable; resumes fetch the same part.
    #[arg(long, value_name = "GLOB")]
    only: Vec<String>,
    /// Do not serve what this fetch holds to the other members of the
    /// share's ring (a ring is a swarm: by default members serve each other).
    #[arg(long)]
    no_reserve: bool,
}

/// Where a fetch goes and how it is followed (`fetch`, `inbox accept`).
#[derive(Debug, Args)]
pub struct DestArgs {
    /// Destination: an existing directory to fetch into, or the path of the
    /// file / directory to create (default: the current directory).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Replace existing files at the destination.
    #[arg(long)]
    pub force: bool,
    /// Return at once; the daemon keeps fetching.
    #[arg(long, short)]
    pub detach: bool,
}

impl DestArgs {
    /// The absolute destination, and why the caller cannot write it (if so).
    pub fn resolve(&self) -> Result<(PathBuf, String), CliError> {
        let dest = absolute(self.out.as_deref().unwrap_or(std::path::Path::new(".")))?;
        let cannot = place::cannot_write(&dest).unwrap_or_default();
        Ok((dest, cannot))
    }
}

pub async fn fetch(socket: Option<PathBuf>, out: &Out, args: FetchArgs) -> Result<(), CliError> {
    let (dest, caller_cannot_write) = args.dest.resolve()?;
    let c = client::connect(socket).await?;
    // A client that stays to place the files hosts them, so the daemon
    // writes them once, beside the destination (a detached fetch is
    // written in the daemon's data dir and copied when placed).
    let hosting = if args.dest.detach || !caller_cannot_write.is_empty() {
        None
    } else {
        let (socket, dest) = (c.socket.clone(), dest.clone());
        tokio::task::spawn_blocking(move || host::offer(&socket, &dest))
            .await
            .ok()
            .flatten()
    };
    let (token, hosting) = match hosting {
        Some((token, hosting)) => (token, Some(hosting)),
        None => (Vec::new(), None),
    };
    let started = c
        .transfers()
        .fetch(pb::FetchRequest {
            ticket: args.ticket,
            out: dest.display().to_string(),
            force: args.dest.force,
            caller_cannot_write,
            host: token,
            only: args.only,
            no_reserve: args.no_reserve,
        })
        .await;
    let t = match started {
        Ok(t) => t.into_inner().transfer.unwrap_or_default(),
        Err(e) => {
            if let Some(h) = hosting {
                h.end();
            }
            return Err(e.into());
        }
    };
    let Some(hosting) = hosting else {
        return follow_started(&c, out, t, args.dest.detach).await;
    };
    hosting.started(t.id);
    let followed = follow_started(&c, out, t, false).await;
    match &followed {
        // Interrupted: the daemon may still be writing into it.
        Err(e) if e.code == 130 => hosting.leave(),
        _ => hosting.end(),
    }
    followed
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
